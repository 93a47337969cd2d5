"""Plain restatements of the protocols, step by step as the official code computes them: the oracles that
tests and benchmarks compare the library's fast paths with. Not part of the library.

* ``evaluate_mars_reference``: the MARS-evaluation metric (compute_AP.m of the official MATLAB code), one query
  at a time.
* ``cal_evaluate_reference``: CAL's ``tools/eval_metrics.py`` (Gu et al., CVPR 2022: ``evaluate``,
  ``evaluate_with_clothes`` and ``compute_ap_cmc``), whose loops MEVID's ``evaluate_with_locations`` /
  ``_scales`` repeat with another attribute; plus the INP of Ye et al. (TPAMI 2021) as their code computes it.
* ``rerank_reference``: k-reciprocal re-ranking (Zhong et al., CVPR 2017) as the authors' released float32
  numpy loops.
"""
import numpy as np

from util.errors import DataError
from util.evaluation.metrics import MarsResult, check_inputs, cosine_distance, match_masks


def evaluate_mars_reference(features, labels, cams, query_idx, rank_size=10000, gallery_idx=None, dist=None):
    """The same metric as a plain loop, step by step as compute_AP.m: for each query, sort the gallery
    (stable) and walk down the first ``rank_size`` items. ``dist``: a precomputed (Q, G) distance matrix
    instead of the cosine one. For tests and benchmarks."""
    features, labels, cams, query_idx, gallery_idx, ranks = check_inputs(features, labels, cams, query_idx,
                                                                          rank_size, gallery_idx)
    if dist is None:
        dist = cosine_distance(features, query_idx, gallery_idx)
    if gallery_idx is not None:
        labels_g, cams_g = labels[gallery_idx], cams[gallery_idx]
    else:
        labels_g, cams_g = labels, cams
    ap = np.full(len(query_idx), np.nan)
    cmc_sum = np.zeros(ranks)
    for k, q in enumerate(query_idx):
        good, junk = (m[0].tolist() for m in match_masks(labels[q:q + 1], cams[q:q + 1], labels_g, cams_g))
        n_good = sum(good)
        if n_good == 0:
            continue  # skipped: nothing to find
        cmc = np.zeros(ranks)
        ranked = np.argsort(dist[k], kind='stable')[:ranks].tolist()
        ap[k] = 0.0
        goods_seen = hits = kept = 0  # kept: non-junk items passed so far
        old_recall, old_precision = 0.0, 1.0
        for g in ranked:
            if goods_seen == n_good:
                break  # the rest adds nothing
            if good[g]:  # tested before junk, as compute_AP.m does
                cmc[kept:] = 1
                goods_seen += 1
            if junk[g]:
                continue
            kept += 1
            hits += good[g]
            recall, precision = hits / n_good, hits / kept
            ap[k] += (recall - old_recall) * (old_precision + precision) / 2
            old_recall, old_precision = recall, precision
        cmc_sum += cmc
    scored = ~np.isnan(ap)
    if not scored.any():
        raise DataError(f'none of the {len(ap)} queries has a correct match in the gallery '
                        '(same pid, other camera): nothing to score')
    return MarsResult(cmc=cmc_sum / scored.sum(), mAP=float(np.mean(ap[scored])), num_queries=len(ap),
                      num_skipped=int((~scored).sum()), ap=ap)


def _cal_compute_ap_cmc(index, good_index, junk_index):
    """CAL's compute_ap_cmc, plus the query's INP (n / (r_n + 1) on the junk-free list)."""
    ap = 0
    cmc = np.zeros(len(index))
    mask = np.isin(index, junk_index, invert=True)  # remove junk_index
    index = index[mask]
    ngood = len(good_index)
    mask = np.isin(index, good_index)
    rows_good = np.argwhere(mask == True).flatten()  # noqa: E712 (as written there)
    cmc[rows_good[0]:] = 1.0
    for i in range(ngood):
        d_recall = 1.0 / ngood
        precision = (i + 1) * 1.0 / (rows_good[i] + 1)
        ap = ap + d_recall * precision
    return ap, cmc, ngood / (rows_good[-1] + 1.0)


