"""Evaluation: feature extraction, the metrics, re-ranking, the features file, embedding your own tracklets
and search."""
