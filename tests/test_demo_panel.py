"""The demo's picture (utils/engine/demo.py demo_panel) from a dataset sample as the dataset makes
it today, its text keys (name, camera) included: `make demo` ends with it."""
import numpy as np
import torch

from datasets.nuscenes_dataset import RadarCameraDataset
from models import SpaDe
from utils.config import load_config
from utils.engine.demo import demo_panel


def test_demo_panel_takes_a_dataset_sample(real_infos, real_root):
    sample = RadarCameraDataset(load_config(None, [f"data.root={real_root}"]), real_infos, "eval")[0]
    assert isinstance(sample["camera"], str) and isinstance(sample["name"], str)
    torch.manual_seed(0)
    picture = demo_panel(SpaDe().eval(), sample, 80.0)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert picture.shape[0] >= 2 * 900 and picture.shape[1] >= 2 * 1600
