"""The engine: the training loop (train.py), evaluation with its evaluators (evaluate.py), the
demo / ablation / science runs built on them (runs.py) and their result tables (tables.py)."""
