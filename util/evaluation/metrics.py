"""The MARS evaluation protocol: CMC and mAP over a query set ranked against the whole test set.

The numbers follow the official MARS-evaluation code (``evaluation_mars.m`` / ``compute_AP.m``) and the
original release's port of it:

* gallery = every test tracklet, the query itself included, unless a gallery index (gallery_IDX.npy,
  docs/datasets.md) names the rows that are ranked; distance = negative cosine similarity of the features,
  computed in their own precision (float32 features: float32 distances, as the original), or any
  precomputed (Q, G) distance (``evaluate_distances``: re-ranking);
* for a query: good = same pid, other camera; junk = pid -1, or same pid and same camera (so the query
  itself is junk), inside whatever the gallery is (``match_masks`` states the rule). Junk items are
  dropped from the ranked list: they neither count as hits nor take a rank;
* the gallery is ranked by a stable ascending sort, as MATLAB's ``sort``: equal distances keep gallery
  order (the original's ``np.argsort`` default leaves their order to the sort algorithm);
* only the first ``rank_size`` items of the ranked list (junk included) are looked at: the original cuts
  at 10000, which drops the tail of MARS's 12,180-item list; rank_size=0 ranks the whole gallery as
  MARS-evaluation does. Good items beyond the cut are never found but still count in n_good;
* CMC(k) = 1 if a good item is among the first k non-junk ranks;
* AP is the trapezoid rule of compute_AP.m: ap += (recall - old_recall) * (old_precision + precision) / 2
  at every non-junk rank, old_precision starting at 1, recall = hits / n_good.

Beyond the original: ``ap_rule='plain'`` gives the non-interpolated AP of CAL's ``tools/eval_metrics.py`` (Gu et
al., CVPR 2022), which MEVID and CCVID report: with the good items at 0-based non-junk ranks r_1 < ... < r_n,
AP = (1/n) sum_i i / (r_i + 1). mINP (Ye et al., TPAMI 2021) is reported for every rule: a query's INP is
n / (r_n + 1), 0 when the last good item lies beyond ``rank_size``. An optional per-row attribute (clothes,
location or scale id) with ``mode='same'`` or ``'different'`` gives the attribute protocols of CAL's
``evaluate_with_clothes`` and MEVID's ``evaluate_with_locations`` / ``_scales``: good items keep only those whose
attribute equals (same) or differs from (different) the query's, and the other same-pid items become junk.

Beyond the original: a query with no good item at all (the original raises ZeroDivisionError, MATLAB
returns NaN) is left out of both means and counted in ``num_skipped``. Two corner cases keep the official
behaviour: pid 0 (distractors) is an ordinary identity, and for a pid -1 query the other-camera -1 items
are good and junk at once, which marks the CMC but never adds to the AP (compute_AP.m tests "good"
before "junk").

``evaluate_mars`` computes all of this without a Python loop over queries or ranks (on a GPU with
``device='cuda'``: ``score_distances_torch``); the AP terms are
summed in float64 in rank order, so it returns bit-for-bit the numbers of ``evaluate_mars_reference``,
the plain per-query walk down the ranked list kept for tests and benchmarks.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from util.errors import DataError


@dataclass
class MarsResult:
    """Scores of one evaluation.

    cmc: (R,) float64, fraction of scored queries with a hit within the first k ranks at index k-1;
    mAP: mean AP over scored queries; num_queries: queries given; num_skipped: queries with no good
    item, left out of both means; ap: (Q,) per-query AP (NaN for skipped queries); mINP, inp: the mean and
    per-query inverse negative penalty (NaN for skipped queries).
    """
    cmc: np.ndarray
    mAP: float
    num_queries: int
    num_skipped: int
    ap: np.ndarray = None
    mINP: float = None
    inp: np.ndarray = None

    def rank(self, k):
        """CMC at rank k (1-based)."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f'rank-{k} is outside the evaluated ranks 1..{len(self.cmc)} (rank_size)')
        return float(self.cmc[k - 1])

    @property
    def num_scored(self):
        return self.num_queries - self.num_skipped


# ----------------------------------------------------------------------------------------------------------
# inputs and distances


