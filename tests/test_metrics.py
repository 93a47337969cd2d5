"""util.evaluation.metrics: the MARS metric (CMC and mAP with the good / junk rule of MARS-evaluation's
compute_AP.m; docs/evaluation.md).

Independent oracles live here on purpose: a case ranked by hand, and ``original_style_metric``, the original
release's cmc.py restated (it is not imported from the project or the benchmarks, so that the vectorised
metric is checked against a second statement of the protocol, not against itself)."""
import numpy as np
import pytest
import torch
from reference import evaluate_mars_reference

from util.errors import DataError
from util.evaluation.metrics import (
    MarsResult,
    cosine_distance,
    evaluate_distances,
    evaluate_mars,
    format_result,
    match_masks,
)


def assert_same(a, b):
    """Vectorised and reference results agree exactly."""
    np.testing.assert_array_equal(a.cmc, b.cmc)
    np.testing.assert_array_equal(a.ap, b.ap)  # NaN for skipped queries in both
    assert a.mAP == b.mAP
    assert (a.num_queries, a.num_skipped) == (b.num_queries, b.num_skipped)


# ----------------------------------------------------------------------------------------------------------
# a case small enough to rank by hand
#
# 2-D features (1, y): the distance to the query (1, 0) grows with |y|, and y / -y give bit-identical
# distances, so the pairs (1,2), (3,4), (5,6) are exact ties that a stable sort keeps in gallery order.
#
#   idx  pid cam   y    role for query 0 (pid 1, cam 1)
#    0    1   1    0    the query itself: same pid, same camera -> junk
#    1    1   1    1    junk (same camera)
#    2    2   2   -1
#    3    1   2    2    good
#    4   -1   3   -2    junk (pid -1)
#    5    3   1    3    (pid 3 has no other tracklet: as a query it is skipped)
#    6    1   3   -3    good
#    7    0   2    4    distractor
#    8   -1   1    5    junk (pid -1)
HAND_Y = [0, 1, -1, 2, -2, 3, -3, 4, 5]
HAND_PID = [1, 1, 2, 1, -1, 3, 1, 0, -1]
HAND_CAM = [1, 1, 2, 2, 3, 1, 3, 2, 1]


def torch_metric(features, labels, cams, query_idx, rank_size=10000, gallery_idx=None):
    """The torch path of --device cuda (cosine_distance_torch + score_distances_torch), here on the CPU."""
    from util.evaluation.metrics import _check_rows, cosine_distance_torch, score_distances_torch
    labels, cams, query_idx, gallery_idx, ranks = _check_rows(len(features), labels, cams, query_idx, rank_size,
                                                              gallery_idx)
    dist = cosine_distance_torch(torch.from_numpy(features), query_idx, gallery_idx)
    return score_distances_torch(dist, labels, cams, query_idx, ranks, gallery_idx)


def hand_case():
    feats = np.array([[1.0, y] for y in HAND_Y], dtype=np.float32)
    return feats, np.array(HAND_PID), np.array(HAND_CAM)


@pytest.mark.parametrize('metric', [evaluate_mars, evaluate_mars_reference, torch_metric])
def test_hand_computed_query(metric):
    # Ranked list of query 0: 0J 1J 2 3G 4J 5 6G 7 8J -> non-junk: 2, 3G, 5, 6G, 7.
    # Goods at non-junk ranks 2 and 4 -> CMC is 1 from rank 2.
    # Trapezoid AP (n_good = 2), rank by rank:
    #   rank 1: recall 0,   precision 0/1 -> += 0
    #   rank 2: recall 1/2, precision 1/2 -> += (1/2 - 0) * (0 + 1/2) / 2   = 1/8
    #   rank 3: recall 1/2, precision 1/3 -> += 0
    #   rank 4: recall 1,   precision 2/4 -> += (1 - 1/2) * (1/3 + 1/2) / 2 = 5/24
    #   AP = 1/8 + 5/24 = 1/3   (were the tie 5/6 broken the other way: 1/8 + 7/24 = 5/12)
    # Query 5 has no good item: skipped, not averaged.
    feats, pid, cam = hand_case()
    r = metric(feats, pid, cam, np.array([0, 5]))
    assert r.num_queries == 2 and r.num_skipped == 1 and r.num_scored == 1
    assert r.mAP == pytest.approx(1 / 3, abs=1e-15)
    np.testing.assert_array_equal(r.cmc, [0, 1, 1, 1, 1, 1, 1, 1, 1])  # length = gallery (9 < 10000)
    assert r.rank(1) == 0 and r.rank(2) == 1
    assert np.isnan(r.ap[1])


