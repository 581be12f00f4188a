"""Semantic-mask generator on real CAM_FRONT images, tiny random SegFormer, masks in tmp dirs."""
import os
import pickle
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datasets.io import DataFileError, read_seg_mask   # the dataset's own mask reader
from tools import gen_seg_masks
from datasets import seg_masks
from utils.files import write_png
from datasets.seg_masks import (ADE20K_CLASSES, SegMaskError, build_random_segformer,
                             camera_images, generate_masks, load_segmenter, mask_path)

TINY_HW = (128, 128)        # tiny-model input size: keeps the tests fast on 2 CPU cores
pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def tiny():
    return build_random_segformer("b0", input_hw=TINY_HW)


def hf_processor():
    """transformers' own SegFormer image processor at the tiny input size, PIL backend (named
    SegformerImageProcessorPil from transformers 5 on, SegformerImageProcessor before)."""
    import transformers
    cls = getattr(transformers, "SegformerImageProcessorPil", transformers.SegformerImageProcessor)
    return cls(size={"height": TINY_HW[0], "width": TINY_HW[1]})


def write_infos(path: Path, filenames):
    with open(path, "wb") as f:
        pickle.dump([{"cam_infos": {"CAM_FRONT": {"filename": n}}} for n in filenames], f)
    return path


@pytest.fixture(scope="module")
def generated(real_root, tiny, tmp_path_factory):
    """Masks of the first three real CAM_FRONT images, written once: (image paths, mask dir)."""
    tmp = tmp_path_factory.mktemp("generated")
    names = sorted(os.listdir(real_root / "samples" / "CAM_FRONT"))[:3]
    infos = write_infos(tmp / "infos.pkl", [f"samples/CAM_FRONT/{n}" for n in names])
    images = camera_images(infos, real_root)
    counts = generate_masks(images, tmp / "seg_mask", tiny, batch_size=2, progress=False)
    assert counts == {"written": 3, "skipped": 0}
    return images, tmp / "seg_mask"


def test_ade20k_labels_match_spade_classes():
    assert len(ADE20K_CLASSES) == 150 == len(set(ADE20K_CLASSES))
    spade = {0: "wall", 1: "building", 4: "tree", 12: "person", 20: "car", 32: "fence", 80: "bus",
             83: "truck", 93: "pole", 102: "van", 116: "minibike", 127: "bicycle"}
    assert {i: ADE20K_CLASSES[i] for i in spade} == spade


@pytest.mark.parametrize("size, params_m", [("b0", 3.8), ("b5", 84.7)])
def test_random_init_matches_published_segformer_sizes(size, params_m):
    """SegFormer paper: B0 3.8M, B5 84.7M parameters (ADE20K heads). Built on the CPU (B5: about
    4 s): transformers 4.x cannot build SegFormer on the meta device."""
    seg = build_random_segformer(size)
    n = sum(p.numel() for p in seg.model.parameters()) / 1e6
    assert round(n, 1) == params_m
    assert seg.model.config.id2label[20] == "car" and seg.preprocess.input_hw == (640, 640)


def test_upsample_argmax_chunked_equals_full():
    logits = torch.randn(150, 7, 9, generator=torch.Generator().manual_seed(0))
    full = F.interpolate(logits[None], size=(31, 53), mode="bilinear", align_corners=False)[0]
    got = seg_masks.upsample_argmax(logits, (31, 53), max_bytes=4 * 31 * 53 * 7)   # 7 classes/chunk
    assert torch.equal(got, full.argmax(0))


def test_cam_front_paths_resolve_under_data_root(tmp_path):
    infos = write_infos(tmp_path / "i.pkl", ["samples/CAM_FRONT/a.jpg",
                                             "/other/nuscenes/samples/CAM_FRONT/b.jpg",
                                             "samples/CAM_FRONT/a.jpg"])
    assert camera_images(infos, tmp_path / "root") == [
        tmp_path / "root/samples/CAM_FRONT/a.jpg", tmp_path / "root/samples/CAM_FRONT/b.jpg"]
    with open(infos, "wb") as f:
        pickle.dump([{"cam_infos": {}}], f)
    with pytest.raises(SegMaskError, match="record 0 has no cam_infos.CAM_FRONT.filename"):
        camera_images(infos, tmp_path)


