"""Scoring features: the metric on checked inputs, re-ranked scores, the chance level, and the results file of
evaluate.py ``--results``."""
import json

import numpy as np
import torch

from util.evaluation.features_file import check_rankable
from util.evaluation.metrics import (
    cosine_distance,
    cosine_distance_torch,
    evaluate_distances,
    evaluate_mars,
    match_masks,
    score_protocols,
)
from util.evaluation.rerank import k_reciprocal_distance
from util.io import atomic_save


def score(features, labels, cams, query_idx, rank_size, gallery_idx=None, source='features', device=None,
          ap_rule='trapezoid'):
    """evaluate_mars on numpy / torch inputs, refusing non-finite features; rank_size 0 ranks the whole
    gallery; gallery_idx None: every row is the gallery; a CUDA device: distances and ranking run there."""
    features = np.asarray(features, dtype=np.float32)
    check_rankable(features, source)
    size = rank_size if rank_size > 0 else (len(features) if gallery_idx is None else len(gallery_idx))
    return evaluate_mars(features, np.asarray(labels, dtype=np.int64), np.asarray(cams, dtype=np.int64),
                         np.asarray(query_idx, dtype=np.int64).reshape(-1), rank_size=size, gallery_idx=gallery_idx,
                         device=device, ap_rule=ap_rule)


def score_all(features, labels, cams, query_idx, rank_size, gallery_idx=None, source='features', device=None,
              ap_rule='trapezoid', attributes=None):
    """{'overall': MarsResult} plus the attribute protocols of ``attributes`` ({'clothes' | 'location' | 'scale':
    (N,) ids}, util.evaluation.metrics.PROTOCOLS), all from one distance matrix; without attributes, ``score``."""
    if not attributes:
        return {'overall': score(features, labels, cams, query_idx, rank_size, gallery_idx, source, device, ap_rule)}
    features = np.asarray(features, dtype=np.float32)
    check_rankable(features, source)
    query_idx = np.asarray(query_idx, dtype=np.int64).reshape(-1)
    size = rank_size if rank_size > 0 else (len(features) if gallery_idx is None else len(gallery_idx))
    if device is not None and torch.device(device).type != 'cpu':
        dist = cosine_distance_torch(torch.from_numpy(features).to(device), query_idx, gallery_idx)
    else:
        dist = cosine_distance(features, query_idx, gallery_idx)
    return score_protocols(dist, np.asarray(labels, dtype=np.int64), np.asarray(cams, dtype=np.int64), query_idx,
                           size, gallery_idx, ap_rule, attributes)


def chance_level(labels, cams, query_idx, rank_size=10000, draws=100, seed=0, gallery_idx=None):
    """What random ranking scores on this test split: (expected rank-1, mean rank-1 and mAP of `draws` sets of
    random Gaussian features through evaluate_mars).

    Expected rank-1: for each query with a valid match, the chance that the first non-junk gallery item is a
    good one, i.e. #good / #non-junk (util.evaluation.metrics.match_masks).
    """
    labels, cams = np.asarray(labels), np.asarray(cams)
    q = np.asarray(query_idx).reshape(-1)
    g = np.arange(len(labels)) if gallery_idx is None else np.asarray(gallery_idx).reshape(-1)
    good, junk = match_masks(labels[q], cams[q], labels[g], cams[g])   # (Q, G)
    n_good, n_valid = good.sum(1), (~junk).sum(1)
    scored = n_good > 0
    expected = float(np.mean(n_good[scored] / n_valid[scored])) if scored.any() else float('nan')
    rng = np.random.default_rng(seed)
    results = [score(rng.standard_normal((len(labels), 64)).astype(np.float32), labels, cams, q, rank_size,
                     gallery_idx) for _ in range(draws)]
    return expected, float(np.mean([r.rank(1) for r in results])), float(np.mean([r.mAP for r in results]))


# -- results -------------------------------------------------------------------------------------------------

CMC_RANKS = 50  # length of the curve kept in --results


def result_numbers(result):
    """The numbers of one MarsResult for --results: fractions, as the `CMC : ... , mAP : ...` line."""
    numbers = {f'rank{k}': (result.rank(k) if k <= len(result.cmc) else None) for k in (1, 5, 10, 20)}
    numbers.update(mAP=float(result.mAP), mINP=None if result.mINP is None else float(result.mINP),
                   cmc=[float(v) for v in result.cmc[:CMC_RANKS]],
                   num_scored=int(result.num_scored), num_skipped=int(result.num_skipped))
    return numbers


def write_results(path, result, settings, reranked=None, protocols=None):
    """--results F.json, atomically: the scores, the run's settings, the re-ranked scores when given, and one
    block per attribute protocol (same_clothes, clothes_changing, ...) of ``protocols``."""
    record = dict(result_numbers(result), **settings)
    for key, value in (protocols or {}).items():
        if key != 'overall':
            record[key] = result_numbers(value)
    if reranked is not None:
        record['reranked'] = result_numbers(reranked)
    text = json.dumps(record, indent=2) + '\n'
    atomic_save(text, path, write=lambda obj, f: f.write(obj.encode()))


def rerank_score(features, labels, cams, query_idx, gallery_idx, k1, k2, lambda_value, rank_size, device=None,
                 ap_rule='trapezoid'):
    """The metric on k-reciprocal re-ranked distances (Zhong et al., CVPR 2017): probe = the query rows, gallery = the
    evaluation gallery; computed on `device` (the CPU when None)."""
    feats = torch.as_tensor(np.asarray(features, dtype=np.float32), device=device or 'cpu')
    rows = torch.arange(len(feats), device=feats.device) if gallery_idx is None else \
        torch.as_tensor(gallery_idx, device=feats.device)
    dist = k_reciprocal_distance(feats[torch.as_tensor(query_idx, device=feats.device)], feats[rows],
                                 k1=k1, k2=k2, lambda_value=lambda_value)  # (Q, G)
    # ranked where it was computed (a GPU tensor stays there)
    return evaluate_distances(dist if dist.device.type != 'cpu' else dist.numpy(), np.asarray(labels, dtype=np.int64),
                              np.asarray(cams, dtype=np.int64), query_idx, rank_size=rank_size,
                              gallery_idx=gallery_idx, ap_rule=ap_rule)