@pytest.mark.parametrize('metric', [evaluate_mars, evaluate_mars_reference, torch_metric])
@pytest.mark.parametrize('rank_size, ap, cmc', [
    (6, 1 / 8, [0, 1, 1, 1, 1, 1]),  # list cut after item 5: good 6 is never found, recall stays 1/2
    (4, 1 / 8, [0, 1, 1, 1]),        # items 0..3: good 3 is the 4th entry of the list
    (3, 0.0, [0, 0, 0]),             # items 0..2: nothing found, the query still counts (AP 0)
    (0, 1 / 3, [0] + [1] * 8),       # 0: whole gallery
])
def test_hand_computed_rank_size_truncation(metric, rank_size, ap, cmc):
    feats, pid, cam = hand_case()
    r = metric(feats, pid, cam, np.array([0]), rank_size=rank_size)
    assert r.num_skipped == 0
    assert r.mAP == pytest.approx(ap, abs=1e-15)
    np.testing.assert_array_equal(r.cmc, cmc)


@pytest.mark.parametrize('metric', [evaluate_mars, evaluate_mars_reference, torch_metric])
def test_pid_minus_one_query_follows_mars_evaluation(metric):
    # Query 4 (pid -1, cam 3): item 8 (pid -1, cam 1) is "good" (same pid, other camera) and junk (pid -1)
    # at once. compute_AP.m tests good before junk, so it marks the CMC at its place among non-junk items
    # but never adds to the AP. Cosine similarities to (1, -2): 6 .99, 2 .95, 0 .45, 1 -.32, 3 -.60,
    # 5 -.71, 7 -.76, 8 -.79 -> 7 non-junk items ahead of item 8: CMC is 1 from rank 8, AP = 0.
    feats, pid, cam = hand_case()
    r = metric(feats, pid, cam, np.array([4]))
    assert r.num_skipped == 0 and r.mAP == 0.0
    np.testing.assert_array_equal(r.cmc, [0] * 7 + [1, 1])


@pytest.mark.parametrize('metric', [evaluate_mars, evaluate_mars_reference, torch_metric])
def test_hand_computed_gallery_index(metric):
    # Gallery = rows 2 3 4 6 7 (gallery_IDX.npy: the query is not in it). Query 0 (pid 1, cam 1) ranks them
    # 2, 3G, 4J, 6G, 7 (3 and 4 tie, gallery order keeps 3 first); junk 4 is skipped -> non-junk 2, 3G, 6G, 7.
    #   rank 1: recall 0,   precision 0   -> += 0
    #   rank 2: recall 1/2, precision 1/2 -> += (1/2) * (0 + 1/2) / 2   = 1/8
    #   rank 3: recall 1,   precision 2/3 -> += (1/2) * (1/2 + 2/3) / 2 = 7/24
    #   AP = 1/8 + 7/24 = 5/12; CMC 1 from rank 2, over the 5 gallery items.
    feats, pid, cam = hand_case()
    r = metric(feats, pid, cam, np.array([0]), gallery_idx=np.array([2, 3, 4, 6, 7]))
    assert r.num_skipped == 0
    assert r.mAP == pytest.approx(5 / 12, abs=1e-15)
    np.testing.assert_array_equal(r.cmc, [0, 1, 1, 1, 1])
    # Gallery 2 4 6 7 8 drops good 3: ranked 2, 4J, 6G, 7, 8J -> good 6 at non-junk rank 2, n_good 1:
    #   AP = (1 - 0) * (0 + 1/2) / 2 = 1/4. Query 5 (pid 3) has no good item in it: skipped.
    r = metric(feats, pid, cam, np.array([0, 5]), gallery_idx=np.array([2, 4, 6, 7, 8]))
    assert (r.num_queries, r.num_skipped) == (2, 1)
    assert r.mAP == pytest.approx(1 / 4, abs=1e-15)
    np.testing.assert_array_equal(r.cmc, [0, 1, 1, 1, 1])
    # rank_size cuts inside the gallery: the first 2 items (2, 4J) hold no good -> AP 0, CMC all 0
    r = metric(feats, pid, cam, np.array([0]), rank_size=2, gallery_idx=np.array([2, 4, 6, 7, 8]))
    assert r.mAP == 0.0
    np.testing.assert_array_equal(r.cmc, [0, 0])


