"""nuScenes file formats: LiDAR .pcd.bin, radar binary .pcd, JPEG/PNG images, the JSON tables.

The formats are those the stock devkit reads: `LidarPointCloud.from_file` (float32 x, y, z,
intensity, ring) and `RadarPointCloud.from_file` (PCD v0.7 header, 18 fields, binary, followed by
zero padding as in the real files: the devkit needs at least one byte after the last point).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np

from datasets.synthetic.radar import RADAR_DTYPE, RADAR_FIELDS
from utils.jsonio import dumps

RADAR_PAD_BYTES = 64


def write_lidar(path: Path, points: np.ndarray) -> None:
    """points: N x 5 float32 (x, y, z, intensity, ring) -> .pcd.bin."""
    np.ascontiguousarray(points, np.float32).tofile(path)


def write_radar(path: Path, records: np.ndarray) -> None:
    """records: N >= 1 of RADAR_DTYPE -> binary PCD v0.7."""
    if records.dtype != RADAR_DTYPE or len(records) == 0:
        raise ValueError(f"{path}: radar records must be a non-empty RADAR_DTYPE array")
    sizes = [RADAR_DTYPE[name].itemsize for name in RADAR_FIELDS]
    types = ["F" if RADAR_DTYPE[name].kind == "f" else "I" for name in RADAR_FIELDS]
    n = len(records)
    header = "\n".join([
        "# .PCD v0.7 - Point Cloud Data file format", "VERSION 0.7",
        "FIELDS " + " ".join(RADAR_FIELDS), "SIZE " + " ".join(map(str, sizes)),
        "TYPE " + " ".join(types), "COUNT " + " ".join(["1"] * len(sizes)),
        f"WIDTH {n}", "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0", f"POINTS {n}", "DATA binary", ""])
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(records.tobytes())
        f.write(bytes(RADAR_PAD_BYTES))


def write_image(path: Path, image: np.ndarray, jpeg_quality: int = 90) -> None:
    """JPEG (by suffix) at a fixed quality, or lossless PNG (uint8 or uint16; zlib level 1, as
    datasets/seg_masks.py writes masks)."""
    if path.suffix == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]     # fast to decode: the loader reads them each epoch
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"could not write {path}; check that its folder exists and is writable")


def write_tables(folder: Path, tables: Dict[str, List[Dict[str, Any]]]) -> None:
    """One <name>.json per table in `folder` (the version folder, e.g. <root>/v1.0-trainval)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in tables.items():
        (folder / f"{name}.json").write_text(dumps(records, indent=1))
