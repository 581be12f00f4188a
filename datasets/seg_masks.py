"""Semantic masks for the mask loss: ADE20K-150 class ids per camera pixel (docs/spade.md section 1).

    seg = load_segmenter(DEFAULT_MODEL).to("cuda")          # or build_random_segformer("b0")
    images = camera_images("infos_val.pkl", "/data/nuscenes")             # CAM_FRONT (released)
    images = camera_images("infos_val.pkl", "/data/nuscenes", CAMERAS)    # all six (data.cameras)
    generate_masks(images, "/data/nuscenes/seg_mask", seg, batch_size=8)

Any Hugging Face semantic-segmentation checkpoint with 150 ADE20K labels works (SegFormer,
UperNet: models whose output has `logits`, B x 150 x h x w). The image processor's resize and
normalisation are redone in torch; logits are upsampled to the image size before the argmax, in
chunks of classes so that memory stays bounded at 900x1600. Masks are written atomically
(temporary file in the same folder, then os.replace), and existing masks are skipped. A mask is
named after its image (nuScenes basenames hold the channel), so the cameras share one folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from datasets.infos import CAMERA, load_infos
from datasets.io import ROOT_HINT, DataFileError, read_image_bgr, resolve_data_path
from datasets.workers import worker_options
from utils.files import write_png
from utils.deps import require

DEFAULT_MODEL = "nvidia/segformer-b5-finetuned-ade-640-640"
DEFAULT_INPUT_HW = (640, 640)                      # the default checkpoint's processor size
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MASKS_INSTALL = 'pip install -e ".[masks]"'

# ADE20K-150 (SceneParse150) class names in id order, "other" removed: id 0 = wall.
ADE20K_CLASSES: Tuple[str, ...] = tuple((
    "wall,building,sky,floor,tree,ceiling,road,bed,windowpane,grass,cabinet,sidewalk,person,"
    "earth,door,table,mountain,plant,curtain,chair,car,water,painting,sofa,shelf,house,sea,"
    "mirror,rug,field,armchair,seat,fence,desk,rock,wardrobe,lamp,bathtub,railing,cushion,base,"
    "box,column,signboard,chest of drawers,counter,sand,sink,skyscraper,fireplace,refrigerator,"
    "grandstand,path,stairs,runway,case,pool table,pillow,screen door,stairway,river,bridge,"
    "bookcase,blind,coffee table,toilet,flower,book,hill,bench,countertop,stove,palm,"
    "kitchen island,computer,swivel chair,boat,bar,arcade machine,hovel,bus,towel,light,truck,"
    "tower,chandelier,awning,streetlight,booth,television receiver,airplane,dirt track,apparel,"
    "pole,land,bannister,escalator,ottoman,bottle,buffet,poster,stage,van,ship,fountain,"
    "conveyer belt,canopy,washer,plaything,swimming pool,stool,barrel,basket,waterfall,tent,bag,"
    "minibike,cradle,oven,ball,food,step,tank,trade name,microwave,pot,animal,bicycle,lake,"
    "dishwasher,screen,blanket,sculpture,hood,sconce,vase,traffic light,tray,ashcan,fan,pier,"
    "crt screen,plate,monitor,bulletin board,shower,radiator,glass,clock,flag"
).split(","))

# Mix Transformer (SegFormer encoder) sizes: hidden sizes, depths, decode-head width.
# Heads (1, 2, 5, 8), reduction ratios (8, 4, 2, 1) and patch sizes are shared by all sizes.
MIT_SIZES: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], int]] = {
    "b0": ((32, 64, 160, 256), (2, 2, 2, 2), 256),
    "b1": ((64, 128, 320, 512), (2, 2, 2, 2), 256),
    "b2": ((64, 128, 320, 512), (3, 4, 6, 3), 768),
    "b3": ((64, 128, 320, 512), (3, 4, 18, 3), 768),
    "b4": ((64, 128, 320, 512), (3, 8, 27, 3), 768),
    "b5": ((64, 128, 320, 512), (3, 6, 40, 3), 768),
}


class SegMaskError(RuntimeError):
    """An info record without an image of a camera asked for, or an unusable model; the message
    names the fix."""


def mask_path(out_dir: Path, image: Path) -> Path:
    """`<out_dir>/<image basename without extension>.png`."""
    return Path(out_dir) / f"{Path(image).stem}.png"


def camera_images(infos_path: Path, data_root: Path, cameras: Sequence[str] = (CAMERA,)) -> List[Path]:
    """The image of each of `cameras` (nuScenes channels) of every info record, record-major,
    resolved under `data_root`, duplicates removed."""
    images = []
    for i, info in enumerate(load_infos(infos_path)):
        for camera in cameras:
            try:
                filename = info["cam_infos"][camera]["filename"]
            except (KeyError, TypeError) as err:
                raise SegMaskError(f"{infos_path}: record {i} has no cam_infos.{camera}.filename; "
                                   "leave that camera out of --cameras or rebuild the info file "
                                   "with tools/create_infos.py") from err
            images.append(resolve_data_path(data_root, filename))
    return list(dict.fromkeys(images))


@dataclass(frozen=True)
class Preprocess:
    """The image processor's steps in torch: resize (bilinear, antialiased), rescale, normalise."""
    input_hw: Optional[Tuple[int, int]] = DEFAULT_INPUT_HW   # None = keep the image size
    rescale: float = 1.0 / 255.0
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def from_processor_dict(cls, cfg: dict) -> "Preprocess":
        """From a `preprocessor_config.json` dict (SegFormer/UperNet style: fixed height/width)."""
        input_hw = None
        if cfg.get("do_resize", True):
            size = cfg.get("size") or {}
            if "height" not in size or "width" not in size:
                raise SegMaskError(f"unsupported image-processor size {size!r}: only a fixed "
                                   "height/width (SegFormer/UperNet processors) is supported")
            input_hw = (int(size["height"]), int(size["width"]))
        rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
        if not cfg.get("do_normalize", True):
            return cls(input_hw, rescale, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        return cls(input_hw, rescale, mean=tuple(cfg.get("image_mean", IMAGENET_MEAN)),
                   std=tuple(cfg.get("image_std", IMAGENET_STD)))

    def __call__(self, images_rgb: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
        """images_rgb: H x W x 3 uint8 each (sizes may differ) -> B x 3 x h x w float32."""
        mean = torch.tensor(self.mean, device=device).view(3, 1, 1)
        std = torch.tensor(self.std, device=device).view(3, 1, 1)
        batch = []
        for img in images_rgb:
            x = torch.from_numpy(img).to(device).permute(2, 0, 1).float()[None]
            if self.input_hw is not None:
                x = F.interpolate(x, size=self.input_hw, mode="bilinear", align_corners=False,
                                  antialias=True)
            batch.append((x[0] * self.rescale - mean) / std)
        return torch.stack(batch)


def upsample_argmax(logits: torch.Tensor, out_hw: Tuple[int, int],
                    max_bytes: int = 128 << 20) -> torch.Tensor:
    """logits: C x h x w -> H x W int64 class ids of the bilinearly upsampled logits.

    Same result as `F.interpolate(logits, out_hw).argmax(0)`, computed over chunks of classes
    with a running maximum so that at most about `max_bytes` of upsampled logits exist at once.
    """
    n_classes = logits.shape[0]
    chunk = max(1, min(n_classes, max_bytes // (4 * out_hw[0] * out_hw[1])))
    best_val = best_idx = None
    for c0 in range(0, n_classes, chunk):
        up = F.interpolate(logits[None, c0:c0 + chunk].float(), size=out_hw, mode="bilinear",
                           align_corners=False)[0]
        val, idx = up.max(0)
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = val > best_val
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx + c0, best_idx)
    return best_idx


@dataclass
class Segmenter:
    """An ADE20K-150 model (output `logits`: B x 150 x h x w) with its preprocessing."""
    model: torch.nn.Module
    preprocess: Preprocess

    def to(self, device: str) -> "Segmenter":
        self.model.to(device)
        return self

    @torch.inference_mode()
    def predict(self, images_rgb: Sequence[np.ndarray]) -> List[np.ndarray]:
        """images_rgb: H x W x 3 uint8 each -> H x W uint8 ADE20K ids (0..149) each."""
        device = next(self.model.parameters()).device
        logits = self.model.eval()(pixel_values=self.preprocess(images_rgb, device)).logits
        return [upsample_argmax(lg, img.shape[:2]).to(torch.uint8).cpu().numpy()
                for lg, img in zip(logits, images_rgb)]


def build_random_segformer(size: str = "b5", input_hw: Tuple[int, int] = DEFAULT_INPUT_HW,
                           seed: int = 0) -> Segmenter:
    """SegFormer (MiT-`size`) for ADE20K-150 with random weights, built locally: no download.

    `b5` with 640x640 input is the architecture of DEFAULT_MODEL; masks from it are meaningless
    (tests, smoke runs, timing).
    """
    transformers = require("transformers", MASKS_INSTALL)
    if size not in MIT_SIZES:
        raise SegMaskError(f"unknown MiT size {size!r}; choose one of {sorted(MIT_SIZES)}")
    hidden, depths, decoder = MIT_SIZES[size]
    config = transformers.SegformerConfig(hidden_sizes=list(hidden), depths=list(depths),
                             decoder_hidden_size=decoder,
                             id2label=dict(enumerate(ADE20K_CLASSES)),
                             label2id={name: i for i, name in enumerate(ADE20K_CLASSES)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.SegformerForSemanticSegmentation(config)
    return Segmenter(model.eval(), Preprocess(input_hw=tuple(input_hw)))


def load_segmenter(model_id_or_dir: str = DEFAULT_MODEL) -> Segmenter:
    """A Hugging Face hub id (downloaded or cached) or a save_pretrained directory holding the
    model and its `preprocessor_config.json`."""
    transformers = require("transformers", MASKS_INSTALL)
    if Path(model_id_or_dir).is_dir():
        fix = ("The folder must hold what save_pretrained writes for the model (config.json, "
               "weights) and for its image processor (preprocessor_config.json).")
    else:
        fix = (f"Without network, fetch it on a machine that has one (`hf download "
               f"{model_id_or_dir}`, then copy the Hugging Face cache here or point HF_HOME at "
               "it; HF_HUB_OFFLINE=1 skips the retries), or save model and image processor with "
               "save_pretrained to a folder and pass --model FOLDER. --random-init runs without "
               "any weights (meaningless masks).")
    try:
        model = transformers.AutoModelForSemanticSegmentation.from_pretrained(model_id_or_dir)
        processor_cfg, _ = transformers.ImageProcessingMixin.get_image_processor_dict(model_id_or_dir)
    except (OSError, ValueError) as err:
        raise SegMaskError(f"cannot load segmenter {model_id_or_dir!r}: {err}\n{fix}") from err
    if model.config.num_labels != len(ADE20K_CLASSES):
        raise SegMaskError(f"{model_id_or_dir!r} predicts {model.config.num_labels} classes; the "
                           "masks need an ADE20K-150 checkpoint (ids 0 wall .. 149 flag)")
    return Segmenter(model.eval(), Preprocess.from_processor_dict(processor_cfg))


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; 'cuda' without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SegMaskError("--device cuda asked for, but torch sees no GPU; use --device cpu")
    return device


def require_images(images: Sequence[Path]) -> None:
    """Raises DataFileError naming the first image file that does not exist."""
    missing = [p for p in images if not Path(p).is_file()]
    if missing:
        raise DataFileError(f"image {missing[0]} not found ({len(missing)} of {len(images)} "
                            f"missing); {ROOT_HINT}")


class _ImageFiles(Dataset):
    """Decodes images: item i -> (path, H x W x 3 uint8 RGB)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.paths[i], cv2.cvtColor(read_image_bgr(self.paths[i]), cv2.COLOR_BGR2RGB)


def generate_masks(images: Sequence[Path], out_dir: Path, segmenter: Segmenter,
                   batch_size: int = 4, workers: int = 0, progress: bool = True) -> Dict[str, int]:
    """Writes `mask_path(out_dir, image)` for every image lacking one; returns the counts
    {"written", "skipped"}. All images are checked to exist before any work starts."""
    require_images(images)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pending = [p for p in images if not mask_path(out_dir, p).is_file()]
    loader = DataLoader(_ImageFiles(pending), batch_size=batch_size, collate_fn=list,
                        **worker_options(workers))
    with tqdm(total=len(images), initial=len(images) - len(pending), unit="img",
              desc="seg masks", disable=not progress) as bar:
        for batch in loader:
            paths, rgbs = zip(*batch)
            for path, mask in zip(paths, segmenter.predict(rgbs)):
                write_png(mask_path(out_dir, path), mask)
            bar.update(len(batch))
    return {"written": len(pending), "skipped": len(images) - len(pending)}