def test_gallery_of_every_row_is_the_default_bit_for_bit():
    rng = np.random.default_rng(3)
    feats, pid, cam = structured_set(rng)
    q = mars_queries(pid, cam)[:40]
    assert_same(evaluate_mars(feats, pid, cam, q), evaluate_mars(feats, pid, cam, q, gallery_idx=np.arange(len(pid))))


@pytest.mark.parametrize('seed', [0, 1])
def test_gallery_index_vectorised_equals_reference(seed):
    """A LS-VID-like protocol: queries outside the gallery, junk and distractors inside it, ties from pooled
    features; and the metric on a precomputed distance matrix."""
    rng = np.random.default_rng(seed)
    feats, pid, cam = structured_set(rng, pool=60 if seed else None)
    q = mars_queries(pid, cam)[::2]
    gallery = np.setdiff1d(np.arange(len(pid)), q)[rng.permutation(len(pid) - len(q))]  # any order
    for rank_size in (0, 25):
        ref = evaluate_mars_reference(feats, pid, cam, q, rank_size=rank_size, gallery_idx=gallery)
        assert_same(evaluate_mars(feats, pid, cam, q, rank_size=rank_size, gallery_idx=gallery), ref)
    dist = rng.standard_normal((len(q), len(gallery))).astype(np.float32).round(1)  # many ties
    ref = evaluate_mars_reference(feats, pid, cam, q, rank_size=0, gallery_idx=gallery, dist=dist)
    assert_same(evaluate_distances(dist, pid, cam, q, rank_size=0, gallery_idx=gallery), ref)
    with pytest.raises(DataError, match=r'distances: expected shape \(\d+, \d+\)'):
        evaluate_distances(dist[:, 1:], pid, cam, q, gallery_idx=gallery)


def test_match_masks_rule():
    good, junk = match_masks([1, -1], [1, 3], HAND_PID, HAND_CAM)
    #             idx:   0  1  2  3  4  5  6  7  8
    assert good[0].tolist() == [0, 0, 0, 1, 0, 0, 1, 0, 0]
    assert junk[0].tolist() == [1, 1, 0, 0, 1, 0, 0, 0, 1]
    assert good[1].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1]  # pid -1 query, other-camera -1 item: good and junk
    assert junk[1].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 1]


def test_gallery_index_out_of_range():
    feats, pid, cam = hand_case()
    with pytest.raises(DataError, match=r'gallery_idx: indices must lie in 0\.\.8'):
        evaluate_mars(feats, pid, cam, np.array([0]), gallery_idx=np.array([1, 9]))


def test_hand_case_ties_are_exact():
    feats, _, _ = hand_case()
    d = cosine_distance(feats, np.array([0]))[0]
    assert d[1] == d[2] and d[3] == d[4] and d[5] == d[6]


# ----------------------------------------------------------------------------------------------------------
# vectorised == reference on random and structured sets


def structured_set(rng, n_ids=30, dim=16, n_cams=6, n_junk=20, n_distractors=40, spread=0.8, pool=None):
    """A small MARS-like test set: per-id clusters over several cameras, pid -1 junk, pid 0 distractors.

    pool: draw every feature from this many distinct vectors (exact duplicates, hence ties).
    """
    pid = np.concatenate([np.repeat(np.arange(1, n_ids + 1), rng.integers(1, 9, n_ids)),
                          np.full(n_junk, -1), np.zeros(n_distractors, dtype=np.int64)])
    cam = rng.integers(1, n_cams + 1, len(pid))
    centres = rng.standard_normal((n_ids + 2, dim))
    feats = centres[pid + 1] + spread * rng.standard_normal((len(pid), dim))
    if pool is not None:
        feats = rng.standard_normal((pool, dim))[rng.integers(0, pool, len(pid))]
    perm = rng.permutation(len(pid))
    return feats[perm].astype(np.float32), pid[perm], cam[perm]


