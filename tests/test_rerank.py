"""k-reciprocal re-ranking (util/rerank.py) against an independent oracle.

The oracle is ``rerank_reference``: a plain restatement of the authors' released loops (float32 numpy, one
full argsort, a Python loop per item, the inverted index of V), sharing no code with the vectorised torch
path. Both get the same original distance matrix. Re-ranked distances must agree within 1e-5, and CMC and
mAP through the project's metric (util.evaluation.metrics.score_distances) must be equal.

Tie order: the released code ranks with numpy's default argsort, which leaves the order of equal distances
to the sort algorithm; ours and the oracle (sort_kind='stable') put them in index order. On features
without exact duplicates the two sorts give the same nearest lists (tested). With exact twins (MARS: every
query is also in the gallery) runs of equal distances cross the k-th place on many rows, there the choice
matters (by up to 0.15 in the re-ranked distance on the twin case below with numpy 2.1), and ours follows
the stable order exactly.
"""
import re

import numpy as np
import pytest
import torch
from reference import rerank_reference

import util.evaluation.rerank as rerank
from util.evaluation.metrics import score_distances
from util.evaluation.rerank import k_reciprocal_distance, pairwise_distance, rerank_distance

TOL = 1e-5
PARAMETERS = [(20, 6, 0.3), (5, 1, 0.0), (7, 3, 1.0), (3, 10, 0.5), (1, 2, 0.3)]


