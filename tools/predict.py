"""Run SpaDe on one frame: your own image + radar points + intrinsics, or a nuScenes sample."""
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
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (GPU when present)")
    parser.add_argument("--config", help="YAML config; default: the checkpoint's, else built-in defaults")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_intermixed_args(argv)
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


def main(argv=None) -> None:
    args = parse_args(argv)
    import numpy as np
    import torch
    from torch.utils.data import default_collate
    from utils.engine.evaluate import model_predictor
    from datasets.frames import PredictInputError, frame_sample, nuscenes_sample, own_frame, write_outputs
    from utils.checkpoint import load_model
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    try:
        frame = (own_frame(args.image, args.radar_points, args.intrinsics, args.extrinsics)
                 if args.image is not None else None)     # input errors before the model loads
        model, cfg = load_model(args.model, args.config, args.overrides, device)
        check_config(cfg)                       # keys that must fit together, after the overrides
        if frame is not None:
            sample = frame_sample(frame, cfg)
        else:
            sample = nuscenes_sample(cfg, args.data_root or cfg.data.root, infos_path=args.infos,
                                     index=args.index, name=args.name,
                                     sample_token=args.sample_token, version=args.version)
    except (PredictInputError, CheckpointError, ConfigError, InfoFileError, OSError) as err:
        sys.exit(f"error: {err}")
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
             for k, v in default_collate([sample]).items()}
    with torch.inference_mode():
        depth_m = model_predictor(model, cfg.eval.optimized)(batch)[0, 0].float().cpu().numpy()
    if not np.isfinite(depth_m).all():
        sys.exit(f"error: the prediction for {sample['name']} has {int((~np.isfinite(depth_m)).sum())} "
                 "non-finite pixels; nothing written: check its inputs (image, radar points, "
                 "intrinsics) and the checkpoint")
    try:
        paths = write_outputs(depth_m, args.out, sample["name"], args.max_depth_m)
    except OSError as err:                           # OutputWriteError (disk full), permissions
        sys.exit(f"error: {err}")
    h, w = depth_m.shape
    print(f"{sample['name']}: {w} x {h}, {int(sample['radar_count'])} radar points; depth "
          f"{depth_m.min():.2f} .. {depth_m.max():.2f} m (median {float(np.median(depth_m)):.2f} m)")
    for kind, path in paths.items():
        print(f"  {kind}: {path}")
    if depth_m.max() > 65.535:
        print("  note: the uint16 mm PNG saturates above 65.535 m; the .npy holds the full values")


if __name__ == "__main__":
    main()