def mars_queries(pid, cam):
    """Rows with pid >= 1 that have a same-pid tracklet in another camera (MARS queries always do)."""
    return np.array([i for i in range(len(pid))
                     if pid[i] >= 1 and np.any((pid == pid[i]) & (cam != cam[i]))])


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('rank_size', [10000, 0, 50, 7])
def test_structured_sets_match_reference(seed, rank_size):
    rng = np.random.default_rng(seed)
    feats, pid, cam = structured_set(rng, spread=[0.3, 0.8, 2.0, 5.0][seed])
    q = rng.choice(len(pid), 80, replace=False)  # any rows: pid -1 and 0 queries, skipped ones
    assert_same(evaluate_mars(feats, pid, cam, q, rank_size, block=16),
                evaluate_mars_reference(feats, pid, cam, q, rank_size))


@pytest.mark.parametrize('seed', range(3))
def test_random_features_match_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n = 300
    feats = rng.standard_normal((n, 8)).astype([np.float32, np.float64, np.float32][seed])
    pid, cam = rng.integers(-1, 40, n), rng.integers(1, 7, n)
    q = rng.integers(0, n, 120)  # with repeats
    for rank_size in (10000, 100):
        assert_same(evaluate_mars(feats, pid, cam, q, rank_size, block=32),
                    evaluate_mars_reference(feats, pid, cam, q, rank_size))


@pytest.mark.parametrize('pool', [1, 3, 12])
def test_duplicate_features_ties_match_reference(pool):
    rng = np.random.default_rng(pool)
    feats, pid, cam = structured_set(rng, pool=pool)
    q = mars_queries(pid, cam)
    for rank_size in (10000, 25):
        assert_same(evaluate_mars(feats, pid, cam, q, rank_size, block=10),
                    evaluate_mars_reference(feats, pid, cam, q, rank_size))


def test_integer_grid_features_with_many_float32_ties():
    rng = np.random.default_rng(7)
    feats = rng.integers(-2, 3, (250, 3)).astype(np.float32)
    feats[feats.sum(1) == 0] += 1  # avoid the all-zero vector here (tested separately)
    pid, cam = rng.integers(-1, 12, 250), rng.integers(1, 4, 250)
    q = np.arange(0, 250, 3)
    assert_same(evaluate_mars(feats, pid, cam, q, block=8), evaluate_mars_reference(feats, pid, cam, q))


def test_zero_feature_rows_rank_last():
    rng = np.random.default_rng(3)
    feats, pid, cam = structured_set(rng)
    feats[[5, 17, 40]] = 0  # undefined cosine: ranked after everything, in gallery order
    q = np.concatenate([mars_queries(pid, cam)[:30], [5, 17]])
    assert_same(evaluate_mars(feats, pid, cam, q, block=7), evaluate_mars_reference(feats, pid, cam, q))
    d = cosine_distance(feats, q)
    assert np.isinf(d[:, 40]).all() and np.isinf(d[-1]).all()


def test_nan_inf_and_overflowing_rows_match_plain_numpy():
    """Rows that make the cosine undefined (zero, NaN, inf) are +inf; a finite row whose norm overflows
    float32 becomes a zero unit vector, as plain numpy gives it (distance 0 to everything)."""
    rng = np.random.default_rng(5)
    feats = rng.standard_normal((30, 4)).astype(np.float32)
    feats[3] = 0
    feats[7, 1] = np.nan
    feats[11, 2] = np.inf
    feats[19] = 3e38  # norm overflows to inf
    q = np.array([0, 3, 7, 11, 19, 25])
    with np.errstate(invalid='ignore', divide='ignore', over='ignore'):
        unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
        expected = -1 * np.dot(unit[q], unit.T)
    undefined = np.isnan(unit).any(axis=1)
    expected[:, undefined] = np.inf
    expected[undefined[q]] = np.inf
    with np.errstate(over='ignore'):
        d = cosine_distance(feats, q)
    np.testing.assert_array_equal(d, expected)
    assert undefined.tolist() == [i in (3, 7, 11) for i in range(30)]
    assert (d[4, ~undefined] == 0).all()