def random_set(q, g, dim, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(q, dim, generator=gen), torch.randn(g, dim, generator=gen)


def mars_like_set(seed=0, n_ids=12, dim=16):
    """A tiny test split shaped like MARS: identities in 2-4 cameras clustered around a centre, junk
    (pid -1) and distractors (pid 0) with random features, one query per identity and camera; the gallery
    is every test tracklet, so each query is an exact twin of a gallery row. Returns features (N, D),
    pids, cams, query rows."""
    rng = np.random.default_rng(seed)
    pid, cam = [], []
    for i in range(1, n_ids + 1):
        cams = rng.choice(np.arange(1, 7), rng.integers(2, 5), replace=False)
        per_cam = rng.integers(1, 4, len(cams))
        pid += [i] * int(per_cam.sum())
        cam += np.repeat(cams, per_cam).tolist()
    pid += [-1] * 8 + [0] * 20
    cam += rng.integers(1, 7, 28).tolist()
    pid, cam = np.array(pid), np.array(cam)
    centres = rng.standard_normal((n_ids + 1, dim)).astype(np.float32)
    feats = rng.standard_normal((len(pid), dim)).astype(np.float32)
    feats[pid > 0] += 1.5 * centres[pid[pid > 0]]
    query = np.array([np.flatnonzero((pid == p) & (cam == c))[0] for p in range(1, n_ids + 1)
                      for c in np.unique(cam[pid == p])])
    return torch.from_numpy(feats), pid, cam, query


def crossing_ties(dist, k):
    """Rows of the normalised original distance where equal distances take the k-th and (k+1)-th places."""
    srt = np.sort((dist / dist.max(axis=0)).T, axis=1)
    return np.flatnonzero(srt[:, k - 1] == srt[:, k])


def nearest_sets(dist, k, kind):
    rank = np.argsort((dist / dist.max(axis=0)).T, axis=1, kind=kind)[:, :k]
    return np.sort(rank, axis=1)


# ----------------------------------------------------------------------------------------------------------
# a case computed by hand
#
# 2-D features at angles 0 (the probe), 0 (its gallery twin), 90 and 180 degrees: squared distances
# 2 - 2 cos = 0, 2, 4 to the probe. Normalised rows (each divided by its maximum):
#   0: [0, 0, .5, 1]   1: [0, 0, .5, 1]   2: [1, 1, 0, 1]   3: [1, 1, .5, 0]
# k1 = 1: two nearest per row in (distance, index) order: [0 1], [0 1], [2 0], [3 2] (row 2 breaks a
# three-way tie at 1 by index). R(0) = R(1) = {0, 1}, R(2) = {2}, R(3) = {3}; k1 / 2 rounds to 0, so
# R'(0) = {0} (added to R(0): 1 > 2/3), R'(1) = {} (1 is not 0's nearest). V[0] = V[1] = [.5, .5, 0, 0],
# V[2] = e2, V[3] = e3. With k2 = 1 the Jaccard distances of the probe to items 1, 2, 3 are 0, 1, 1 and
# with lambda 0.5 the result is [0, .5 + .25, .5 + .5]. With k2 = 2, V[2] = mean(V[2], V[0]) =
# [.25, .25, .5, 0] and V[3] = mean(V[3], V[2]) = [0, 0, .5, .5]: Jaccard 0, 1 - .5 / 1.5, 1.

HAND_PROBE = torch.tensor([[1., 0.]])
HAND_GALLERY = torch.tensor([[1., 0.], [0., 1.], [-1., 0.]])


def test_hand_computed_case():
    got = k_reciprocal_distance(HAND_PROBE, HAND_GALLERY, k1=1, k2=1, lambda_value=0.5)
    assert got.dtype == torch.float32 and got.shape == (1, 3)
    assert got.tolist() == [[0.0, 0.75, 1.0]]
    got = k_reciprocal_distance(HAND_PROBE, HAND_GALLERY, k1=1, k2=2, lambda_value=0.5)
    np.testing.assert_allclose(got.numpy(), [[0.0, 0.5 * (1 - 0.5 / 1.5) + 0.25, 1.0]], rtol=0, atol=1e-7)
    dist = pairwise_distance(HAND_PROBE, HAND_GALLERY).numpy()
    for k2 in (1, 2):
        np.testing.assert_allclose(rerank_reference(dist, 1, 1, k2, 0.5),
                                   k_reciprocal_distance(HAND_PROBE, HAND_GALLERY, 1, k2, 0.5).numpy(), atol=1e-7)


def test_lambda_one_is_the_normalised_original_distance():
    probe, gallery = random_set(6, 30, 8, seed=3)
    dist = pairwise_distance(probe, gallery)
    expected = (dist / dist.amax(dim=0)[:, None])[:6, 6:]
    assert torch.equal(k_reciprocal_distance(probe, gallery, lambda_value=1.0), expected)


# ----------------------------------------------------------------------------------------------------------
# the original distance


def test_pairwise_distance_is_exact_and_symmetric():
    probe, gallery = random_set(9, 40, 12, seed=1)
    gallery[5], gallery[17] = probe[2], probe[2] * 3  # a twin of probe 2, and a scaled copy
    gallery[30] = gallery[29]
    unit = torch.nn.functional.normalize(torch.cat([probe, gallery]).double(), dim=1)
    expected = (2 - 2 * unit @ unit.T).clamp(min=0)
    for block in (2048, 7):  # one block, and many blocks of the upper triangle
        dist = pairwise_distance(probe, gallery, block=block)
        assert dist.dtype == torch.float32 and dist.shape == (49, 49)
        assert torch.equal(dist, dist.T) and bool((dist >= 0).all())
        assert torch.equal(dist.diagonal(), torch.zeros(49))
        np.testing.assert_allclose(dist.double(), expected, rtol=0, atol=1e-6)
        for a, b in ((2, 9 + 5), (9 + 29, 9 + 30)):  # identical features: identical rows, 0 between them
            assert dist[a, b] == 0 and torch.equal(dist[a], dist[b])


# ----------------------------------------------------------------------------------------------------------
# against the oracle


@pytest.mark.parametrize('k1, k2, lambda_value', PARAMETERS)
def test_random_features_match_the_reference(k1, k2, lambda_value):
    probe, gallery = random_set(15, 60, 8, seed=k1)
    dist = pairwise_distance(probe, gallery).numpy()
    expected = rerank_reference(dist, 15, k1, k2, lambda_value)
    got = k_reciprocal_distance(probe, gallery, k1, k2, lambda_value)
    assert got.dtype == torch.float32 and got.shape == (15, 60)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)
    # no equal distances here: numpy's default argsort, as released, gives the same lists and numbers
    half = int(round(k1 / 2))
    for k in {k1 + 1, half + 1, k2}:
        np.testing.assert_array_equal(nearest_sets(dist, k, None), nearest_sets(dist, k, 'stable'))
    np.testing.assert_allclose(rerank_reference(dist, 15, k1, k2, lambda_value, sort_kind=None), expected,
                               rtol=0, atol=TOL)


