"""Coloured pictures of images, depth maps and errors (TensorBoard, eval --save-vis, the demo).

All functions take NumPy arrays or tensors of one image and return H x W x 3 uint8 BGR (OpenCV
order); `to_rgb_chw` turns one into the RGB float C x H x W that TensorBoard wants. Depth and
error tiles carry a colour bar with ticks in their unit; pixels without a value are drawn grey
(NO_VALUE_BGR), which neither colour map uses, so "no value" never looks like "near"; a bar whose
top colour also stands for everything beyond it ends in "+" ("10+ m"). Panels caption each tile
and can carry a heading (e.g. `model_line`: what model and budget produced the picture).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch


NO_VALUE_BGR = (128, 128, 128)
DEPTH_CMAP, ERROR_CMAP = cv2.COLORMAP_TURBO, cv2.COLORMAP_INFERNO
FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def text_scale(width_px: int) -> float:
    """Font scale for captions and ticks on a tile `width_px` wide (0.4 at 400 px, 1.0 at 1600)."""
    return float(np.clip(width_px / 1600.0, 0.4, 1.5))


def image_bgr(img) -> np.ndarray:
    """img: 3 x H x W BGR 0..255 (the dataset's `img`) -> H x W x 3 uint8."""
    return np.clip(_np(img).transpose(1, 2, 0), 0, 255).astype(np.uint8)


def colorize(value, vmax: float, sparse: bool = False, cmap: int = DEPTH_CMAP) -> np.ndarray:
    """value: (1 x) H x W on 0..vmax, 0 or less (or NaN) = no value, drawn NO_VALUE_BGR. `sparse`
    grows points to 3x3 for visibility. H x W x 3 uint8, no colour bar."""
    v = _np(value)
    v = np.nan_to_num(v.reshape(v.shape[-2:]).astype(np.float32), nan=0.0)
    if sparse:
        v = cv2.dilate(v, np.ones((3, 3), np.uint8))
    scaled = np.clip(v / max(vmax, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    out = cv2.applyColorMap(scaled, cmap)
    out[v <= 0] = NO_VALUE_BGR
    return out


def tick_labels(vmax: float, unit: str = "m", clipped: bool = False, ticks: int = 5) -> List[str]:
    """The labels of `ticks` evenly spaced ticks over 0..vmax, the unit after the last one, which
    reads "vmax+" when values beyond vmax are drawn in the top colour: ["0", ..., "10+ m"]."""
    labels = [f"{vmax * k / (ticks - 1):g}" for k in range(ticks)]
    labels[-1] += ("+" if clipped else "") + (f" {unit}" if unit else "")
    return labels


def tick_layout(start_px: int, width_px: int, vmax: float, unit: str, clipped: bool,
                scale: float) -> List[Tuple[int, int, str]]:
    """(tick x, label x, label) of the `tick_labels` of a scale from start_px to width_px - 1
    (labels centred on their ticks, kept inside): 5 ticks, or 3 or 2 where 5 labels would come
    closer than 4 px to each other."""
    for ticks in (5, 3, 2):
        placed = []
        for k, label in enumerate(tick_labels(vmax, unit, clipped, ticks)):
            x = start_px + int(k / (ticks - 1) * (width_px - start_px - 1))
            label_w = cv2.getTextSize(label, FONT, scale, 1)[0][0]
            placed.append((x, min(max(x - label_w // 2, start_px), width_px - label_w - 2), label, label_w))
        if all(a[1] + a[3] + 4 <= b[1] for a, b in zip(placed, placed[1:])):
            break
    return [(x, label_x, label) for x, label_x, label, _ in placed]


def colour_bar(width_px: int, vmax: float, unit: str = "m", cmap: int = DEPTH_CMAP,
               no_value: bool = True, clipped: bool = False) -> np.ndarray:
    """A horizontal bar `width_px` wide: the colour map over 0..vmax with its `tick_layout` (the
    last label "vmax+" when `clipped`), after a grey swatch labelled "none" when the map has
    pixels without a value. h x width_px x 3 uint8."""
    scale = 0.8 * text_scale(width_px)
    (none_w, text_h), _ = cv2.getTextSize("none", FONT, scale, 1)
    bar_h, strip_h = max(6, int(15 * scale)), text_h + int(12 * scale) + 4
    out = np.zeros((bar_h + strip_h, width_px, 3), np.uint8)
    swatch = min(none_w + int(12 * scale), width_px // 4) if no_value else 0
    if no_value:
        out[:bar_h, :max(swatch - 4, 1)] = NO_VALUE_BGR
        cv2.putText(out, "none", (0, bar_h + strip_h - 6), FONT, scale, WHITE, 1, cv2.LINE_AA)
    ramp = np.linspace(0, 255, width_px - swatch).astype(np.uint8)[None].repeat(bar_h, 0)
    out[:bar_h, swatch:] = cv2.applyColorMap(ramp, cmap)
    for x, label_x, label in tick_layout(swatch, width_px, vmax, unit, clipped, scale):
        cv2.line(out, (x, 0), (x, bar_h + 3), WHITE, 1)
        cv2.putText(out, label, (label_x, bar_h + strip_h - 6), FONT, scale, WHITE, 1, cv2.LINE_AA)
    return out


def depth_tile(value, vmax: float, sparse: bool = False, cmap: int = DEPTH_CMAP, unit: str = "m",
               no_value: bool = True, clipped: bool = False) -> np.ndarray:
    """`colorize` with its colour bar below (no "none" swatch when `no_value` is False; the last
    tick "vmax+" when `clipped`: values beyond vmax may be there, drawn in the top colour)."""
    tile = colorize(value, vmax, sparse, cmap)
    return np.concatenate([tile, colour_bar(tile.shape[1], vmax, unit, cmap, no_value, clipped)], 0)


def error_tile(pred_m, gt_m, vmax_m: float = 10.0, sparse: bool = True) -> np.ndarray:
    """|pred - gt| where gt > 0 (m) on 0..vmax_m with its colour bar, whose last tick reads
    "vmax_m+" (larger errors are drawn in the top colour); grey where gt is missing."""
    pred, gt = _np(pred_m).squeeze(), _np(gt_m).squeeze()
    err = np.where(gt > 0, np.abs(pred - gt) + 1e-3, 0.0)
    return depth_tile(err, vmax_m, sparse=sparse, cmap=ERROR_CMAP, clipped=True)


def wrapped(text: str, width_px: int, scale: float) -> List[str]:
    """`text` as lines no wider than width_px at font `scale`: broken at each newline and, where
    a line is wider, at spaces (a single word wider than width_px stays whole on its line)."""
    lines: List[str] = []
    for paragraph in text.split("\n"):
        start = len(lines)
        for word in paragraph.split(" "):
            joined = f"{lines[-1]} {word}" if len(lines) > start else word
            if len(lines) > start and cv2.getTextSize(joined, FONT, scale, 1)[0][0] <= width_px:
                lines[-1] = joined
            else:
                lines.append(word)
    return lines


def text_strip(text: str, width_px: int) -> np.ndarray:
    """`text` in white on a black strip width_px wide, `wrapped` inside its margins, one text line
    (at `text_scale(width_px)`) per line. (lines x line height) x width_px x 3 uint8."""
    scale = text_scale(width_px)
    margin_px, line_px = int(6 * scale), int(30 * scale) + 6
    lines = wrapped(text, width_px - 2 * margin_px, scale)
    out = np.zeros((len(lines) * line_px, width_px, 3), np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(out, line, (margin_px, (i + 1) * line_px - int(9 * scale)), FONT, scale, WHITE, 1,
                    cv2.LINE_AA)
    return out


def _pad_rows(picture: np.ndarray, height_px: int) -> np.ndarray:
    """`picture` padded black at the bottom to height_px rows."""
    return np.pad(picture, ((0, height_px - picture.shape[0]), (0, 0), (0, 0)))


def panel(tiles: Sequence[Tuple[str, np.ndarray]], columns: int = 2, heading: str = "") -> np.ndarray:
    """Captioned tiles (same width; shorter ones padded black at the bottom, e.g. an image beside
    a depth tile with its colour bar) laid out row by row, `columns` per row; each caption is a
    `text_strip` over its tile, padded to the tallest of its row; `heading`, when given, is a
    `text_strip` across the whole panel above them."""
    tile_h = max(t.shape[0] for _, t in tiles)
    rows = []
    for i in range(0, len(tiles), columns):
        strips = [(text_strip(c, t.shape[1]), t) for c, t in tiles[i:i + columns]]
        strip_h = max(s.shape[0] for s, _ in strips)
        shown = [np.concatenate([_pad_rows(s, strip_h), _pad_rows(t, tile_h)], 0) for s, t in strips]
        rows.append(np.concatenate(shown + [np.zeros_like(shown[0])] * (columns - len(shown)), 1))
    grid = np.concatenate(rows, 0)
    return np.concatenate([text_strip(heading, grid.shape[1]), grid], 0) if heading else grid


def model_line(cfg, device: torch.device) -> str:
    """What trained the model of a picture, from its Config and the device it runs on (where
    utils.engine.runs puts it, as training does: the GPU when there is one), e.g. "SpaDe, seed 0,
    500 training steps (batch 4, 225x400, CPU)"; train.epochs instead when train.max_steps is 0."""
    train = cfg.train
    length = f"{train.max_steps} training steps" if train.max_steps > 0 else f"{train.epochs} training epochs"
    return (f"SpaDe, seed {train.seed}, {length} (batch {train.batch_size}, {cfg.data.height}x{cfg.data.width}, "
            f"{'CPU' if device.type == 'cpu' else 'GPU'})")


def sample_panel(img, radar_m, pred_m, lidar_m, mask=None, target_mask=None,
                 max_depth_m: float = 80.0, columns: int = 2) -> np.ndarray:
    """The standard picture of one sample: image, radar, prediction, LiDAR, error, and when given
    the predicted mask beside its semantic target."""
    tiles = [("image", image_bgr(img)),
             ("radar (m)", depth_tile(radar_m, max_depth_m, clipped=True)),
             ("prediction (m)", depth_tile(pred_m, max_depth_m, clipped=True)),
             ("LiDAR (m)", depth_tile(lidar_m, max_depth_m, sparse=True, clipped=True)),
             ("|error| on LiDAR (m)", error_tile(pred_m, lidar_m))]
    if mask is not None:
        tiles.append(("predicted mask", depth_tile(_np(mask) + 1e-3, 1.0, cmap=cv2.COLORMAP_BONE, unit="",
                                                   no_value=False)))
    if target_mask is not None:
        tiles.append(("target mask", depth_tile(_np(target_mask) + 1e-3, 1.0, cmap=cv2.COLORMAP_BONE, unit="",
                                                no_value=False)))
    return panel(tiles, columns)


# The nuScenes rig as its pictures show it, and each camera's colour in the bird's-eye view
RIG_LAYOUT = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
              ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))
CAMERA_BGR = {"CAM_FRONT": (0, 0, 255), "CAM_FRONT_RIGHT": (0, 140, 255), "CAM_BACK_RIGHT": (0, 230, 230),
              "CAM_BACK": (0, 200, 0), "CAM_BACK_LEFT": (255, 128, 0), "CAM_FRONT_LEFT": (255, 0, 255)}
LIDAR_BGR = WHITE


def bev_tile(clouds: Sequence[Tuple[str, np.ndarray]], lidar_xyz_m: np.ndarray, size_px: int,
             range_m: float = 50.0, ring_m: float = 10.0) -> np.ndarray:
    """Bird's-eye view of ego-frame points (x forward = up, y left = left, ego at the centre,
    range_m to each edge): each camera's N x 3 points of `clouds` (camera, xyz_m) in its
    CAMERA_BGR, the LiDAR points on top in white, rings every ring_m and a legend.
    size_px x size_px x 3 uint8."""
    out = np.zeros((size_px, size_px, 3), np.uint8)
    px_per_m, centre = size_px / (2 * range_m), size_px / 2
    scale, c = text_scale(size_px), int(centre)
    for k in range(1, int(range_m // ring_m) + 1):            # under the points
        radius = int(round(k * ring_m * px_per_m))
        cv2.circle(out, (c, c), radius, NO_VALUE_BGR, 1, cv2.LINE_AA)
        cv2.putText(out, f"{k * ring_m:g} m", (c + 3, c - radius - 3), FONT, scale, NO_VALUE_BGR, 1,
                    cv2.LINE_AA)

    def draw(xyz_m: np.ndarray, bgr) -> None:
        col = np.floor(centre - np.asarray(xyz_m)[:, 1] * px_per_m).astype(np.int64)
        row = np.floor(centre - np.asarray(xyz_m)[:, 0] * px_per_m).astype(np.int64)
        inside = (col >= 0) & (col < size_px) & (row >= 0) & (row < size_px)
        out[row[inside], col[inside]] = bgr

    for camera, xyz_m in clouds:
        draw(xyz_m, CAMERA_BGR[camera])
    draw(lidar_xyz_m, LIDAR_BGR)
    car = (int(round(2.4 * px_per_m)), int(round(1.0 * px_per_m)))      # about a car: 4.8 x 2 m
    cv2.rectangle(out, (c - car[1], c - car[0]), (c + car[1], c + car[0]), WHITE, 1)
    legend = [("bird's-eye view, ego frame: x forward (up), y left", WHITE),
              (f"rings every {ring_m:g} m; LiDAR key sweep in white", LIDAR_BGR),
              *((f"{camera} prediction", CAMERA_BGR[camera]) for camera, _ in clouds)]
    line_px = int(22 * scale) + 4
    for i, (text, bgr) in enumerate(legend):
        cv2.putText(out, text, (4, (i + 1) * line_px), FONT, scale, bgr, 1, cv2.LINE_AA)
    return out


def surround_panel(depths_m: Dict[str, np.ndarray], clouds: Sequence[Tuple[str, np.ndarray]],
                   lidar_xyz_m: np.ndarray, max_depth_m: float = 80.0, tile_width_px: int = 480,
                   range_m: float = 50.0) -> np.ndarray:
    """The picture of a surround key frame: each camera's depth map (depths_m: camera -> H x W
    m) resized to tile_width_px wide with its colour bar, in RIG_LAYOUT (a camera without a map:
    a black tile), beside `bev_tile` of `clouds` and the LiDAR as tall as those two rows. Hence
    (H', W') = (2 captioned tile rows, 3 tile_width_px + H') x 3 uint8."""
    tile_hw = next(np.shape(d) for d in depths_m.values())
    tile_h = int(round(tile_hw[0] * tile_width_px / tile_hw[1]))
    tiles = []
    for camera in (c for row in RIG_LAYOUT for c in row):
        if camera in depths_m:
            small = cv2.resize(np.asarray(depths_m[camera], np.float32), (tile_width_px, tile_h),
                               interpolation=cv2.INTER_NEAREST)
            tiles.append((f"{camera} (m)", depth_tile(small, max_depth_m)))
        else:
            tiles.append((f"{camera}: not predicted", np.zeros((tile_h, tile_width_px, 3), np.uint8)))
    grid = panel(tiles, columns=len(RIG_LAYOUT[0]))
    return np.concatenate([grid, bev_tile(clouds, lidar_xyz_m, grid.shape[0], range_m)], 1)


def to_rgb_chw(bgr: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 BGR -> 3 x H x W float32 RGB in 0..1 (TensorBoard's add_image)."""
    return bgr[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0
