"""The plain AP, mINP and the attribute protocols (clothes, location, scale) of util.evaluation.metrics against
CAL's tools/eval_metrics.py restated in tests/reference.py, and a case ranked by hand."""
import numpy as np
import pytest
import torch
from reference import cal_evaluate_reference, evaluate_mars_reference

from util.errors import DataError
from util.evaluation.metrics import (
    evaluate_distances,
    evaluate_mars,
    format_protocols,
    format_result,
    score_protocols,
)

MODES = [None, 'same', 'different']
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def test_hand_computed_plain_ap_inp_and_clothes_protocols():
    # Query row 0 (pid 1, cam 1, clothes 0) against gallery rows 1..7 ranked in this order by distance:
    #   row  pid cam clothes  base      SC (same clothes)   CC (clothes changing)
    #    1    1   1    0      junk      junk                 junk
    #    2    2   2    5      -         -                    -
    #    3    1   2    1      good      junk                 good
    #    4    3   3    6      -         -                    -
    #    5    1   3    0      good      good                 junk
    #    6    4   2    7      -         -                    -
    #    7    1   2    0      good      good                 junk
    # base: non-junk list 2 3G 4 5G 6 7G -> goods at ranks 2, 4, 6: AP = (1/2 + 2/4 + 3/6) / 3 = 1/2, INP 3/6
    # SC: junk 1, 3 -> list 2 4 5G 6 7G -> goods at 3, 5: AP = (1/3 + 2/5) / 2 = 11/30, INP 2/5
    # CC: junk 1, 5, 7 -> list 2 3G 4 6 -> good at 2: AP = 1/2, INP = 1/2
    pid = np.array([1, 1, 2, 1, 3, 1, 4, 1])
    cam = np.array([1, 1, 2, 2, 3, 3, 2, 2])
    clothes = np.array([0, 0, 5, 1, 6, 0, 7, 0])
    dist = np.arange(1, 8, dtype=np.float64)[None, :]  # (1, 7)
    gallery = np.arange(1, 8)
    out = score_protocols(dist, pid, cam, np.array([0]), 0, gallery, ap_rule='plain', attributes={'clothes': clothes})
    assert list(out) == ['overall', 'same_clothes', 'clothes_changing']
    expect = {'overall': (1 / 2, 1 / 2, 2), 'same_clothes': (11 / 30, 2 / 5, 3), 'clothes_changing': (1 / 2, 1 / 2, 2)}
    for key, (ap, inp, first) in expect.items():
        r = out[key]
        assert r.mAP == pytest.approx(ap, abs=1e-15) and r.mINP == pytest.approx(inp, abs=1e-15)
        assert r.rank(first) == 1 and (first == 1 or r.rank(first - 1) == 0)
    # the trapezoid rule on the base list (precision before each hit: 0, 1/3, 2/5):
    # 1/3 * ((0 + 1/2) + (1/3 + 2/4) + (2/5 + 3/6)) / 2 = 1/12 + 5/36 + 3/20 = 67/180
    trap = evaluate_distances(dist, pid, cam, np.array([0]), 0, gallery)
    assert trap.mAP == pytest.approx(67 / 180, abs=1e-15) and trap.mINP == pytest.approx(1 / 2, abs=1e-15)


def labelled_split(seed, n=120, n_ids=14, n_cams=4, n_outfits=3, n_query=30):
    """Test rows with pid, camera and clothes (pid, outfit) ids; query rows and the other rows as gallery."""
    rng = np.random.default_rng(seed)
    pid = rng.integers(0, n_ids, n)
    cam = rng.integers(0, n_cams, n)
    clothes = pid * n_outfits + rng.integers(0, n_outfits, n)
    location = (cam >= 2).astype(np.int64)
    query = np.sort(rng.choice(n, n_query, replace=False))
    pid[query[0]] = n_ids  # an identity of its own: a query without any good item
    gallery = np.setdiff1d(np.arange(n), query)
    return pid, cam, clothes, location, query, gallery


def assert_equals_cal(result, ref):
    np.testing.assert_array_equal(result.ap, ref['ap'])
    np.testing.assert_array_equal(result.inp, ref['inp'])
    np.testing.assert_array_equal(result.cmc, ref['cmc'])
    assert result.mAP == ref['mAP'] and result.mINP == ref['mINP']
    assert result.num_skipped == ref['num_no_gt']


def _numpy_path(dist, labels, cams, query_idx, rank_size, gallery_idx, ap_rule, attribute, mode):
    return evaluate_distances(dist, labels, cams, query_idx, rank_size, gallery_idx, ap_rule=ap_rule,
                              attribute=attribute, mode=mode)


