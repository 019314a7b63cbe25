"""One generic trainer for every backend: loop, EMA, AMP, clipping, checkpoints, logs."""
