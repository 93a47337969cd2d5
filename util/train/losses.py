"""Training losses: the batch-hard soft-margin triplet loss.

The identity losses are plain F.cross_entropy (util/train/trainer.py compute_losses): on the pooled clip logits
(track level) and/or on every frame's logits (frame level).
"""
import torch
import torch.nn.functional as F


def pairwise_euclidean(x):
    """(B, D) -> (B, B) Euclidean distances sqrt(sum sq + 1e-12).

    Computed from explicit differences rather than the |a|^2 + |b|^2 - 2ab expansion: no cancellation,
    an exact 1e-6 on the diagonal, and the same numbers as the original training code. The epsilon keeps
    the gradient finite for identical rows.
    """
    diff = x.unsqueeze(1) - x.unsqueeze(0)  # (B, B, D)
    return (diff.pow(2).sum(dim=2) + 1e-12).sqrt()


def batch_hard_triplet_soft(features, labels):
    """Batch-hard triplet loss with soft margin, averaged over anchors.

    features: (B, D) clip features (before the BN neck); labels: (B,) identity labels.
    For each anchor: d_ap = distance to its farthest sample of the same identity (itself excluded),
    d_an = distance to its nearest sample of another identity; loss = mean softplus(d_ap - d_an).
    An anchor with no other sample of its identity gets d_ap = 0; with no other identity in the batch,
    d_an is its nearest distance plus 1e5 (both as in the original). Works unchanged on features
    gathered from several processes: mining is over whatever batch is passed in.
    """
    if features.dim() != 2 or labels.dim() != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(f'triplet loss: expected features (B, D) and labels (B,), got '
                         f'{tuple(features.shape)} and {tuple(labels.shape)}')
    dist = pairwise_euclidean(features)  # (B, B)
    same = labels.unsqueeze(1) == labels.unsqueeze(0)  # (B, B), diagonal True
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = (same & ~eye).to(dist.dtype)
    # distances are > 0, so zeroing non-positives leaves the hardest positive as the row max
    d_ap = (dist * positive).max(dim=1).values
    # pushing same-id entries (self included) up by 1e5 leaves the hardest negative as the row min
    d_an = (dist + 1e5 * same.to(dist.dtype)).min(dim=1).values
    return F.softplus(d_ap - d_an).mean()