def _torch_path(dist, labels, cams, query_idx, rank_size, gallery_idx, ap_rule, attribute, mode):
    """The --device cuda ranking path, run here on the CPU from the same distances."""
    from util.evaluation.metrics import _check_rows, check_protocol, score_distances_torch
    labels, cams, query_idx, gallery_idx, ranks = _check_rows(len(labels), labels, cams, query_idx, rank_size,
                                                              gallery_idx)
    attribute = check_protocol(ap_rule, attribute, mode, len(labels))
    return score_distances_torch(torch.from_numpy(dist), labels, cams, query_idx, ranks, gallery_idx, block=7,
                                 ap_rule=ap_rule, attribute=attribute, mode=mode)


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('metric', [_numpy_path, _torch_path])
def test_random_distances_equal_cal(seed, mode, metric):
    pid, cam, clothes, _, query, gallery = labelled_split(seed)
    rng = np.random.default_rng(100 + seed)
    dist = rng.random((len(query), len(gallery)))  # continuous: no ties, so argsort's default order is unique
    attr = None if mode is None else clothes
    ref = cal_evaluate_reference(dist, pid[query], pid[gallery], cam[query], cam[gallery],
                                 None if mode is None else clothes[query], None if mode is None else clothes[gallery],
                                 mode)
    assert 0 < ref['num_no_gt'] < len(query)  # queries without a good item are part of the test
    result = metric(dist, pid, cam, query, 0, gallery, 'plain', attr, mode)
    assert_equals_cal(result, ref)


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('mode', MODES)
def test_structured_distances_with_ties_equal_cal_with_stable_sort(seed, mode):
    # distances on a coarse grid, closer within an identity: many exact ties, broken in gallery order by both
    pid, cam, _, location, query, gallery = labelled_split(seed, n=90, n_ids=8, n_cams=5)
    rng = np.random.default_rng(seed)
    dist = rng.integers(0, 6, (len(query), len(gallery))).astype(np.float32)
    dist -= 3 * (pid[query][:, None] == pid[gallery][None, :])
    attr = None if mode is None else location
    ref = cal_evaluate_reference(dist, pid[query], pid[gallery], cam[query], cam[gallery],
                                 None if mode is None else location[query],
                                 None if mode is None else location[gallery], mode, sort_kind='stable')
    for metric in (_numpy_path, _torch_path):
        assert_equals_cal(metric(dist, pid, cam, query, 0, gallery, 'plain', attr, mode), ref)


@pytest.mark.parametrize('seed', range(3))
def test_trapezoid_rule_unchanged_and_inp_independent_of_the_rule(seed):
    pid, cam, clothes, _, query, gallery = labelled_split(seed)
    feats = np.random.default_rng(seed).standard_normal((len(pid), 16)).astype(np.float32)
    mars = evaluate_mars(feats, pid, cam, query, rank_size=0, gallery_idx=gallery)
    ref = evaluate_mars_reference(feats, pid, cam, query, rank_size=0, gallery_idx=gallery)
    np.testing.assert_array_equal(mars.ap, ref.ap)
    assert mars.mAP == ref.mAP
    plain = evaluate_mars(feats, pid, cam, query, rank_size=0, gallery_idx=gallery, ap_rule='plain')
    np.testing.assert_array_equal(plain.inp, mars.inp)
    np.testing.assert_array_equal(plain.cmc, mars.cmc)


def test_attribute_protocol_without_any_scorable_query_scores_zero():
    # every same-pid gallery item wears the query's clothes: the clothes-changing protocol has nothing to find
    pid, cam = np.array([1, 1, 2, 2]), np.array([1, 2, 1, 2])
    clothes = np.array([0, 0, 1, 1])
    dist = np.array([[0.1, 0.2, 0.3]])
    r = evaluate_distances(dist, pid, cam, np.array([0]), 0, np.array([1, 2, 3]), ap_rule='plain',
                           attribute=clothes, mode='different')
    assert (r.num_scored, r.num_skipped, r.mAP, r.mINP) == (0, 1, 0.0, 0.0)
    np.testing.assert_array_equal(r.cmc, [0, 0, 0])


def test_inp_is_zero_when_the_last_good_lies_beyond_rank_size():
    pid, cam = np.array([1, 1, 2, 1]), np.array([1, 2, 1, 3])
    dist = np.array([[0.1, 0.2, 0.3]])  # goods at ranks 1 and 3
    gallery = np.array([1, 2, 3])
    assert evaluate_distances(dist, pid, cam, [0], 0, gallery, ap_rule='plain').mINP == pytest.approx(2 / 3)
    short = evaluate_distances(dist, pid, cam, [0], 2, gallery, ap_rule='plain')
    assert short.mINP == 0.0 and short.mAP == 0.5  # the second good is never found but counts in n


