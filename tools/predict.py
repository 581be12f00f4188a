"""Run SpaDe on one frame: your own image + radar points + intrinsics, or a nuScenes sample; with
more than one camera in data.cameras, on every camera of a nuScenes key frame, fused into one
point cloud."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.infos import InfoFileError  # noqa: E402
from utils.checkpoint import CheckpointError  # noqa: E402
from utils.cli import make_parser  # noqa: E402
from utils.config import ConfigError, check_config  # noqa: E402

EXAMPLES = """
python tools/predict.py -m outputs/demo/run/checkpoints/latest.ckpt --data-root data/synthetic \\
    --infos data/synthetic/nuscenes_radar_5sweeps_infos_val.pkl --index 0 --out outputs/predict
python tools/predict.py -m model.ckpt --image frame.jpg --radar-points radar_cam.npy --intrinsics K.json --out outputs/pred/
python tools/predict.py -m model.ckpt --image frame.jpg --radar-points radar.pcd --extrinsics radar2cam.json \\
    --intrinsics K.json --out outputs/pred/
python tools/predict.py -m model.ckpt --data-root data/nuscenes --sample-token TOKEN --out outputs/pred/
python tools/predict.py -m model.ckpt --data-root data/nuscenes --infos data/nuscenes_radar_5sweeps_infos_val.pkl \\
    --index 0 data.cameras=all data.radars=all --out outputs/keyframe/
"""
EPILOG = """Inputs (own data):
  --image         any size, any format OpenCV reads (fed as BGR 0..255)
  --radar-points  .npy, N x 3 float: camera frame, x right, y down, z forward, metres
                  (with --extrinsics: the radar frame instead); or a nuScenes RADAR .pcd
                  (devkit RadarPointCloud default filters), which needs --extrinsics
  --intrinsics    JSON {"camera_intrinsic": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}: the K of the
                  image exactly as given (scale/shift it after resizing/cropping the image)
  --extrinsics    JSON radar -> camera: {"rotation": [w, x, y, z], "translation": [x, y, z]}
                  or {"matrix": [[...4 x 4...]]}
Refused with one line (datasets/frames.py): input files that are no regular files or over a size
ceiling (images over 50 Mpx), radar points beyond 2 km, focal lengths outside 0.05 .. 100 x the
image's longer side; with --infos, invalid or duplicated info records (datasets/records.py).
nuScenes: the CAM_FRONT image and RADAR_FRONT key frame of a sample, built exactly like the
dataset's eval mode (with --infos the output equals eval.py --save-pred for that frame).

Outputs in --out: <image basename>.png (uint16 millimetres, as eval.py --save-pred; saturates at
65.535 m), <basename>.npy (float32 metres) and <basename>_color.png (turbo, 0..--max-depth-m).
Surround key frame: when data.cameras holds more than one camera (data.cameras=all: all six),
--infos with --index (record), --sample-token or --name (one of its images) picks a key frame
and its cameras are predicted as one batch. Besides each camera's three files: <sample token>.pcd.bin
(nuScenes LiDAR layout, float32 x, y, z, intensity, ring: the key frame's ego frame, grey level,
camera index), <sample token>.npz (xyz_m, camera, pixel_uv, depth_m, color_rgb) and
<sample token>_surround.png (the cameras in rig layout beside a bird's-eye view with the LiDAR);
the cloud keeps every --cloud-stride-th row and column (datasets/fusion.py).
Configuration as eval.py: the checkpoint's own config (X.json for exported X.safetensors), or
--config, then key=value overrides.
See docs/tools.md, "Run on your own data"."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, EXAMPLES, EPILOG)
    parser.add_argument("-m", "--model", required=True,
                        help="checkpoint (released or ours), or X.safetensors from tools/export_weights.py")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    own = parser.add_argument_group("own data")
    own.add_argument("--image", type=Path, help="camera image")
    own.add_argument("--radar-points", type=Path, help="radar points, .npy (N x 3) or nuScenes .pcd")
    own.add_argument("--intrinsics", type=Path, help="JSON with camera_intrinsic (3 x 3)")
    own.add_argument("--extrinsics", type=Path, help="JSON radar -> camera transform")
    nus = parser.add_argument_group("nuScenes sample")
    nus.add_argument("--data-root", type=Path, help="nuScenes root (default data.root)")
    nus.add_argument("--sample-token", help="sample token (devkit tables, or looked up in --infos)")
    nus.add_argument("--infos", type=Path, help="info file; pick the frame by --index, --name or --sample-token")
    nus.add_argument("--index", type=int, help="record index in --infos")
    nus.add_argument("--name", help="image basename without extension, looked up in --infos")
    nus.add_argument("--version", default="v1.0-trainval", help="devkit table version (default %(default)s)")
    parser.add_argument("--max-depth-m", type=float, default=80.0, help="colour scale top (default 80)")
    parser.add_argument("--cloud-stride", type=int, default=4,
                        help="surround key frame: every Nth row and column in the point cloud "
                             "(4: 540k points for six 900x1600 cameras; 1: every pixel)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (GPU when present)")
    parser.add_argument("--config", help="YAML config; default: the checkpoint's, else built-in defaults")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_intermixed_args(argv)
    if args.cloud_stride < 1:
        parser.error(f"--cloud-stride {args.cloud_stride}: give 1 (every pixel) or more")
    nuscenes = [args.sample_token, args.infos, args.index, args.name]
    if args.image is not None:
        if any(v is not None for v in nuscenes + [args.data_root]):
            parser.error("give either --image (own data) or a nuScenes sample, not both")
        if args.radar_points is None or args.intrinsics is None:
            parser.error("--image needs --radar-points and --intrinsics")
    else:
        if args.radar_points or args.intrinsics or args.extrinsics:
            parser.error("--radar-points, --intrinsics and --extrinsics go with --image")
        selectors = sum(v is not None for v in (args.sample_token, args.index, args.name))
        if args.infos is None and args.sample_token is None:
            parser.error("give --image ... for own data, or --sample-token / --infos for a nuScenes sample")
        if args.infos is not None and selectors != 1:
            parser.error("with --infos pick exactly one of --index, --name, --sample-token")
        if args.infos is None and (args.index is not None or args.name is not None):
            parser.error("--index and --name need --infos")
    return args


def predict_depths(model, cfg, samples, device):
    """B x H x W float32 metres: `samples` (same image size) predicted as one batch; exits naming
    the first sample with a non-finite pixel."""
    import numpy as np
    import torch
    from utils.engine.evaluate import collate_same_size, model_predictor
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
             for k, v in collate_same_size(samples).items()}
    with torch.inference_mode():
        depths_m = model_predictor(model, cfg.eval.optimized)(batch)[:, 0].float().cpu().numpy()
    for sample, depth_m in zip(samples, depths_m):
        if not np.isfinite(depth_m).all():
            sys.exit(f"error: the prediction for {sample['name']} has {int((~np.isfinite(depth_m)).sum())} "
                     "non-finite pixels; nothing written: check its inputs (image, radar points, "
                     "intrinsics) and the checkpoint")
    return depths_m