@pytest.mark.parametrize('k1, k2, lambda_value', PARAMETERS[:3])
def test_mars_like_split_matches_the_reference_and_its_scores(k1, k2, lambda_value, monkeypatch):
    feats, pid, cam, query = mars_like_set()
    probe = feats[query]  # exact twins of gallery rows
    dist = pairwise_distance(probe, feats).numpy()
    assert len(crossing_ties(dist, k1 + 1)) > 0  # twins cross the k-th place: the tie order matters here
    expected = rerank_reference(dist, len(query), k1, k2, lambda_value)
    got = k_reciprocal_distance(probe, feats, k1, k2, lambda_value)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)
    n = len(pid)
    ours, oracle = (score_distances(d, pid, cam, query, n) for d in (got.numpy(), expected))
    np.testing.assert_array_equal(ours.cmc, oracle.cmc)
    np.testing.assert_array_equal(ours.ap, oracle.ap)
    assert ours.mAP == oracle.mAP
    plain = score_distances(dist[:len(query), len(query):], pid, cam, query, n)
    if lambda_value < 1:
        assert not np.array_equal(ours.ap, plain.ap)  # re-ranking did change the ranking
    # every loop over blocks of rows, pairs and sums taken in many small blocks gives the same numbers
    monkeypatch.setattr(rerank, '_BLOCK_ELEMENTS', 300)
    monkeypatch.setattr(rerank, '_PAIR_ELEMENTS', 300)
    assert torch.equal(k_reciprocal_distance(probe, feats, k1, k2, lambda_value), got)


def test_twins_follow_the_stable_order():
    """A case where the sort's order among equal distances changes the re-ranked distances by far more
    than the tolerance (with numpy's default argsort it changes them by 0.15 on numpy 2.1): ours is the
    stable order's."""
    gen = torch.Generator().manual_seed(0)
    gallery = torch.randn(200, 8, generator=gen)
    gallery[:40] += 3 * torch.randn(8, 8, generator=gen).repeat_interleave(5, 0)
    probe = gallery[:30].clone()
    dist = pairwise_distance(probe, gallery).numpy()
    for k in (9, 5, 4):  # k1 + 1, k1 / 2 + 1, k2
        assert len(crossing_ties(dist, k)) > 0
    expected = rerank_reference(dist, 30, 8, 4, 0.3)
    np.testing.assert_allclose(k_reciprocal_distance(probe, gallery, 8, 4, 0.3).numpy(), expected,
                               rtol=0, atol=TOL)


def test_nearest_lists_break_ties_by_index(monkeypatch):
    """topk, with exact keys where equal distances cross the k-th place: the stable argsort's lists of the
    normalised rows, on blocks of a few rows."""
    gen = torch.Generator().manual_seed(0)
    dist = torch.randint(0, 6, (50, 50), generator=gen).float() / 8  # many equal values
    dist[3] = 0.25  # a row of one value
    monkeypatch.setattr(rerank, '_BLOCK_ELEMENTS', 200)
    for k in (1, 5, 21, 50):
        out = torch.empty_like(dist)
        nearest = rerank._normalise_and_rank(dist, out, k)
        assert torch.equal(out, dist / dist.amax(dim=1, keepdim=True))
        expected = np.argsort(out.numpy(), axis=1, kind='stable')[:, :k]
        np.testing.assert_array_equal(nearest.numpy(), expected)


def test_rerank_distance_takes_the_matrix():
    feats, pid, cam, query = mars_like_set(seed=1)
    dist = pairwise_distance(feats[query], feats)
    before = dist.clone()
    got = rerank_distance(dist, len(query))
    assert torch.equal(dist, before)  # left unchanged
    assert torch.equal(got, k_reciprocal_distance(feats[query], feats))
    assert torch.equal(rerank_distance(dist.double(), len(query)), got)


