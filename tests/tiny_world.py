"""A tiny synthetic world with info files for the training and evaluation tests (built once per
pytest session under its base temporary folder)."""
from __future__ import annotations

from pathlib import Path
from typing import List

from datasets.infos import create_infos, infos_filename, save_infos, split_scenes
from datasets.synthetic import generate, load_synthetic_config

HEIGHT, WIDTH = 100, 180        # pads to 256 x 256, the network's smallest input
KNOBS = ["scenes=2", "samples_per_scene=4", "seed=5", "workers=1", "camera.sweeps=false",
         f"camera.height={HEIGHT}", f"camera.width={WIDTH}"]


def tiny_world(base: Path) -> Path:
    """base/tiny_world: 2 scenes x 4 key frames at 100x180, train = scene 1, val = scene 2."""
    root = Path(base) / "tiny_world"
    if (root / infos_filename("val")).is_file():
        return root
    generate(load_synthetic_config(None, KNOBS), root, overwrite=True, progress=False)
    from nuscenes.nuscenes import NuScenes
    infos = create_infos(NuScenes("v1.0-trainval", str(root), verbose=False),
                         split_scenes("v1.0-trainval", root / "splits.json"), progress=False)
    for split in ("train", "val"):
        save_infos(infos[split], root / infos_filename(split))
    return root


def overrides(root: Path, out_dir: Path) -> List[str]:
    """Config overrides that train on the tiny world at its own size, quickly."""
    return [f"data.root={root}", f"data.train_infos={root / infos_filename('train')}",
            f"data.val_infos={root / infos_filename('val')}", f"data.height={HEIGHT}",
            f"data.width={WIDTH}", "data.num_workers=0", "train.batch_size=2",
            "train.log_every=1", "train.image_every=2", f"train.out_dir={out_dir}"]


def linked_world(root: Path, dest: Path) -> Path:
    """dest: the tiny world as symbolic links, one per data file (samples/, seg_mask/; tables and
    sweeps as folder links), so that a test can replace single files with corrupt copies without
    touching the shared world. Train on it with overrides(root, ...) + [f"data.root={dest}"]."""
    for folder in ("samples", "seg_mask"):
        for path in (root / folder).rglob("*"):
            if path.is_file():
                link = dest / path.relative_to(root)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path)
    for folder in ("v1.0-trainval", "sweeps", "maps"):
        (dest / folder).symlink_to(root / folder)
    return dest


def replace_file(link: Path, content: bytes) -> None:
    """Put `content` where `link` (a symbolic link into the shared world) was."""
    link.unlink()
    link.write_bytes(content)