def write_frame(args, sample, depth_m) -> None:
    """The three files of one frame's prediction, and its lines on the console."""
    import numpy as np
    from datasets.frames import write_outputs
    paths = write_outputs(depth_m, args.out, sample["name"], args.max_depth_m)
    h, w = depth_m.shape
    print(f"{sample['name']}: {w} x {h}, {int(sample['radar_count'])} radar points; depth "
          f"{depth_m.min():.2f} .. {depth_m.max():.2f} m (median {float(np.median(depth_m)):.2f} m)")
    for kind, path in paths.items():
        print(f"  {kind}: {path}")
    if depth_m.max() > 65.535:
        print("  note: the uint16 mm PNG saturates above 65.535 m; the .npy holds the full values")


def pick_keyframe(args, cfg):
    """(info record, its samples: one per camera of data.cameras, data root) of the key frame
    that --infos with --index / --sample-token / --name picks."""
    from datasets.build import build_dataset
    from datasets.frames import find_record_index
    from datasets.fusion import keyframe_samples as samples_of
    ds = build_dataset(cfg, "val", infos=args.infos, data_root=args.data_root or cfg.data.root)
    index = args.index if args.index is not None else find_record_index(ds.infos, args.infos, args.name,
                                                                        args.sample_token, cfg.data.cameras)
    samples = samples_of(ds, index)
    return ds.infos[index], samples, ds.root


def write_keyframe(args, record, samples, depths_m, root) -> None:
    """The fused cloud (.pcd.bin, .npz) and the surround picture of one key frame."""
    import numpy as np
    from datasets.fusion import CAMERAS, fuse, lidar_ego_points, write_npz, write_pcd_bin
    from utils.files import write_png
    from utils.visualize import surround_panel
    cloud = fuse(samples, depths_m, args.cloud_stride)
    clouds = [(CAMERAS[i], cloud.xyz_m[cloud.camera == i]) for i in np.unique(cloud.camera)]
    picture = surround_panel({s["camera"]: d for s, d in zip(samples, depths_m)}, clouds,
                             lidar_ego_points(record, root), args.max_depth_m)
    token = record["sample_token"]
    paths = {"cloud": write_pcd_bin(args.out / f"{token}.pcd.bin", cloud),
             "arrays": write_npz(args.out / f"{token}.npz", cloud),
             "picture": write_png(args.out / f"{token}_surround.png", picture)}
    print(f"key frame {token}: {len(samples)} cameras fused into {len(cloud)} points in its ego frame "
          f"(--cloud-stride {args.cloud_stride})")
    for kind, path in paths.items():
        print(f"  {kind}: {path}")


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch
    from datasets.frames import PredictInputError, frame_sample, nuscenes_sample, own_frame
    from datasets.fusion import KeyframeError
    from utils.checkpoint import load_model
    from utils.engine.evaluate import EvaluationError
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    try:
        frame = (own_frame(args.image, args.radar_points, args.intrinsics, args.extrinsics)
                 if args.image is not None else None)     # input errors before the model loads
        model, cfg = load_model(args.model, args.config, args.overrides, device)
        check_config(cfg)                       # keys that must fit together, after the overrides
        surround = len(cfg.data.cameras) > 1
        if surround and args.infos is None:
            raise PredictInputError(f"data.cameras has {len(cfg.data.cameras)} cameras: a surround "
                                    "key frame needs --infos (tools/create_infos.py) with --index, "
                                    "--sample-token or --name; own data (--image) is one camera")
        if surround:
            record, samples, root = pick_keyframe(args, cfg)
        elif frame is not None:
            samples = [frame_sample(frame, cfg)]
        else:
            samples = [nuscenes_sample(cfg, args.data_root or cfg.data.root, infos_path=args.infos,
                                       index=args.index, name=args.name,
                                       sample_token=args.sample_token, version=args.version)]
        depths_m = predict_depths(model, cfg, samples, device)
        for sample, depth_m in zip(samples, depths_m):
            write_frame(args, sample, depth_m)
        if surround:
            write_keyframe(args, record, samples, depths_m, root)
    except (PredictInputError, KeyframeError, EvaluationError, CheckpointError, ConfigError,
            InfoFileError, OSError) as err:          # OSError: also OutputWriteError (disk full)
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