def cal_evaluate_reference(distmat, q_pids, g_pids, q_camids, g_camids, q_attr=None, g_attr=None, mode=None,
                           sort_kind=None):
    """CAL's evaluate (mode None) and evaluate_with_clothes (mode 'same' = its 'SC', 'different' = 'CC'; MEVID's
    location and scale protocols are the same loop over another attribute), one query at a time.

    sort_kind None is np.argsort's default, as released; 'stable' puts ties in gallery order. Returns a dict:
    cmc (G,), mAP (the sum of APs divided by the number scored, as CAL), mINP (np.mean, as AGW / torchreid),
    ap and inp (Q,) (NaN for skipped queries), num_no_gt. With no scorable query the means are 0."""
    num_q, num_g = distmat.shape
    index = np.argsort(distmat, axis=1, kind=sort_kind)
    num_no_gt = 0
    CMC = np.zeros(len(g_pids))
    AP = 0
    ap_all, inp_all = np.full(num_q, np.nan), np.full(num_q, np.nan)
    for i in range(num_q):
        query_index = np.argwhere(g_pids == q_pids[i])
        camera_index = np.argwhere(g_camids == q_camids[i])
        good_index = np.setdiff1d(query_index, camera_index, assume_unique=True)
        junk_index = np.intersect1d(query_index, camera_index)
        if mode is not None:
            attr_index = np.argwhere(g_attr == q_attr[i])
            if mode == 'different':
                good_index = np.setdiff1d(good_index, attr_index, assume_unique=True)
                junk_index = np.union1d(junk_index, np.intersect1d(query_index, attr_index))
            else:
                good_index = np.intersect1d(good_index, attr_index)
                junk_index = np.union1d(junk_index, np.setdiff1d(query_index, attr_index))
        if good_index.size == 0:
            num_no_gt += 1
            continue
        ap_tmp, CMC_tmp, inp = _cal_compute_ap_cmc(index[i], good_index, junk_index)
        CMC = CMC + CMC_tmp
        AP += ap_tmp
        ap_all[i], inp_all[i] = ap_tmp, inp
    scored = num_q - num_no_gt
    if scored == 0:
        return dict(cmc=CMC, mAP=0.0, mINP=0.0, ap=ap_all, inp=inp_all, num_no_gt=num_no_gt)
    return dict(cmc=CMC / scored, mAP=AP / scored, mINP=float(np.mean(inp_all[~np.isnan(inp_all)])), ap=ap_all,
                inp=inp_all, num_no_gt=num_no_gt)


def rerank_reference(dist, num_query, k1=20, k2=6, lambda_value=0.3, sort_kind='stable'):
    """The released algorithm as plain float32 numpy loops, step by step, for tests and benchmarks.

    dist: (N, N) original distance (before normalisation), probe rows first; returns the (Q, N - Q) re-ranked
    distance. The released float32 version squares the Euclidean distances it is given; this takes the squared
    distance (2 - 2 cos of L2-normalised features) itself. sort_kind: the kind of the one full argsort of the
    distance rows; 'stable' puts equal distances in index order (the fast path's order), None is numpy's
    default, as released."""
    original = np.asarray(dist, dtype=np.float32)
    original = (original / np.max(original, axis=0)).T  # columns divided by their maximum, transposed
    n = len(original)
    rank = np.argsort(original, axis=1, kind=sort_kind).astype(np.int32)
    half = int(np.around(k1 / 2.))

    def reciprocal(i, k):
        forward = rank[i, :k + 1]
        backward = rank[forward, :k + 1]
        return forward[np.where(backward == i)[0]]

    V = np.zeros_like(original)
    for i in range(n):
        r_i = reciprocal(i, k1)
        expanded = r_i
        for c in r_i:
            r_c = reciprocal(c, half)
            if len(np.intersect1d(r_c, r_i)) > 2. / 3 * len(r_c):
                expanded = np.append(expanded, r_c)
        expanded = np.unique(expanded)
        weight = np.exp(-original[i, expanded])
        V[i, expanded] = weight / np.sum(weight)

    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(n):
            V_qe[i] = np.mean(V[rank[i, :k2]], axis=0)
        V = V_qe

    owners = [np.where(V[:, c] != 0)[0] for c in range(n)]  # inverted index: rows with column c
    jaccard = np.zeros((num_query, n), dtype=np.float32)
    for i in range(num_query):
        m = np.zeros(n, dtype=np.float32)
        for c in np.where(V[i] != 0)[0]:
            m[owners[c]] = m[owners[c]] + np.minimum(V[i, c], V[owners[c], c])
        jaccard[i] = 1 - m / (2. - m)
    final = jaccard * (1 - lambda_value) + original[:num_query] * lambda_value
    return final[:, num_query:]
