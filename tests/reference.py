"""Plain restatements of the protocols, step by step as the official code computes them: the oracles that
tests and benchmarks compare the library's fast paths with. Not part of the library.

* ``evaluate_mars_reference``: the MARS-evaluation metric (compute_AP.m of the official MATLAB code), one query
  at a time.
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



def rerank_reference(dist, num_query, k1=20, k2=6, lambda_value=0.3, sort_kind='stable'):
    """The released algorithm as plain float32 numpy loops, step by step, for tests and benchmarks.

    dist: (N, N) original distance (before normalisation), probe rows first; returns the (Q, N - Q)
    re-ranked distance. The released float32 version squares the Euclidean distances it is given; this
    takes the squared distance (SPEC 10's 2 - 2 cos) itself. sort_kind: the kind of the one full argsort of
    the distance rows; 'stable' puts equal distances in index order (the fast path's order), None is
    numpy's default, as released.
    """
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