def test_low_precision_features_are_computed_in_float32():
    probe, gallery = random_set(5, 25, 8, seed=2)
    probe, gallery = probe.bfloat16(), gallery.bfloat16()
    assert torch.equal(k_reciprocal_distance(probe, gallery, k1=6),
                       k_reciprocal_distance(probe.float(), gallery.float(), k1=6))


# ----------------------------------------------------------------------------------------------------------
# programming errors


@pytest.mark.parametrize('kwargs, message', [
    (dict(k1=0), 'k1: expected an integer >= 1, got 0'),
    (dict(k2=0), 'k2: expected an integer >= 1, got 0'),
    (dict(k1=2.5), 'k1: expected an integer >= 1, got 2.5'),
    (dict(k1=True), 'k1: expected an integer >= 1, got True'),
    (dict(k1=12), 'k1: expected less than the 12 probe+gallery items, got 12'),
    (dict(k1=5, k2=13), 'k2: expected at most the 12 probe+gallery items, got 13'),
    (dict(lambda_value=-0.1), 'lambda_value: expected a number in [0, 1], got -0.1'),
    (dict(lambda_value=1.5), 'lambda_value: expected a number in [0, 1], got 1.5'),
])
def test_bad_parameters(kwargs, message):
    probe, gallery = random_set(2, 10, 4, seed=0)
    kwargs = dict(dict(k1=3, k2=2), **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        k_reciprocal_distance(probe, gallery, **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        rerank_distance(pairwise_distance(probe, gallery), 2, **kwargs)


def test_bad_inputs():
    probe, gallery = random_set(2, 10, 4, seed=0)
    with pytest.raises(ValueError, match=r'feature sizes differ \(4 and 3\)'):
        k_reciprocal_distance(probe, gallery[:, :3])
    with pytest.raises(ValueError, match=r'probe: expected a non-empty \(rows, D\) float tensor, got a '
                                         r'torch.float32 tensor of shape \(4,\)'):
        k_reciprocal_distance(probe[0], gallery)
    with pytest.raises(ValueError, match='gallery: expected .* got ndarray'):
        k_reciprocal_distance(probe, gallery.numpy())
    with pytest.raises(ValueError, match='gallery: expected .* torch.int64'):
        k_reciprocal_distance(probe, gallery.long())
    with pytest.raises(ValueError, match='probe: expected a non-empty'):
        k_reciprocal_distance(probe[:0], gallery)
    with pytest.raises(ValueError, match='finite non-negative distances'):
        k_reciprocal_distance(probe, torch.full_like(gallery, float('nan')), k1=3)
    dist = pairwise_distance(probe, gallery)
    with pytest.raises(ValueError, match=r'dist: expected a square \(N, N\) tensor'):
        rerank_distance(dist[:5], 2)
    with pytest.raises(ValueError, match=r'num_query: expected 1..11'):
        rerank_distance(dist, 12)
    asymmetric = dist.clone()
    asymmetric[0, 11] += 1
    with pytest.raises(ValueError, match='dist: expected a symmetric matrix'):
        rerank_distance(asymmetric, 2, k1=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_matches_the_reference():
    feats, pid, cam, query = mars_like_set(seed=2)
    probe = feats[query]
    # the oracle on the GPU's own distance matrix (its float32 products round differently from the CPU's)
    expected = rerank_reference(pairwise_distance(probe.cuda(), feats.cuda()).cpu().numpy(), len(query))
    got = k_reciprocal_distance(probe.cuda(), feats.cuda())
    assert got.device.type == 'cuda' and got.dtype == torch.float32
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=0, atol=TOL)
    n = len(pid)
    ours, oracle = (score_distances(d, pid, cam, query, n) for d in (got.cpu().numpy(), expected))
    np.testing.assert_array_equal(ours.cmc, oracle.cmc)
    assert ours.mAP == oracle.mAP