def _as_numpy(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # bf16 / fp16 features: numpy has no bf16 and no fast fp16 product
        return x.numpy()
    return np.asarray(x)


def check_inputs(features, labels, cams, query_idx, rank_size, gallery_idx=None):
    """Validate and convert to numpy; returns (features, labels, cams, query_idx, gallery_idx, R).

    gallery_idx stays None when absent (every row is the gallery); R is at most the gallery size."""
    features = _as_numpy(features)
    if features.ndim != 2:
        raise DataError(f'features: expected a (N, D) array, got shape {features.shape}')
    labels, cams, query_idx, gallery_idx, ranks = _check_rows(features.shape[0], labels, cams, query_idx,
                                                              rank_size, gallery_idx)
    return features, labels, cams, query_idx, gallery_idx, ranks


def _check_index(name, idx, n, what):
    idx = _as_numpy(idx)
    # query_IDX.npy of the original database is (1, Q) uint16: accept row or column vectors
    if idx.ndim == 2 and 1 in idx.shape:
        idx = idx.reshape(-1)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise DataError(f'{name}: expected a non-empty 1-D integer array, got shape {idx.shape} dtype {idx.dtype}')
    idx = idx.astype(np.int64)
    if idx.min() < 0 or idx.max() >= n:
        raise DataError(f'{name}: indices must lie in 0..{n - 1} ({what}), got {idx.min()}..{idx.max()}')
    return idx


def _check_rows(n, labels, cams, query_idx, rank_size, gallery_idx=None):
    """The label side of check_inputs for n test rows: (labels, cams, query_idx, gallery_idx, R)."""
    labels, cams = _as_numpy(labels), _as_numpy(cams)
    for name, arr in (('labels', labels), ('cams', cams)):
        if arr.shape != (n,):
            raise DataError(f'{name}: expected shape ({n},) to match features, got {arr.shape}')
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f'{name}: expected integers, got dtype {arr.dtype}')
    query_idx = _check_index('query_idx', query_idx, n, '0-based rows of the test set')
    if gallery_idx is not None:
        gallery_idx = _check_index('gallery_idx', gallery_idx, n, '0-based rows of the test set')
    if rank_size < 0:
        raise DataError(f'rank_size: expected 0 (whole gallery) or a positive number, got {rank_size}')
    g = n if gallery_idx is None else len(gallery_idx)
    ranks = g if rank_size == 0 else min(int(rank_size), g)
    return labels.astype(np.int64), cams.astype(np.int64), query_idx, gallery_idx, ranks


def match_masks(q_labels, q_cams, g_labels, g_cams):
    """The MARS-evaluation rule of good and junk gallery items, (Q,) queries x (G,) gallery -> two (Q, G) bool.

    good = same pid, other camera; junk = pid -1, or same pid and same camera (the query itself, when it is in
    the gallery). A pid -1 query's other-camera -1 items are both (the metric tests "good" first). The one
    statement of the rule: the vectorised metric derives the same sets from pid groups without (Q, G) masks.
    """
    q_labels, q_cams = np.asarray(q_labels).reshape(-1, 1), np.asarray(q_cams).reshape(-1, 1)
    g_labels, g_cams = np.asarray(g_labels).reshape(1, -1), np.asarray(g_cams).reshape(1, -1)
    same_id, same_cam = q_labels == g_labels, q_cams == g_cams
    return same_id & ~same_cam, (g_labels == -1) | (same_id & same_cam)


def unit_rows(features):
    """(rows divided by their L2 norm, the (N, 1) norms), in the features' precision; a zero row gives NaNs.
    The one normalisation of cosine similarity: the metric, the ranked pictures and search use it."""
    norm = np.linalg.norm(features, axis=1, keepdims=True)
    with np.errstate(invalid='ignore', divide='ignore'):
        return features / norm, norm


def cosine_distance(features, query_idx, gallery_idx=None):
    """(N, D) features, (Q,) query rows -> (Q, G) negative cosine similarities against the gallery rows
    ``gallery_idx`` (G,), or (Q, N) against every row when it is None.

    Computed as the original does (rows divided by their norm, one matrix product in the features'
    precision: float32 for float32 features), so ties and near-ties come out the same. A zero feature
    gives NaN distances; they are set to +inf, i.e. ranked last in gallery order, where numpy's and
    MATLAB's sorts put NaN.
    """
    if features.dtype == np.float16:
        features = features.astype(np.float32)
    elif not np.issubdtype(features.dtype, np.floating):
        features = features.astype(np.float64)  # integer features: what numpy's division gives
    unit, norm = unit_rows(features)
    # the original's -1 * (Q, N product); negating the (Q, D) factor instead gives the same values (IEEE
    # rounding is symmetric in sign) without a pass over the large array
    gallery = unit if gallery_idx is None else unit[gallery_idx]
    dist = np.dot(np.negative(unit[query_idx]), gallery.T)
    # a NaN can only come from a zero, infinite or NaN norm: look at those rows alone
    undefined = np.zeros(len(unit), dtype=bool)
    suspect = np.flatnonzero(~(np.isfinite(norm[:, 0]) & (norm[:, 0] > 0)))
    undefined[suspect] = np.isnan(unit[suspect]).any(axis=1)
    if undefined.any():
        dist[:, undefined if gallery_idx is None else undefined[gallery_idx]] = np.inf
        dist[undefined[query_idx]] = np.inf
    return dist