@pytest.mark.parametrize('kwargs, message', [
    (dict(ap_rule='interpolated'), "ap_rule: expected one of trapezoid, plain, got 'interpolated'"),
    (dict(attribute=np.zeros(3, np.int64), mode='same'), r'attribute: expected \(4,\) integers'),
    (dict(attribute=np.zeros(4, np.int64), mode='both'), 'attribute mode: expected one of same, different'),
    (dict(attribute=np.zeros(4, np.int64)), 'needs both the per-row attribute and a mode'),
])
def test_bad_protocol_inputs(kwargs, message):
    with pytest.raises(DataError, match=message):
        evaluate_distances(np.zeros((1, 4)), [1, 1, 2, 2], [1, 2, 1, 2], [0], 0, **kwargs)


def test_formats_print_minp_and_one_row_per_protocol():
    pid, cam, clothes, _, query, gallery = labelled_split(0)
    dist = np.random.default_rng(0).random((len(query), len(gallery)))
    out = score_protocols(dist, pid, cam, query, 0, gallery, 'plain', {'clothes': clothes})
    assert format_result(out['overall']).splitlines()[1].endswith('|   mAP | mINP |')
    table = format_protocols(out).splitlines()
    assert table[0] == '| protocol | rank-1 | rank-5 | rank-10 | rank-20 |   mAP | mINP | queries |'
    assert [row.split('|')[1].strip() for row in table[2:]] == ['general', 'SC', 'CC']
    r = out['clothes_changing']
    cells = [c.strip() for c in table[4].split('|')[2:-1]]
    assert cells == [f'{100 * r.rank(1):.2f}', f'{100 * r.rank(5):.2f}', f'{100 * r.rank(10):.2f}',
                     f'{100 * r.rank(20):.2f}', f'{100 * r.mAP:.2f}', f'{100 * r.mINP:.2f}',
                     f'{r.num_scored}/{r.num_queries}']


@CUDA
@pytest.mark.parametrize('mode', MODES)
def test_cuda_ranking_equals_cal(mode):
    pid, cam, clothes, _, query, gallery = labelled_split(7, n=400, n_query=80)
    dist = np.random.default_rng(7).random((len(query), len(gallery)))
    attr = None if mode is None else clothes
    ref = cal_evaluate_reference(dist, pid[query], pid[gallery], cam[query], cam[gallery],
                                 None if mode is None else clothes[query], None if mode is None else clothes[gallery],
                                 mode)
    assert_equals_cal(evaluate_distances(torch.from_numpy(dist).cuda(), pid, cam, query, 0, gallery, ap_rule='plain',
                                         attribute=attr, mode=mode), ref)


@pytest.mark.parametrize('m', [1, 2, 7, 40, 64])
def test_row_search_equals_numpy_searchsorted(m):
    # the rows' binary search: ties, -0.0 against +0.0, infinities, negative values, rows of any length
    from util.evaluation.metrics import _SortedRows
    rng = np.random.default_rng(m)
    grid = np.array([-np.inf, -2.5, -1.0, -0.0, 0.0, 1e-30, 0.5, 3.0, np.inf], dtype=np.float32)
    values, t = grid[rng.integers(0, len(grid), (6, m))], grid[rng.integers(0, len(grid), (6, 9))]
    valid = rng.random((6, 9)) < 0.8
    t_in = valid & (rng.random((6, 9)) < 0.5)
    t[t_in] = values[np.nonzero(t_in)[0], rng.integers(0, m, t_in.sum())]  # items that are entries of the row
    lo, tied = _SortedRows(values).place(t, valid, t_in)
    srt = np.sort(values, axis=1)
    for r in range(len(values)):
        left, right = np.searchsorted(srt[r], t[r], 'left'), np.searchsorted(srt[r], t[r], 'right')
        np.testing.assert_array_equal(lo[r], np.where(valid[r], left, 0))
        np.testing.assert_array_equal(tied[r], valid[r] & (right - left > t_in[r]))


def test_protocols_sharing_one_sort_equal_separate_calls():
    pid, cam, clothes, location, query, gallery = labelled_split(3)
    dist = np.random.default_rng(3).integers(0, 9, (len(query), len(gallery))).astype(np.float32)  # ties
    out = score_protocols(dist, pid, cam, query, 0, gallery, 'plain', {'clothes': clothes, 'location': location})
    for key, attr, mode in [('overall', None, None), ('same_clothes', clothes, 'same'),
                            ('clothes_changing', clothes, 'different'), ('same_location', location, 'same'),
                            ('different_location', location, 'different')]:
        alone = evaluate_distances(dist, pid, cam, query, 0, gallery, block=7, ap_rule='plain', attribute=attr,
                                   mode=mode)
        np.testing.assert_array_equal(out[key].ap, alone.ap)
        np.testing.assert_array_equal(out[key].cmc, alone.cmc)
