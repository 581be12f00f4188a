"""Export SpaDe to ONNX at a fixed image size and optionally check it in onnxruntime (needs the
onnx extra: pip install -e ".[onnx]").

Output: the exporter's progress lines, `wrote ...` and the check's result. Three framework messages
of a correct export are filtered around the export call only, by their text (models/onnx_export.py,
quiet_export, says why each is harmless): "torchvision is not installed. Skipping torchvision::<op>"
(4 ops), torch's internal FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated" and
"The axis name: batch will not be used, since it shares ... another axis: batch"."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.checkpoint import CheckpointError  # noqa: E402
from utils.cli import make_parser  # noqa: E402
from utils.config import ConfigError  # noqa: E402

EXAMPLES = """
python tools/export_onnx.py -m model.ckpt --height 900 --width 1600 --out outputs/spade.onnx --check
python tools/export_onnx.py -m outputs/demo/run/checkpoints/latest.ckpt --height 225 --width 400 --out outputs/demo.onnx --check
"""

EPILOG = """The graph takes the raw H x W inputs of SpaDe.predict and pads/crops inside:
  img B x 3 x H x W float32 BGR 0..255, radar_map B x 1 x H x W (m, radar columns),
  radar_pts B x P x 3 float32 camera-frame xyz (m, zero padded), radar_count B int64
  -> depth B x 1 x H x W (m). B is free; P = data.max_radar_points (200).
--check runs a batch of two frames in onnxruntime (one with radar points, one with none) and
compares with PyTorch; exit status 1 when the largest difference exceeds --tolerance-m.
See docs/tools.md, "ONNX export"."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, EXAMPLES, EPILOG)
    parser.add_argument("-m", "--model", required=True,
                        help="released ({'network': state_dict}) or own checkpoint")
    parser.add_argument("--height", type=int, default=900, help="input image height")
    parser.add_argument("--width", type=int, default=1600, help="input image width")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=18,
                        help="ONNX opset, 18 or later (the radar scatter needs 18)")
    parser.add_argument("--check", action="store_true",
                        help="compare onnxruntime with PyTorch on a real-format input")
    parser.add_argument("--tolerance-m", type=float, default=1e-3,
                        help="largest allowed |ONNX - PyTorch| in metres")
    parser.add_argument("--skip-export", action="store_true",
                        help="do not export: check the existing --out against the checkpoint")
    parser.add_argument("--config", help="YAML config; default: the checkpoint's, else built-in defaults "
                        "(model.radar_injection, data.max_radar_points and data.radar_columns matter)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_intermixed_args(argv)
    if args.opset < 18:
        parser.error("--opset must be 18 or later: ScatterElements with reduction='max' (the radar "
                     "map's scatter downscale) first exists in opset 18")
    if args.skip_export and not args.check:
        parser.error("--skip-export only makes sense with --check")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from datasets.frames import check_inputs
    from models.onnx_export import export_onnx, missing_packages, onnx_max_diff_m
    from utils.checkpoint import load_model
    missing = missing_packages(export=not args.skip_export, check=args.check)
    if missing:
        sys.exit(f"error: {' and '.join(missing)} not installed; pip install -e \".[onnx]\"")
    try:
        model, cfg = load_model(args.model, args.config, args.overrides)
    except (ConfigError, CheckpointError) as err:
        sys.exit(f"error: {err}")
    points = cfg.data.max_radar_points
    if not args.skip_export:
        export_onnx(model, args.out, args.height, args.width, points, args.opset)
        print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB): inputs "
              f"{args.height} x {args.width}, {points} radar points, opset {args.opset}")
    elif not args.out.is_file():
        sys.exit(f"error: {args.out} not found; drop --skip-export to export it first")
    if not args.check:
        return 0
    inputs = check_inputs(args.height, args.width, points, cfg.data.radar_columns)
    diff_m = onnx_max_diff_m(args.out, model, inputs)
    ok = diff_m <= args.tolerance_m
    print(f"check {'passed' if ok else 'FAILED'}: max |ONNX - PyTorch| = {diff_m:.3g} m "
          f"(tolerance {args.tolerance_m:g} m; batch of 2, with and without radar points)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