def test_distances_equal_the_originals_negated_product():
    """The original negates the (Q, N) product; negating the queries first must give the same values on a
    BLAS-sized product. (Duplicated rows need not give equal columns: the BLAS kernels sum in an order that
    depends on the position, in the original as here.)"""
    rng = np.random.default_rng(8)
    feats = rng.standard_normal((700, 300)).astype(np.float32)
    feats[400:450] = feats[:50]
    q = np.sort(rng.choice(700, 130, replace=False))
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    expected = -1 * np.dot(unit[q], unit.T)
    d = cosine_distance(feats, q)
    assert d.dtype == np.float32 and d.shape == (130, 700)
    np.testing.assert_array_equal(d, expected)


def test_block_size_does_not_change_results():
    rng = np.random.default_rng(11)
    feats, pid, cam = structured_set(rng)
    q = rng.choice(len(pid), 60, replace=False)
    results = [evaluate_mars(feats, pid, cam, q, 40, block=b) for b in (1, 7, 1000)]
    for r in results[1:]:
        assert_same(results[0], r)


# ----------------------------------------------------------------------------------------------------------
# against the original release's metric


def original_style_metric(features, ids, cams, query_idx, rank_size):
    """The original cmc.py (Video_Cmc -> Cmc -> Compute_AP) restated, with two changes: a stable sort
    (the original's np.argsort default breaks ties arbitrarily) and only for inputs where every query has
    a good match (the original raises ZeroDivisionError otherwise)."""
    rank_size = min(rank_size, len(ids))
    q = features[query_idx]
    q_unit = q / np.linalg.norm(q, axis=1, keepdims=True)
    g_unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    dist = -1 * np.dot(q_unit, g_unit.T)
    cmc = np.zeros((len(query_idx), rank_size))
    ap = np.zeros(len(query_idx))
    for k, qi in enumerate(query_idx):
        good = np.where((ids == ids[qi]) & (cams != cams[qi]))[0]
        junk = np.where((ids == -1) | ((ids == ids[qi]) & (cams == cams[qi])))[0]
        index = np.argsort(dist[k], kind='stable')[:rank_size]
        old_recall, old_precision, hits, j, seen, n_junk = 0, 1.0, 0, 0, 0, 0
        for n in range(len(index)):
            is_good = np.any(good == index[n])
            if is_good:
                cmc[k, n - n_junk:] = 1
                seen += 1
            if np.any(junk == index[n]):
                n_junk += 1
                continue
            hits += int(is_good)
            recall, precision = hits / len(good), hits / (j + 1)
            ap[k] += (recall - old_recall) * (old_precision + precision) / 2
            old_recall, old_precision = recall, precision
            j += 1
            if seen == len(good):
                break
    return np.mean(cmc, axis=0), np.mean(ap)


@pytest.mark.parametrize('rank_size', [10000, 30])
def test_matches_original_release_metric(rank_size):
    rng = np.random.default_rng(5)
    feats, pid, cam = structured_set(rng, n_ids=25, dim=32, spread=1.5)
    q = mars_queries(pid, cam)
    cmc, mAP = original_style_metric(feats, pid, cam, q, rank_size)
    r = evaluate_mars(feats, pid, cam, q, rank_size)
    np.testing.assert_array_equal(r.cmc, cmc)
    assert r.mAP == mAP


# ----------------------------------------------------------------------------------------------------------
# inputs, errors, printing


def test_accepts_torch_tensors_and_original_query_idx_layout():
    rng = np.random.default_rng(2)
    feats, pid, cam = structured_set(rng)
    q = mars_queries(pid, cam)
    base = evaluate_mars(feats, pid, cam, q)
    # query_IDX.npy of the original database: uint16 of shape (1, Q)
    assert_same(base, evaluate_mars(torch.from_numpy(feats), torch.from_numpy(pid), torch.from_numpy(cam),
                                    q.astype(np.uint16)[None, :]))