def test_camera_images_follow_the_chosen_cameras(real_root, real_records, tmp_path):
    """Each chosen camera's image of every record, record-major, as the devkit's tables name them."""
    from nuscenes.nuscenes import NuScenes
    from datasets.infos import CAMERAS, save_infos
    nusc = NuScenes("v1.0-trainval", str(real_root), verbose=False)
    save_infos(real_records[:2], tmp_path / "i.pkl")
    expected = [real_root / nusc.get("sample_data", nusc.get("sample", r["sample_token"])["data"][cam])["filename"]
                for r in real_records[:2] for cam in ("CAM_BACK", "CAM_FRONT")]
    assert camera_images(tmp_path / "i.pkl", real_root, ["CAM_BACK", "CAM_FRONT"]) == expected
    six = camera_images(tmp_path / "i.pkl", real_root, CAMERAS)
    assert len(set(p.stem for p in six)) == 12 and [p.parent.name for p in six[:6]] == list(CAMERAS)
    infos = write_infos(tmp_path / "front_only.pkl", ["samples/CAM_FRONT/a.jpg"])
    with pytest.raises(SegMaskError, match="record 0 has no cam_infos.CAM_BACK.filename; leave"):
        camera_images(infos, real_root, ["CAM_FRONT", "CAM_BACK"])


