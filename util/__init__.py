"""Database files and loaders, frames, sampling, losses, metrics, training loop, evaluation, checkpoints and
pictures."""
