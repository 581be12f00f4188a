"""Benchmarks behind tools/benchmark.py: sample preparation (data.py, against the released way in
data_reference.py), inference (model.py), training steps (train.py), and the records of measured
figures with the tables the docs quote (figures.py)."""