def test_cli_all_cameras_writes_a_mask_per_camera_image(tiny, real_root, real_records, tmp_path):
    from datasets.infos import CAMERAS, save_infos
    model_dir = tmp_path / "model"
    tiny.model.save_pretrained(model_dir)
    hf_processor().save_pretrained(model_dir)
    save_infos(real_records[:1], tmp_path / "i.pkl")
    gen_seg_masks.main(["--data-root", str(real_root), "--infos", str(tmp_path / "i.pkl"), "--device", "cpu",
                        "--workers", "0", "--model", str(model_dir), "--out-dir", str(tmp_path / "out"),
                        "--cameras", "all", "--batch-size", "1"])     # unbatched: exactly tiny.predict
    cams = real_records[0]["cam_infos"]
    images = {cam: real_root / cams[cam]["filename"] for cam in CAMERAS}
    assert sorted(os.listdir(tmp_path / "out")) == sorted(f"{p.stem}.png" for p in images.values())
    assert all(f"__{cam}__" in images[cam].name for cam in CAMERAS)      # nuScenes names: no collision
    rgb = cv2.cvtColor(cv2.imread(str(images["CAM_BACK"])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(read_seg_mask(mask_path(tmp_path / "out", images["CAM_BACK"])), tiny.predict([rgb])[0])


def test_masks_named_sized_and_match_hf_processor(tiny, generated):
    images, out = generated
    assert sorted(os.listdir(out)) == sorted(f"{p.stem}.png" for p in images)
    for p in images:
        mask = read_seg_mask(out / f"{p.stem}.png")
        assert mask.dtype == np.uint8 and mask.shape == cv2.imread(str(p)).shape[:2] == (900, 1600)
        assert mask.max() < 150 and len(np.unique(mask)) > 1
    # Independent path: transformers' own image processor, full-size upsampling, argmax.
    from PIL import Image
    rgb = cv2.cvtColor(cv2.imread(str(images[2])), cv2.COLOR_BGR2RGB)
    ours = tiny.preprocess([rgb], torch.device("cpu"))
    ref = hf_processor()(images=Image.open(images[2]).convert("RGB"),
                         return_tensors="pt").pixel_values
    assert (ours - ref).abs().max() < 1 / 255 / 0.224         # under one grey level
    with torch.inference_mode():
        logits = tiny.model(pixel_values=ref).logits
    ref_mask = F.interpolate(logits, size=(900, 1600), mode="bilinear").argmax(1)[0].numpy()
    assert (ref_mask == read_seg_mask(out / f"{images[2].stem}.png")).mean() > 0.95


def test_resume_skips_existing_and_ignores_stale_temp(tiny, generated, tmp_path):
    images, done = generated
    out = Path(shutil.copytree(done, tmp_path / "seg_mask"))
    mtimes_ns = {p.stem: mask_path(out, p).stat().st_mtime_ns for p in images[1:]}
    redo = mask_path(out, images[0])
    redo.unlink()                                          # as after a crash mid-write: no mask,
    (out / f".{images[0].stem}.abc123.tmp").write_bytes(b"\x89PNG half")  # only a temp file
    counts = generate_masks(images, out, tiny, progress=False)
    assert counts == {"written": 1, "skipped": 2}
    assert {p.stem: mask_path(out, p).stat().st_mtime_ns for p in images[1:]} == mtimes_ns
    # The rewritten mask is the segmenter's output for that image. It need not be bit-identical
    # to the first run's: there the image shared a batch, and batched kernels round differently
    # on some CPUs, which can flip the argmax of a few near-tie pixels.
    rgb = cv2.cvtColor(cv2.imread(str(images[0])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(read_seg_mask(redo), tiny.predict([rgb])[0])
    assert (read_seg_mask(redo) == read_seg_mask(mask_path(done, images[0]))).mean() > 0.999


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_png(tmp_path / "x.png", np.zeros((4, 5), np.uint8))     # how masks are written
    assert os.listdir(tmp_path) == []


def test_missing_image_names_the_file(tiny, real_root, tmp_path):
    infos = write_infos(tmp_path / "i.pkl", ["samples/CAM_FRONT/no_such_frame.jpg"])
    with pytest.raises(DataFileError, match="no_such_frame.jpg"):
        generate_masks(camera_images(infos, real_root), tmp_path / "out", tiny)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exc:    # the CLI fails before loading any model
        gen_seg_masks.main(["--data-root", str(real_root), "--infos", str(infos),
                            "--model", str(tmp_path / "not_a_model")])
    assert "no_such_frame.jpg" in str(exc.value.code)


def test_cli_local_model_dir_and_random_init(tiny, real_root, tmp_path):
    model_dir = tmp_path / "model"
    tiny.model.save_pretrained(model_dir)
    hf_processor().save_pretrained(model_dir)
    assert load_segmenter(str(model_dir)).preprocess == tiny.preprocess
    image = sorted((real_root / "samples" / "CAM_FRONT").iterdir())[3]
    infos = write_infos(tmp_path / "i.pkl", [f"samples/CAM_FRONT/{image.name}"])
    args = ["--data-root", str(real_root), "--infos", str(infos), "--device", "cpu",
            "--workers", "0"]
    gen_seg_masks.main(args + ["--model", str(model_dir), "--out-dir", str(tmp_path / "a")])
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(read_seg_mask(mask_path(tmp_path / "a", image)), tiny.predict([rgb])[0])
    gen_seg_masks.main(args + ["--random-init", "--config-size", "b0",
                               "--out-dir", str(tmp_path / "b")])
    assert os.listdir(tmp_path / "b") == [f"{image.stem}.png"]
    assert read_seg_mask(tmp_path / "b" / f"{image.stem}.png").shape == (900, 1600)


def test_unloadable_model_error_says_how_to_fetch(tmp_path, monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)   # fail fast, no net
    # transformers 4.x keeps its own copy of the flag, read once at import
    monkeypatch.setattr("transformers.utils.hub._is_offline_mode", True, raising=False)
    missing = "spade-tests/no-such-segmenter"
    with pytest.raises(SegMaskError, match=f"hf download {missing}.*--model FOLDER"):
        load_segmenter(missing)
    with pytest.raises(SegMaskError, match="must hold what save_pretrained writes"):
        load_segmenter(str(tmp_path))                          # an empty folder: no weights
    build_random_segformer("b0").model.save_pretrained(tmp_path / "m")   # no preprocessor config
    with pytest.raises(SegMaskError, match="preprocessor_config.json"):
        load_segmenter(str(tmp_path / "m"))
    from transformers import SegformerConfig, SegformerForSemanticSegmentation
    SegformerForSemanticSegmentation(SegformerConfig(num_labels=19)).save_pretrained(tmp_path / "c")
    hf_processor().save_pretrained(tmp_path / "c")
    with pytest.raises(SegMaskError, match="predicts 19 classes"):
        load_segmenter(str(tmp_path / "c"))


def test_missing_transformers_is_one_line_with_the_install_command(real_root, tmp_path, monkeypatch):
    image = sorted((real_root / "samples" / "CAM_FRONT").iterdir())[0]
    infos = write_infos(tmp_path / "i.pkl", [f"samples/CAM_FRONT/{image.name}"])
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(SystemExit) as exc:
        gen_seg_masks.main(["--data-root", str(real_root), "--infos", str(infos), "--random-init",
                            "--out-dir", str(tmp_path / "out")])
    assert str(exc.value.code).startswith("error: transformers is needed here but cannot be imported")
    assert str(exc.value.code).endswith('install it with pip install -e ".[masks]"')
