"""The main job end to end on the synthetic world (`make demo`): data, training, evaluation.

    python tools/demo.py [--config configs/synthetic_demo.yaml] [--out outputs/demo] [key=value ...]

1. the synthetic default world in data.root (generated unless present and complete),
2. its info files (tools/create_infos.py with the world's splits.json),
3. SpaDe trained per the config (one process; skipped when out/run already holds the finished
   run of the same training settings, resumed when it holds part of it),
4. evaluation on the val split of the model and of two baselines (utils/baselines.py),
5. out/metrics.json (`model`, `baseline_radar`, `baseline_row_median`, each with mae_mm / rmse_mm
   per range, dense-truth and leakage measures) and out/panel.png.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict

# Idle OpenMP threads sleep instead of spinning: on a busy machine a spinning thread whose peer
# was descheduled burns the core the peer needs (steps measured 2-20x slower). Set before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.infos import create_infos, infos_filename, save_infos, split_scenes  # noqa: E402
from datasets.nuscenes_dataset import RadarCameraDataset  # noqa: E402
from models import SpaDe  # noqa: E402
from utils.baselines import RowMedianDepth, radar_column_depth  # noqa: E402
from utils.cli import make_parser  # noqa: E402
from utils.checkpoint import load_network, read_checkpoint  # noqa: E402
from utils.config import Config, config_to_dict, load_config  # noqa: E402
from utils.evaluate import evaluate, format_table, model_predictor  # noqa: E402
from utils.schedule import total_steps  # noqa: E402
from utils.train_loop import train, training_signature  # noqa: E402
from utils.visualize import depth_tile, error_tile, image_bgr, panel, write_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORLD_CONFIG = REPO / "configs" / "synthetic_world.yaml"
log = logging.getLogger("demo")


def world_complete(root: Path) -> bool:
    """Tables, splits.json and one dense-truth file per key frame are on disk."""
    tables = root / "v1.0-trainval"
    if not ((root / "splits.json").is_file() and (tables / "sample.json").is_file()
            and (tables / "sample_data.json").is_file()):
        return False
    keyframes = len(json.loads((tables / "sample.json").read_text()))
    return keyframes > 0 and len(list((root / "depth_dense").glob("*.png"))) == keyframes


def ensure_world(cfg: Config) -> None:
    """Generate the synthetic default world into data.root and build its info files."""
    root = Path(cfg.data.root)
    if world_complete(root):
        log.info("synthetic world present in %s", root)
    else:
        from datasets.synthetic import generate, load_synthetic_config
        log.info("generating the synthetic world into %s (a few minutes on 2 cores)", root)
        generate(load_synthetic_config(WORLD_CONFIG), root, overwrite=True)
    if not (Path(cfg.data.train_infos).is_file() and Path(cfg.data.val_infos).is_file()):
        from nuscenes.nuscenes import NuScenes
        infos = create_infos(NuScenes("v1.0-trainval", str(root), verbose=False),
                             split_scenes("v1.0-trainval", root / "splits.json"), progress=False)
        for split, path in (("train", cfg.data.train_infos), ("val", cfg.data.val_infos)):
            save_infos(infos[split], path)
            log.info("%s: %d samples (%s)", path, len(infos[split]), infos_filename(split))


def prepare_run(cfg: Config) -> bool:
    """True when train.out_dir holds the finished run of this config's training settings. A
    partial run of the same settings is kept (train() resumes it); other contents are removed."""
    out_dir = Path(cfg.train.out_dir)
    latest = out_dir / "checkpoints" / "latest.ckpt"
    if latest.is_file():
        ckpt = read_checkpoint(latest)
        if training_signature(ckpt.get("config") or {}) == training_signature(config_to_dict(cfg)):
            steps_per_epoch = ckpt.get("extra", {}).get("steps_per_epoch", 0)
            return steps_per_epoch > 0 and ckpt["step"] == total_steps(
                cfg.train.epochs, steps_per_epoch, cfg.train.max_steps)
    shutil.rmtree(out_dir, ignore_errors=True)
    return False


def trained_model(cfg: Config) -> SpaDe:
    """SpaDe trained per `cfg` in train.out_dir (trained now unless that run is finished), in
    eval mode on the GPU when there is one."""
    if prepare_run(cfg):
        log.info("%s already holds the finished run of this config; evaluating it", cfg.train.out_dir)
    else:
        train(cfg)
    model = SpaDe(radar_injection=cfg.model.radar_injection)
    load_network(model, Path(cfg.train.out_dir) / "checkpoints" / "latest.ckpt")
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


def fit_row_median(cfg: Config) -> RowMedianDepth:
    """Per-row median of the training set's LiDAR (eval-mode maps: native size, no filters)."""
    train_set = RadarCameraDataset(cfg, cfg.data.train_infos, mode="eval")
    first = train_set[0]["lidar_map"]
    model = RowMedianDepth(first.shape[-2], max_depth_m=float(max(cfg.eval.ranges_m)))
    return model.fit(train_set[i]["lidar_map"] for i in range(len(train_set)))


