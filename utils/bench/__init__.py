"""Benchmarks behind tools/benchmark.py: sample preparation (data.py, against the released way in
data_reference.py), inference (model.py) and training steps (train.py)."""
