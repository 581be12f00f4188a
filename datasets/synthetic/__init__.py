"""The procedural nuScenes-format world with dense ground truth (docs/synthetic.md).

    from datasets.synthetic import generate, load_synthetic_config
    generate(load_synthetic_config("configs/synthetic_world.yaml"), Path("data/synthetic"))
"""
from datasets.synthetic.config import SyntheticConfig, load_synthetic_config
from datasets.synthetic.pipeline import generate

__all__ = ["SyntheticConfig", "generate", "load_synthetic_config"]