# ----------------------------------------------------------------------------------------------------------
# vectorised metric
#
# Ranking every row would cost a full argsort per query. Only the good items' places in the ranked list
# matter, so each good item's position is computed as a count: items ahead of good g = items with a
# smaller distance + items at the same distance with a smaller gallery index (the stable-sort order).
# Counting "smaller distance" needs only the sorted VALUES of the row (numpy's fast value sort) and a
# binary search; ties, rare outside duplicated features, are counted exactly entry by entry.


def _pad_rows(rows, cols, n_rows, fill):
    """Ragged (rows, cols) pairs, rows non-decreasing -> (n_rows, width) array of cols, padded with fill."""
    count = np.bincount(rows, minlength=n_rows)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    out = np.full((n_rows, max(int(count.max(initial=0)), 1)), fill, dtype=np.int64)
    out[rows, slot] = cols
    return out, count


class _Groups:
    """Gallery items of each pid, for finding a query's same-pid items without (Q, N) masks."""

    def __init__(self, labels):
        self.order = np.argsort(labels, kind='stable')  # gallery order within each pid
        self.sorted_labels = labels[self.order]

    def members(self, q_labels):
        """(Qb,) pids -> rows, cols of every (query, same-pid gallery item) pair, cols ascending per row."""
        start = np.searchsorted(self.sorted_labels, q_labels, 'left')
        count = np.searchsorted(self.sorted_labels, q_labels, 'right') - start
        rows = np.repeat(np.arange(len(q_labels)), count)
        first = np.cumsum(count) - count  # where each row's run begins in the output
        return rows, self.order[np.arange(count.sum()) - np.repeat(first - start, count)]


def _gather(dist, idx):
    """dist (Qb, N), idx (Qb, K) gallery indices padded with N -> (Qb, K) distances, +inf for padding."""
    n = dist.shape[1]
    picked = np.take_along_axis(dist, np.minimum(idx, n - 1), axis=1)
    return np.where(idx < n, picked, np.inf).astype(dist.dtype)


class _SortedRows:
    """The rows of a (R, M) distance block sorted by value, for row-wise searches. Built once per block and shared
    by the protocols scored on the same distances."""

    def __init__(self, values):
        self.srt = np.sort(values, axis=1)

    def place(self, t, valid, t_in_rows):
        """For t (R, K) where valid (R, K): (entries of its row < t, whether another entry equals t), both (R, K)
        (0 / False elsewhere). t_in_rows (R, K) bool: t is itself one of its row's entries (not counted as a tie).

        A vectorised binary search over the valid items only (the padding is never searched)."""
        rows, m = self.srt.shape
        r, k = np.nonzero(valid)
        x, base = t[r, k], r.astype(np.int64) * m - 1
        flat = self.srt.ravel()
        pos = np.zeros(len(r), np.int64)  # entries < x found so far
        step = 1 << (m.bit_length() - 1)
        while step:
            cand = pos + step
            v = flat[base + np.minimum(cand, m)]
            pos = np.where((cand <= m) & (v < x), cand, pos)
            step >>= 1
        # sorted rows: the entries equal to x start at pos; another one besides x itself lies at pos + t_in_rows
        nxt = pos + t_in_rows[r, k]
        tie = (nxt < m) & (flat[base + 1 + np.minimum(nxt, m - 1)] == x)
        lo, tied = np.zeros(t.shape, np.int64), np.zeros(t.shape, bool)
        lo[r, k], tied[r, k] = pos, tie
        return lo, tied


