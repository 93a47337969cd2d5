"""Evaluation on a CUDA device (--device cuda): the distance matrix, the metric's ranking and the re-ranking on
the GPU give the CPU's numbers. Skipped where torch sees no CUDA device;
`bash benchmarks/gpu_check.sh` runs them on a GPU."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import save_features

from util.evaluation.metrics import cosine_distance, evaluate_mars, score_distances, score_distances_torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def structured(seed, n_ids=200, per_id=12, dim=256):
    """Per-id clusters over 6 cameras, with junk and distractors: a few thousand tracklets."""
    rng = np.random.default_rng(seed)
    pid = np.concatenate([np.repeat(np.arange(1, n_ids + 1), per_id), np.full(150, -1), np.zeros(300, np.int64)])
    cam = rng.integers(1, 7, len(pid))
    centres = rng.standard_normal((n_ids + 2, dim))
    feats = (centres[pid + 1] + 0.9 * rng.standard_normal((len(pid), dim))).astype(np.float32)
    query = np.flatnonzero(pid > 0)[::per_id]
    return feats, pid, cam, query


def assert_same(a, b):
    np.testing.assert_array_equal(a.cmc, b.cmc)
    np.testing.assert_array_equal(a.ap, b.ap)
    assert a.mAP == b.mAP and a.num_skipped == b.num_skipped


@pytest.mark.parametrize('gallery', [False, True])
def test_ranking_on_the_gpu_equals_the_cpu_from_the_same_distances(gallery):
    feats, pid, cam, query = structured(0)
    g = np.setdiff1d(np.arange(len(pid)), query) if gallery else None
    dist = cosine_distance(feats, query, g)
    ranks = dist.shape[1]
    assert_same(score_distances_torch(torch.from_numpy(dist).cuda(), pid, cam, query, ranks, g),
                score_distances(dist, pid, cam, query, ranks, gallery_idx=g))


def test_metric_on_the_gpu_equals_the_cpu():
    """GPU distances may differ from numpy's in the last bit; on features without near-ties the scores agree
    exactly."""
    feats, pid, cam, query = structured(1)
    for rank_size in (10000, 50):
        assert_same(evaluate_mars(feats, pid, cam, query, rank_size=rank_size, device='cuda'),
                    evaluate_mars(feats, pid, cam, query, rank_size=rank_size))


def test_rerank_on_the_gpu_equals_the_cpu(tmp_path):
    pytest.importorskip('util.evaluation.rerank')
    feats, pid, cam, query = structured(2, n_ids=60)
    save_features(tmp_path / 'f.npz', feats, pid, cam, query)
    records = {}
    for device in ('cpu', 'cuda'):
        subprocess.run([sys.executable, os.path.join(ROOT, 'evaluate.py'), '--features', str(tmp_path / 'f.npz'),
                        '--rerank', '--device', device, '--results', str(tmp_path / f'{device}.json')],
                       check=True, cwd=ROOT, capture_output=True)
        records[device] = json.loads((tmp_path / f'{device}.json').read_text())
    assert records['cuda']['mAP'] == records['cpu']['mAP']
    assert records['cuda']['reranked']['mAP'] == pytest.approx(records['cpu']['reranked']['mAP'], abs=1e-6)
    assert records['cuda']['reranked']['cmc'] == pytest.approx(records['cpu']['reranked']['cmc'], abs=1e-6)
