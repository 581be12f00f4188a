"""The demo's picture (utils/engine/demo.py demo_panel) from a dataset sample as the dataset makes
it today, its text keys (name, camera) included: `make demo` ends with it. It reads on its own: a
heading names the model's budget (from the config) and the frame, the |error| scale says that
errors beyond it are drawn in its top colour."""
import numpy as np
import torch

from datasets.nuscenes_dataset import RadarCameraDataset
from models import SpaDe
from utils.config import load_config
from utils.engine.demo import demo_panel
from utils.visualize import ERROR_CMAP, colour_bar, model_line, text_strip


def test_demo_panel_takes_a_dataset_sample(real_infos, real_root):
    cfg = load_config(None, [f"data.root={real_root}", "train.max_steps=7"])
    sample = RadarCameraDataset(cfg, real_infos, "eval")[0]
    assert isinstance(sample["camera"], str) and isinstance(sample["name"], str)
    torch.manual_seed(0)
    picture = demo_panel(SpaDe().eval(), sample, cfg)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    heading = text_strip(f"{model_line(cfg, torch.device('cpu'))}\nsynthetic val frame {sample['name']}",
                         2 * 1600)
    assert "7 training steps" in model_line(cfg, torch.device("cpu"))
    assert np.array_equal(picture[:len(heading)], heading)
    assert picture.shape[0] >= len(heading) + 2 * 900 and picture.shape[1] == 2 * 1600
    error_bar = colour_bar(1600, 10.0, cmap=ERROR_CMAP, clipped=True)
    assert np.array_equal(picture[-len(error_bar):, 1600:], error_bar)
