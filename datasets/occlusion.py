"""Occlusion filter for projected LiDAR (docs/spade.md section 2): drop points seen "through" a surface.

The LiDAR sits above and behind the camera, so it sees past the edges of near objects; projected
into the image those far points land among the near object's points. A point is dropped when some
point within `radius_px` (in the image) is nearer by more than `rel_threshold` of its depth:
(z - min z over the neighbourhood) / z > rel_threshold.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

# The image width the configured radius refers to; other widths scale it (radius * width / 1600).
REFERENCE_WIDTH_PX = 1600


def scaled_radius_px(radius_px: float, image_width_px: int) -> float:
    return radius_px * image_width_px / REFERENCE_WIDTH_PX


def occlusion_keep(u: np.ndarray, v: np.ndarray, depth_m: np.ndarray, radius_px: float,
                   rel_threshold: float) -> np.ndarray:
    """N bool, True for the points to keep.

    u, v: N continuous pixel coordinates, depth_m: N (> 0). Vectorised: the neighbour pairs come
    from one KD-tree query (distance <= radius_px); "min z in the neighbourhood is below
    (1 - rel_threshold) z" is checked pair by pair in both directions, which is the same test.
    """
    keep = np.ones(len(depth_m), dtype=bool)
    if len(depth_m) < 2 or radius_px <= 0:
        return keep
    pairs = cKDTree(np.stack([u, v], axis=1)).query_pairs(radius_px, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    factor = 1.0 - rel_threshold
    keep[i[depth_m[j] < factor * depth_m[i]]] = False
    keep[j[depth_m[i] < factor * depth_m[j]]] = False
    return keep
