"""Leaves that everything may use (config, checkpoints, files, metrics, pictures, ...), the engine
that runs training and evaluation (utils/engine) and the benchmarks (utils/bench). See
utils/README.md for where a new piece goes."""