def demo_panel(model: SpaDe, val_set: RadarCameraDataset, index: int, max_depth_m: float):
    """Image, radar, prediction and |error| against the LiDAR for one val sample (BGR uint8)."""
    device = next(model.parameters()).device
    s = {k: torch.as_tensor(v)[None].to(device) for k, v in val_set[index].items() if k != "name"}
    with torch.inference_mode():
        pred = model.predict(s["img"], s["radar_map"], s["radar_pts"], s["radar_count"])[0, 0]
    return panel([("image", image_bgr(s["img"][0])),
                  ("radar columns (m)", depth_tile(s["radar_map"][0], max_depth_m)),
                  ("SpaDe prediction (m)", depth_tile(pred, max_depth_m)),
                  ("|error| on LiDAR (m)", error_tile(pred, s["lidar_map"][0]))], columns=2)


def main(argv=None) -> Dict[str, Any]:
    parser = make_parser(__doc__, """
        python tools/demo.py                     (what `make demo` runs)
        python tools/demo.py --out outputs/demo_long train.max_steps=1000 train.out_dir=outputs/demo_long/run
        """)
    parser.add_argument("--config", default=str(REPO / "configs" / "synthetic_demo.yaml"),
                        help="config of the run")
    parser.add_argument("--out", default="outputs/demo", help="metrics.json and panel.png go here")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    cfg = load_config(args.config, args.overrides)
    out = Path(args.out)
    ensure_world(cfg)
    world_s = time.perf_counter() - start
    model = trained_model(cfg)
    train_s = time.perf_counter() - start - world_s
    val_set = RadarCameraDataset(cfg, cfg.data.val_infos, mode="eval")
    row_median = fit_row_median(cfg)
    no_radar_m = float(row_median.row_m.median())      # radar baseline of an image without radar
    predictors = {
        "model": model_predictor(model, cfg.eval.optimized),
        "baseline_radar": lambda b: radar_column_depth(b["radar_map"], fallback_m=no_radar_m),
        "baseline_row_median": lambda b: row_median(b["img"].shape[0], b["img"].shape[-1],
                                                    b["img"].device),
    }
    metrics: Dict[str, Any] = {}
    for name, predict in predictors.items():
        summary = evaluate(predict, val_set, batch_size=cfg.eval.batch_size, ranges_m=cfg.eval.ranges_m,
                           device=next(model.parameters()).device, num_workers=cfg.data.num_workers,
                           desc=name)["summary"]
        metrics[name] = summary
        print(format_table(summary, title=f"== {name}"))
    metrics["meta"] = {"config": args.config, "overrides": args.overrides,
                       "train_infos": cfg.data.train_infos, "val_infos": cfg.data.val_infos,
                       "seconds_world": round(world_s, 1), "seconds_training": round(train_s, 1),
                       "seconds_total": round(time.perf_counter() - start, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_png(out / "panel.png", demo_panel(model, val_set, len(val_set) // 2, float(max(cfg.eval.ranges_m))))
    far = str(max(cfg.eval.ranges_m))
    beats = all(metrics["model"]["mae_mm"][far] < metrics[b]["mae_mm"][far]
                for b in ("baseline_radar", "baseline_row_median"))
    print(f"0-{far} m MAE: model {metrics['model']['mae_mm'][far]:.0f} mm, radar baseline "
          f"{metrics['baseline_radar']['mae_mm'][far]:.0f} mm, row-median baseline "
          f"{metrics['baseline_row_median']['mae_mm'][far]:.0f} mm -> the model "
          f"{'beats' if beats else 'does NOT beat'} both baselines")
    print(f"wrote {out / 'metrics.json'} and {out / 'panel.png'} in {time.perf_counter() - start:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