def _count_ahead(values, index, t, t_index, valid, t_in_values, ranked=None):
    """How many entries of each row precede (t, t_index) in (value, index) order.

    values: (Qb, M) distances, index: (Qb, M) their gallery indices or None for column order;
    t, t_index: (Qb, K) the items to place, only those where valid (Qb, K) is True (others: padding);
    t_in_values: (Qb, K) bool, whether that item is itself one of the row's entries; ranked: values' _SortedRows
    when already built. -> (Qb, K) int64.
    """
    ranked = _SortedRows(values) if ranked is None else ranked
    ahead, tied = ranked.place(t, valid, t_in_values)  # entries with a smaller distance; any other equal one
    # entries at exactly the same distance, other than the item itself, go first if their index is smaller
    r, k = np.nonzero(tied)
    step = max(1, (1 << 22) // values.shape[1])  # bound the (pairs, M) temporaries
    for s in range(0, len(r), step):
        rr, kk = r[s:s + step], k[s:s + step]
        idx = np.arange(values.shape[1])[None, :] if index is None else index[rr]
        same = (values[rr] == t[rr, kk][:, None]) & (idx < t_index[rr, kk][:, None])
        ahead[rr, kk] += same.sum(axis=1)
    return ahead


def _split_same_pid(rows_p, cols_p, own_cam, q_attr, g_attr, mode):
    """Same-pid pairs -> (good, extra junk) bool masks over them: the base rule (other camera good, own camera
    junk), narrowed by an attribute protocol: 'same' keeps goods with the query's attribute and makes the other
    same-pid items junk, 'different' the reverse (CAL's evaluate_with_clothes)."""
    if mode is None:
        return ~own_cam, own_cam
    same_attr = g_attr[cols_p] == q_attr[rows_p]
    off = ~same_attr if mode == 'same' else same_attr  # same-pid items the protocol leaves out
    return ~own_cam & ~off, own_cam | off


def _ap_terms(hit, n_hits, rank, n_good, ap_rule):
    """(Qb, K) AP terms of the goods in rank order, 0 where not a hit; n_hits, rank float64 (1-based)."""
    precision = n_hits / rank
    if ap_rule == 'plain':  # CAL's compute_ap_cmc: ap += (1 / ngood) * ((i + 1) / (rows_good[i] + 1))
        return np.where(hit, (1.0 / n_good) * precision, 0.0)
    with np.errstate(invalid='ignore', divide='ignore'):
        old_precision = np.where(rank > 1, (n_hits - 1) / (rank - 1), 1.0)
    d_recall = n_hits / n_good - (n_hits - 1) / n_good
    return np.where(hit, d_recall * (old_precision + precision) / 2, 0.0)


def _inp(hit, rank, count):
    """Per-query INP = n / (r_n + 1) from the hits' 1-based ranks; 0 when not every good item was found."""
    n_hits = hit.sum(axis=1)
    last = np.where(hit, rank, 0.0).max(axis=1, initial=0.0)  # 1-based rank of the hardest good
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where((n_hits == count) & (count > 0), count / last, 0.0)


def _score_block(dist, q_labels, q_cams, labels, cams, groups, unknown, ranks, ap_rule='trapezoid', q_attr=None,
                 g_attr=None, mode=None, ranked=None):
    """Per-query AP (float64, NaN where no good item), first-hit rank (0-based, `ranks` = no hit) and INP.

    dist: (Qb, N) rows of the queries; unknown: gallery indices with pid -1 (junk for every query);
    q_attr (Qb,), g_attr (N,), mode: the attribute protocol (None: the base rule); ranked: dist's _SortedRows.
    """
    qb, n = dist.shape
    rows_p, cols_p = groups.members(q_labels)
    own_cam = cams[cols_p] == q_cams[rows_p]
    is_good, is_junk = _split_same_pid(rows_p, cols_p, own_cam, q_attr, g_attr, mode)
    good_idx, count = _pad_rows(rows_p[is_good], cols_p[is_good], qb, n)  # (Qb, G), padded with n
    # pid -1 rows are covered by `unknown`; others add their own-camera same-pid items (the query too)
    extra = is_junk & (q_labels[rows_p] != -1)
    junk_idx, _ = _pad_rows(rows_p[extra], cols_p[extra], qb, n)
    junk_idx = np.concatenate([np.broadcast_to(unknown, (qb, len(unknown))), junk_idx], axis=1)

    good_d = _gather(dist, good_idx)
    order = np.argsort(good_d, axis=1, kind='stable')  # goods in ranked order (index breaks ties)
    good_idx, good_d = np.take_along_axis(good_idx, order, 1), np.take_along_axis(good_d, order, 1)
    valid = np.arange(good_idx.shape[1])[None, :] < count[:, None]  # real goods, not padding
    good_is_junk = valid & (q_labels == -1)[:, None]  # only pid -1 queries have junk goods

    position = _count_ahead(dist, None, good_d, good_idx, valid, valid, ranked)  # items ahead, junk included
    junk_ahead = _count_ahead(_gather(dist, junk_idx), junk_idx, good_d, good_idx, valid, good_is_junk)
    kept_ahead = position - junk_ahead  # non-junk items ahead

    found = valid & (position < ranks)  # inside the first `ranks` entries of the ranked list
    hit = found & ~good_is_junk
    n_hits = np.cumsum(hit, axis=1).astype(np.float64)  # intersect size at each hit
    rank = kept_ahead + 1.0  # 1-based non-junk rank of each good
    n_good = np.maximum(count, 1).astype(np.float64)[:, None]
    term = _ap_terms(hit, n_hits, rank, n_good, ap_rule)
    ap = np.cumsum(term, axis=1)[:, -1]  # summed in rank order, like the loop
    ap[count == 0] = np.nan
    inp = _inp(hit, rank, count)
    inp[count == 0] = np.nan

    # the first good in ranked order sets the CMC, even a junk one (pid -1 queries), as compute_AP.m does
    first = np.where(found[:, 0], kept_ahead[:, 0], ranks)
    return ap, first, inp


def _summarise(ap, first, ranks, inp=None, allow_empty=False, ap_rule='trapezoid'):
    """MarsResult of per-query AP / first-hit rank / INP. allow_empty (attribute protocols): no scorable query
    gives zero scores instead of an error. Under the plain rule mAP is CAL's running sum over the queries
    divided by their number (the same float64 additions), else np.mean as before."""
    scored = ~np.isnan(ap)
    n = int(scored.sum())
    if n == 0 and not allow_empty:
        raise DataError(f'none of the {len(ap)} queries has a correct match in the gallery '
                        '(same pid, other camera): nothing to score')
    hits = np.bincount(first[scored], minlength=ranks + 1)[:ranks]
    cmc = np.cumsum(hits) / max(n, 1)
    def mean(v):
        return float(np.mean(v[scored])) if n else 0.0

    mAP = float(np.cumsum(ap[scored])[-1] / n) if n and ap_rule == 'plain' else mean(ap)
    return MarsResult(cmc=cmc, mAP=mAP, num_queries=len(ap), num_skipped=len(ap) - n, ap=ap,
                      mINP=None if inp is None else mean(inp), inp=inp)


def evaluate_mars(features, labels, cams, query_idx, rank_size=10000, block=256, workers=None, gallery_idx=None,
                  device=None, ap_rule='trapezoid', attribute=None, mode=None):
    """MARS CMC and mAP (and mINP), vectorised over queries (module docstring for the protocol).

    features (N, D), labels (N,) pids, cams (N,), query_idx (Q,) 0-based rows of the queries;
    gallery_idx (G,): the rows ranked for every query (gallery_IDX.npy), None = all N rows;
    rank_size: length of the ranked list looked at (0 = whole gallery). Queries are scored in blocks
    of ``block`` (bounding memory to a few (block, G) arrays besides the (Q, G) distances), spread over
    ``workers`` threads (default: one per CPU; numpy releases the GIL in its sorts and array loops).
    device: a CUDA device computes the distances and the ranking there (cosine_distance_torch,
    score_distances_torch); None or the CPU: numpy. ap_rule: 'trapezoid' (MARS-evaluation) or 'plain' (CAL);
    attribute (N,) integer ids with mode 'same' / 'different': an attribute protocol (clothes, location, scale).
    """
    if device is not None and torch.device(device).type != 'cpu':
        feats = features if isinstance(features, torch.Tensor) else torch.from_numpy(np.asarray(features))
        labels, cams, query_idx, gallery_idx, ranks = _check_rows(len(feats), labels, cams, query_idx, rank_size,
                                                                  gallery_idx)
        attribute = check_protocol(ap_rule, attribute, mode, len(feats))
        dist = cosine_distance_torch(feats.to(device), query_idx, gallery_idx)  # (Q, G) on the device
        return score_distances_torch(dist, labels, cams, query_idx, ranks, gallery_idx, ap_rule=ap_rule,
                                     attribute=attribute, mode=mode)
    features, labels, cams, query_idx, gallery_idx, ranks = check_inputs(features, labels, cams, query_idx,
                                                                          rank_size, gallery_idx)
    attribute = check_protocol(ap_rule, attribute, mode, len(features))
    dist = cosine_distance(features, query_idx, gallery_idx)  # (Q, G)
    return score_distances(dist, labels, cams, query_idx, ranks, block, workers, gallery_idx, ap_rule=ap_rule,
                           attribute=attribute, mode=mode)


AP_RULES = ('trapezoid', 'plain')
ATTRIBUTE_MODES = ('same', 'different')


def check_protocol(ap_rule, attribute, mode, n):
    """Validate the AP rule and an attribute protocol for n test rows; returns the attribute as int64 (or None)."""
    if ap_rule not in AP_RULES:
        raise DataError(f'ap_rule: expected one of {", ".join(AP_RULES)}, got {ap_rule!r}')
    if (attribute is None) != (mode is None):
        raise DataError('an attribute protocol needs both the per-row attribute and a mode (same / different)')
    if attribute is None:
        return None
    if mode not in ATTRIBUTE_MODES:
        raise DataError(f'attribute mode: expected one of {", ".join(ATTRIBUTE_MODES)}, got {mode!r}')
    attribute = _as_numpy(attribute)
    if attribute.shape != (n,) or not np.issubdtype(attribute.dtype, np.integer):
        raise DataError(f'attribute: expected ({n},) integers, one per test row, got shape {attribute.shape} '
                        f'dtype {attribute.dtype}')
    return attribute.astype(np.int64)


def evaluate_distances(dist, labels, cams, query_idx, rank_size=10000, gallery_idx=None, block=256, workers=None,
                       ap_rule='trapezoid', attribute=None, mode=None):
    """The metric on a precomputed (Q, G) distance matrix (smaller = closer), e.g. re-ranked distances:
    row q for query row query_idx[q], column g for gallery row gallery_idx[g] (every row when None).
    Same good / junk rules, ranking and AP as ``evaluate_mars``; a tensor on a GPU is ranked there."""
    on_device = isinstance(dist, torch.Tensor) and dist.device.type != 'cpu'
    dist = dist if on_device else _as_numpy(dist)
    n = len(_as_numpy(labels))
    labels, cams, query_idx, gallery_idx, ranks = _check_rows(n, labels, cams, query_idx, rank_size, gallery_idx)
    attribute = check_protocol(ap_rule, attribute, mode, n)
    g = n if gallery_idx is None else len(gallery_idx)
    if tuple(dist.shape) != (len(query_idx), g):
        raise DataError(f'distances: expected shape ({len(query_idx)}, {g}) (queries x gallery), '
                        f'got {tuple(dist.shape)}')
    protocol = dict(ap_rule=ap_rule, attribute=attribute, mode=mode)
    if on_device:
        return score_distances_torch(dist, labels, cams, query_idx, ranks, gallery_idx, **protocol)
    return score_distances(dist, labels, cams, query_idx, ranks, block, workers, gallery_idx, **protocol)


def score_distances(dist, labels, cams, query_idx, ranks, block=256, workers=None, gallery_idx=None,
                    ap_rule='trapezoid', attribute=None, mode=None):
    """The ranking and scoring half of ``evaluate_mars``, on checked inputs and a (Q, G) distance matrix
    from ``cosine_distance``; ranks: the number of ranked-list entries looked at (1..G); ap_rule, attribute
    (N,) int64 and mode as ``check_protocol`` returns them."""
    return score_many(dist, labels, cams, query_idx, ranks, [(attribute, mode)], block, workers, gallery_idx,
                      ap_rule)[0]


def score_many(dist, labels, cams, query_idx, ranks, protocols, block=256, workers=None, gallery_idx=None,
               ap_rule='trapezoid'):
    """``score_distances`` for several protocols [(attribute (N,) or None, mode), ...] on the same distances:
    one list of MarsResult. Each query block is sorted once and scored for every protocol by one worker."""
    g_rows = np.arange(len(labels)) if gallery_idx is None else gallery_idx
    g_labels, g_cams = labels[g_rows], cams[g_rows]
    g_attrs = [None if attribute is None else attribute[g_rows] for attribute, _ in protocols]
    groups, unknown = _Groups(g_labels), np.flatnonzero(g_labels == -1)

    def score(s):
        q, d = query_idx[s:s + block], dist[s:s + block]
        ranked = _SortedRows(d)
        return [_score_block(d, labels[q], cams[q], g_labels, g_cams, groups, unknown, ranks, ap_rule,
                             None if attribute is None else attribute[q], g_attr, mode, ranked)
                for (attribute, mode), g_attr in zip(protocols, g_attrs)]

    starts = range(0, len(query_idx), block)
    # threads only pay off with at least two blocks each (pool start-up, the GIL between numpy calls)
    workers = min(workers or os.cpu_count() or 1, max(1, len(starts) // 2))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(score, starts))
    else:
        parts = [score(s) for s in starts]
    results = []
    for i, (_, mode) in enumerate(protocols):
        ap, first, inp = (np.concatenate([p[i][j] for p in parts]) for j in range(3))
        results.append(_summarise(ap, first, ranks, inp, allow_empty=mode is not None, ap_rule=ap_rule))
    return results


# ----------------------------------------------------------------------------------------------------------
# the same metric in torch, for a GPU (--device cuda)
#
# On a GPU a full stable sort of each row is cheap, so the ranked good / junk masks are gathered directly and
# the AP terms computed from cumulative counts. The terms are the same float64 expressions as _score_block's
# and are summed on the CPU in rank order with the same np.cumsum, so both paths give the same numbers from
# the same distance matrix.


def cosine_distance_torch(features, query_idx, gallery_idx=None):
    """``cosine_distance`` on the features' device: (N, D) float tensor -> (Q, G) float32 tensor."""
    features = features.float()
    unit = features / torch.linalg.vector_norm(features, dim=1, keepdim=True)
    q = torch.as_tensor(query_idx, device=features.device)
    gallery = unit if gallery_idx is None else unit[torch.as_tensor(gallery_idx, device=features.device)]
    dist = torch.mm(torch.neg(unit[q]), gallery.T)
    undefined = torch.isnan(unit).any(dim=1)
    if bool(undefined.any()):
        g_undefined = undefined if gallery_idx is None else undefined[torch.as_tensor(gallery_idx, device=dist.device)]
        dist[:, g_undefined] = float('inf')
        dist[undefined[q]] = float('inf')
    return dist


def _score_block_torch(dist, q_labels, q_cams, g_labels, g_cams, ranks, ap_rule='trapezoid', q_attr=None,
                       g_attr=None, mode=None):
    """_score_block on a torch device: per-query AP terms of the hits in rank order, hit counts, good counts,
    the first-hit rank and the INP."""
    same_id = q_labels[:, None] == g_labels[None, :]                          # (Qb, G)
    same_cam = q_cams[:, None] == g_cams[None, :]
    good = same_id & ~same_cam
    junk = (g_labels == -1)[None, :] | (same_id & same_cam)
    if mode is not None:  # _split_same_pid's attribute protocol
        same_attr = q_attr[:, None] == g_attr[None, :]
        off = ~same_attr if mode == 'same' else same_attr
        good, junk = good & ~off, junk | (same_id & off)
    n_good = good.sum(dim=1)
    order = torch.sort(dist, dim=1, stable=True).indices[:, :ranks]           # (Qb, R) ranked list
    good_r, kept = good.gather(1, order), ~junk.gather(1, order)
    rank = kept.cumsum(dim=1).double()         # 1-based non-junk rank of a non-junk item
    hit = good_r & kept
    n_hits = hit.cumsum(dim=1).double()
    n_good_d = n_good.clamp(min=1).double()[:, None]
    precision = n_hits / rank
    if ap_rule == 'plain':
        terms = ((1.0 / n_good_d) * precision)[hit]
    else:
        old_precision = torch.where(rank > 1, (n_hits - 1) / (rank - 1), torch.ones_like(rank))
        d_recall = n_hits / n_good_d - (n_hits - 1) / n_good_d
        terms = (d_recall * (old_precision + precision) / 2)[hit]             # row-major: rank order per row
    has_good = good_r.any(dim=1)
    p = good_r.to(torch.uint8).argmax(dim=1, keepdim=True)                   # first good in ranked order
    kept_ahead = (rank.gather(1, p) - kept.gather(1, p).double())[:, 0]
    first = torch.where(has_good, kept_ahead, torch.full_like(kept_ahead, ranks)).long()
    total = hit.sum(dim=1)
    last = torch.where(hit, rank, torch.zeros_like(rank)).max(dim=1).values   # rank of the hardest good
    inp = torch.where((total == n_good) & (n_good > 0), n_good.double() / last.clamp(min=1), torch.zeros_like(last))
    return (terms.cpu().numpy(), total.cpu().numpy(), n_good.cpu().numpy(), first.cpu().numpy(),
            inp.cpu().numpy())


def score_distances_torch(dist, labels, cams, query_idx, ranks, gallery_idx=None, block=512, ap_rule='trapezoid',
                          attribute=None, mode=None):
    """``score_distances`` for a (Q, G) distance tensor on any torch device (checked inputs)."""
    device = dist.device
    labels_t, cams_t = torch.as_tensor(labels, device=device), torch.as_tensor(cams, device=device)
    attr_t = None if attribute is None else torch.as_tensor(attribute, device=device)
    q = torch.as_tensor(query_idx, device=device)
    g = torch.arange(len(labels_t), device=device) if gallery_idx is None else torch.as_tensor(gallery_idx,
                                                                                                device=device)
    g_labels, g_cams = labels_t[g], cams_t[g]
    g_attr = None if attr_t is None else attr_t[g]
    aps, firsts, inps = [], [], []
    for s in range(0, len(q), block):
        qs = q[s:s + block]
        terms, n_hits, n_good, first, inp = _score_block_torch(
            dist[s:s + block], labels_t[qs], cams_t[qs], g_labels, g_cams, ranks, ap_rule,
            None if attr_t is None else attr_t[qs], g_attr, mode)
        padded, _ = _pad_rows(np.repeat(np.arange(len(n_hits)), n_hits), np.arange(len(terms)), len(n_hits),
                              len(terms))
        values = np.append(terms, 0.0)[padded]                                  # (Qb, K) terms, 0-padded
        ap = np.cumsum(values, axis=1)[:, -1]                                    # summed in rank order
        ap[n_good == 0] = np.nan
        inp[n_good == 0] = np.nan
        aps.append(ap)
        firsts.append(first)
        inps.append(inp)
    return _summarise(np.concatenate(aps), np.concatenate(firsts), ranks, np.concatenate(inps),
                      allow_empty=mode is not None, ap_rule=ap_rule)


# ----------------------------------------------------------------------------------------------------------
# printing


def format_result(result):
    """The original's summary line plus a rank-1/5/10/20 and mAP table (percent)."""
    lines = ['CMC : %.4f , mAP : %.4f' % (result.cmc[0], result.mAP)]
    heads, cells = [], []
    for k in (1, 5, 10, 20):
        heads.append(f'rank-{k}')
        cells.append(f'{100 * result.rank(k):.2f}' if k <= len(result.cmc) else '-')
    heads.append('mAP')
    cells.append(f'{100 * result.mAP:.2f}')
    if result.mINP is not None:
        heads.append('mINP')
        cells.append(f'{100 * result.mINP:.2f}')
    widths = [max(len(h), len(c)) for h, c in zip(heads, cells)]
    lines.append('| ' + ' | '.join(h.rjust(w) for h, w in zip(heads, widths)) + ' |')
    lines.append('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    lines.append('| ' + ' | '.join(c.rjust(w) for c, w in zip(cells, widths)) + ' |')
    line = f'{result.num_scored} queries scored'
    if result.num_skipped:
        line += f', {result.num_skipped} skipped (no correct match in the gallery)'
    lines.append(line)
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------------------
# attribute protocols: one distance matrix, every protocol

PROTOCOLS = {'clothes': (('same_clothes', 'same'), ('clothes_changing', 'different')),
             'location': (('same_location', 'same'), ('different_location', 'different')),
             'scale': (('same_scale', 'same'), ('different_scale', 'different'))}
PROTOCOL_TITLES = {'overall': 'general', 'same_clothes': 'SC', 'clothes_changing': 'CC', 'same_location': 'SL',
                   'different_location': 'DL', 'same_scale': 'SS', 'different_scale': 'DS'}


def score_protocols(dist, labels, cams, query_idx, ranks, gallery_idx=None, ap_rule='trapezoid', attributes=None,
                    block=256, workers=None):
    """The base result ('overall') and, for each attribute given ({'clothes' | 'location' | 'scale': (N,) ids}),
    its 'same' and 'different' protocols (PROTOCOLS names them), all from one (Q, G) distance matrix (a numpy
    array, or a tensor on any device: ranked there). Inputs checked as ``evaluate_distances`` does."""
    keys, protocols = ['overall'], [(None, None)]
    for name, values in (attributes or {}).items():
        for key, mode in PROTOCOLS[name]:
            keys.append(key)
            protocols.append((values, mode))
    if isinstance(dist, torch.Tensor) and dist.device.type != 'cpu':
        return {key: evaluate_distances(dist, labels, cams, query_idx, ranks, gallery_idx, ap_rule=ap_rule,
                                        attribute=attribute, mode=mode) for key, (attribute, mode) in
                zip(keys, protocols)}
    dist = _as_numpy(dist)
    n = len(_as_numpy(labels))
    labels, cams, query_idx, gallery_idx, ranks = _check_rows(n, labels, cams, query_idx, ranks, gallery_idx)
    protocols = [(check_protocol(ap_rule, attribute, mode, n), mode) for attribute, mode in protocols]
    g = n if gallery_idx is None else len(gallery_idx)
    if dist.shape != (len(query_idx), g):
        raise DataError(f'distances: expected shape ({len(query_idx)}, {g}) (queries x gallery), got {dist.shape}')
    return dict(zip(keys, score_many(dist, labels, cams, query_idx, ranks, protocols, block, workers, gallery_idx,
                                     ap_rule)))


def format_protocols(results):
    """One row per protocol (percent): general, SC, CC, SL, DL, SS, DS as given."""
    heads = ['protocol', 'rank-1', 'rank-5', 'rank-10', 'rank-20', 'mAP', 'mINP', 'queries']
    rows = []
    for key, r in results.items():
        ranks = [f'{100 * r.cmc[k - 1]:.2f}' if k <= len(r.cmc) else '-' for k in (1, 5, 10, 20)]
        minp = '-' if r.mINP is None else f'{100 * r.mINP:.2f}'
        rows.append([PROTOCOL_TITLES.get(key, key), *ranks, f'{100 * r.mAP:.2f}', minp,
                     f'{r.num_scored}/{r.num_queries}'])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]

    def line(cells):
        return '| ' + ' | '.join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + ' |'

    return '\n'.join([line(heads), '|' + '|'.join('-' * (w + 2) for w in widths) + '|', *map(line, rows)])
