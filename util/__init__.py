"""Data, sampling, losses, metrics, training loop, checkpoints and visualisation."""
