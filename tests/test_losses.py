"""util.train.losses: the soft-margin batch-hard triplet loss, temporal pooling and the identity losses.

Independent oracles on purpose: hand-computed batches, and ``_original_style_triplet``, the original
release's loop restated here (values and gradients), so that the vectorised loss is not checked against itself."""
import math

import pytest
import torch

from models.pooling import temporal_pool
from util.errors import ModelConfigError
from util.train.losses import batch_hard_triplet_soft, pairwise_euclidean
from util.train.trainer import LossConfig, compute_losses


def softplus(z):
    return math.log1p(math.exp(z))


def test_triplet_hand_computed_batch():
    # points in the plane; pairwise distances (exact): d01=5 d02=10 d03=6 d12=5 d13=5 d23=8,
    # d40=1 d41=sqrt18 d42=sqrt85 d43=sqrt37
    x = torch.tensor([[0., 0.], [3., 4.], [6., 8.], [6., 0.], [0., 1.]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 0])
    # anchor: hardest positive (max over same id, self excluded) - hardest negative (min over other ids)
    z = [5 - 6,                               # 0: pos {1:5, 4:1}, neg {2:10, 3:6}
         5 - 5,                               # 1: pos {0:5, 4:sqrt18}, neg {2:5, 3:5}
         8 - 5,                               # 2: pos {3:8}, neg {0:10, 1:5, 4:sqrt85}
         8 - 5,                               # 3: pos {2:8}, neg {0:6, 1:5, 4:sqrt37}
         math.sqrt(18) - math.sqrt(37)]       # 4: pos {0:1, 1:sqrt18}, neg {2:sqrt85, 3:sqrt37}
    expected = sum(softplus(v) for v in z) / 5
    loss = batch_hard_triplet_soft(x, y)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_triplet_singleton_identity_and_no_negatives():
    # anchor 0 has no other sample of its id: its hardest positive is 0
    x = torch.tensor([[0.], [2.], [5.]])
    loss = batch_hard_triplet_soft(x, torch.tensor([7, 3, 3]))
    z = [0 - 2, 3 - 2, 3 - 5]
    assert loss.item() == pytest.approx(sum(softplus(v) for v in z) / 3, rel=1e-6)
    # a single identity: no negatives, d_an is pushed up by 1e5, the loss vanishes
    loss = batch_hard_triplet_soft(torch.tensor([[0.], [1.]]), torch.tensor([1, 1]))
    assert loss.item() == pytest.approx(0.0, abs=1e-30)


def test_triplet_diagonal_distance_and_duplicate_rows_have_finite_gradient():
    x = torch.tensor([[1., 2., 3.], [1., 2., 3.], [0., 0., 0.]], requires_grad=True)
    d = pairwise_euclidean(x)
    eps = torch.tensor(1e-12).sqrt()
    assert torch.equal(torch.diagonal(d), eps.expand(3))  # sqrt(0 + 1e-12), not 0
    assert d[0, 1] == eps
    batch_hard_triplet_soft(x, torch.tensor([0, 1, 0])).backward()
    assert torch.isfinite(x.grad).all()


def _original_style_triplet(feat, labels):
    """Restatement of the original TripletLoss('soft', batch_hard=True) with dis_func='eu', then .mean()."""
    dist = ((feat.unsqueeze(1) - feat.unsqueeze(0)) ** 2).sum(2).add(1e-12).sqrt()
    same = (labels.unsqueeze(1) == labels.unsqueeze(0)).float()
    positive = same - torch.eye(len(labels))
    hardest_pos = (dist * positive).max(1)[0]
    hardest_neg = (dist + 1e5 * same).min(1)[0]
    return torch.log(1 + torch.exp(hardest_pos - hardest_neg)).mean()


def test_triplet_matches_original_formulation_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(24, 64, generator=g, dtype=torch.float64) * 0.3
    labels = torch.arange(8).repeat_interleave(3)[torch.randperm(24, generator=g)]
    a, b = feat.clone().requires_grad_(), feat.clone().requires_grad_()
    ours, ref = batch_hard_triplet_soft(a, labels), _original_style_triplet(b, labels)
    ours.backward(), ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)


def test_triplet_large_margin_is_stable():
    # log(1 + exp(z)) overflows for large z in float32; softplus does not
    x = torch.tensor([[0.], [200.], [1.]])
    loss = batch_hard_triplet_soft(x, torch.tensor([0, 0, 1]))
    assert torch.isfinite(loss)
    # z: 200 - 1, 200 - 199, 0 - 1 (anchor 2 has no positive)
    assert loss.item() == pytest.approx((199 + softplus(1) + softplus(-1)) / 3, rel=1e-6)


def test_triplet_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match='expected features'):
        batch_hard_triplet_soft(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long))


def test_temporal_pool_modes():
    t = torch.arange(24, dtype=torch.float32).reshape(6, 4)  # B=2 clips of S=3 frames
    assert torch.equal(temporal_pool(t, 3, 'mean'), torch.stack([t[:3].mean(0), t[3:].mean(0)]))
    assert torch.equal(temporal_pool(t, 3, 'max'), torch.stack([t[2], t[5]]))
    assert temporal_pool(t, 3, 'Done') is t
    logits = torch.randn(8, 5)
    assert temporal_pool(logits, 4, 'mean').shape == (2, 5)


def test_temporal_pool_max_sends_gradient_to_one_frame():
    t = torch.tensor([[1.], [3.], [2.], [5.], [4.], [0.]], requires_grad=True)
    temporal_pool(t, 3, 'max').sum().backward()
    assert t.grad.flatten().tolist() == [0., 1., 0., 1., 0., 0.]


def test_temporal_pool_errors():
    with pytest.raises(ModelConfigError, match="--temporal: expected one of mean, max, Done, got 'avg'"):
        temporal_pool(torch.zeros(4, 2), 2, 'avg')
    with pytest.raises(ModelConfigError, match='5 frame rows do not split into clips of S=2'):
        temporal_pool(torch.zeros(5, 2), 2, 'mean')


def test_id_losses_hand_computed():
    """Track ID loss: cross-entropy of the mean-pooled clip logits; frame ID loss: of every frame's logits."""
    config = LossConfig(S=2, temporal='mean', frame_id_loss=True, track_id_loss=True)
    l3 = math.log(3)
    # clip 0 (label 1): frames [0, 0], [0, 2 ln 3] -> pooled [0, ln 3]; clip 1 (label 0): [2 ln 3, 0], [0, 0]
    logits = torch.tensor([[0., 0.], [0., 2 * l3], [2 * l3, 0.], [0., 0.]])
    losses = compute_losses(torch.randn(4, 3), logits, torch.tensor([1, 0]), config, frame_level=True)
    assert losses['track_id_loss'].item() == pytest.approx(math.log(4 / 3), abs=1e-6)  # softmax 3/4 each
    # frames: softmax 1/2, 9/10, 9/10, 1/2 on the true class
    assert losses['frame_id_loss'].item() == pytest.approx(math.log(20 / 9) / 2, abs=1e-6)
