"""Training: the trainer and one training step, the losses, and the run directory (lock, resume state)."""