@pytest.mark.parametrize('args, message', [
    (dict(features=np.zeros(5)), r'features: expected a \(N, D\) array, got shape \(5,\)'),
    (dict(labels=np.zeros(4, dtype=int)), r'labels: expected shape \(5,\) to match features, got \(4,\)'),
    (dict(cams=np.zeros(5)), 'cams: expected integers, got dtype float64'),
    (dict(query_idx=np.array([0, 5])), r'query_idx: indices must lie in 0\.\.4 .*got 0\.\.5'),
    (dict(query_idx=np.array([], dtype=int)), 'query_idx: expected a non-empty 1-D integer array'),
    (dict(rank_size=-1), 'rank_size: expected 0 .* got -1'),
])
def test_bad_inputs_raise_one_line_errors(args, message):
    call = dict(features=np.eye(5, 3), labels=np.array([1, 1, 2, 2, 3]), cams=np.array([1, 2, 1, 2, 1]),
                query_idx=np.array([0]), rank_size=10)
    call.update(args)
    for metric in (evaluate_mars, evaluate_mars_reference):
        with pytest.raises(DataError, match=message):
            metric(**call)


def test_no_scorable_query_is_an_error():
    feats, pid, cam = hand_case()
    for metric in (evaluate_mars, evaluate_mars_reference):
        with pytest.raises(DataError, match='none of the 2 queries has a correct match in the gallery'):
            metric(feats, pid, cam, np.array([5, 2]))


def test_format_result_matches_original_line_and_table():
    cmc = np.linspace(0.9, 1.0, 30)
    cmc[4], cmc[9], cmc[19] = 0.96211, 0.97531, 0.98333
    r = MarsResult(cmc=cmc, mAP=0.82789, num_queries=1980, num_skipped=0)
    assert format_result(r) == (
        'CMC : 0.9000 , mAP : 0.8279\n'
        '| rank-1 | rank-5 | rank-10 | rank-20 |   mAP |\n'
        '|--------|--------|---------|---------|-------|\n'
        '|  90.00 |  96.21 |   97.53 |   98.33 | 82.79 |\n'
        '1980 queries scored')


def test_format_result_short_list_and_skipped_queries():
    r = MarsResult(cmc=np.array([0.5, 0.75, 1.0]), mAP=0.6, num_queries=5, num_skipped=1)
    out = format_result(r).splitlines()
    assert out[0] == 'CMC : 0.5000 , mAP : 0.6000'
    assert out[3] == '|  50.00 |      - |       - |       - | 60.00 |'
    assert out[4] == '4 queries scored, 1 skipped (no correct match in the gallery)'
    with pytest.raises(ValueError, match='rank-5 is outside the evaluated ranks 1..3'):
        r.rank(5)


# ----------------------------------------------------------------------------------------------------------
# the torch ranking (run on a GPU with --device cuda; checked here on the CPU from the same distances)


@pytest.mark.parametrize('seed, pool, rank_size, gallery', [(0, None, 0, False), (1, 40, 0, False),
                                                            (2, None, 30, True), (3, 25, 0, True)])
def test_torch_ranking_equals_numpy_from_the_same_distances(seed, pool, rank_size, gallery):
    from util.evaluation.metrics import score_distances, score_distances_torch
    rng = np.random.default_rng(seed)
    feats, pid, cam = structured_set(rng, pool=pool)
    q = np.concatenate([mars_queries(pid, cam)[:30], np.flatnonzero(pid == -1)[:3], np.flatnonzero(pid == 0)[:3]])
    g = np.setdiff1d(np.arange(len(pid)), q[::3]) if gallery else None
    dist = cosine_distance(feats, q, g)
    ranks = (len(pid) if g is None else len(g)) if rank_size == 0 else rank_size
    a = score_distances(dist, pid, cam, q, ranks, gallery_idx=g)
    b = score_distances_torch(torch.from_numpy(dist), pid, cam, q, ranks, gallery_idx=g, block=7)
    assert_same(a, b)


def test_torch_distances_match_numpy():
    from util.evaluation.metrics import cosine_distance_torch
    rng = np.random.default_rng(0)
    feats, pid, cam = structured_set(rng)
    feats[5] = 0  # undefined cosine: +inf
    q, g = np.array([0, 5, 9]), np.arange(3, 60)
    d = cosine_distance_torch(torch.from_numpy(feats), q, g).numpy()
    np.testing.assert_allclose(d, cosine_distance(feats, q, g), rtol=0, atol=1e-6)
    assert np.isinf(d[1]).all() and np.isinf(d[:, 2]).all()
