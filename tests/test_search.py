"""util.evaluation.search and search.py: chunked top-k equals a full sort, memory-mapped features files, the printed
ranking, the picture, re-ranking wiring, and one-line errors."""
import os
import re

import numpy as np
import pytest
from helpers import CLIP, MODEL
from PIL import Image

import search
from util.cli.options import run_main
from util.evaluation.embed import tracklet_features
from util.evaluation.features_file import FeaturesFile
from util.evaluation.search import cosine_topk
from util.pictures.ranks import ranked_image_size


def full_ranking(query, gallery, k):
    """The plain reference: every similarity, one stable sort by (similarity descending, row)."""
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    with np.errstate(invalid='ignore'):
        sims = unit(query) @ unit(gallery).T
    sims[np.isnan(sims)] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(len(gallery)), sims.shape), -sims), axis=1)[:, :k]
    return order, np.take_along_axis(sims, order, 1)


def features(n, d=24, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize('chunk', [1, 7, 64, 10000])
def test_chunked_topk_equals_the_full_sort(chunk):
    gallery, query = features(500), features(6, seed=1)
    gallery[[40, 41, 300]] = gallery[3]          # exact ties: kept in gallery order
    gallery[7] = 0                                # a zero feature ranks last
    query[0] = gallery[3]
    for k in (1, 10, 500):
        rows, sims = cosine_topk(query, gallery, k, chunk=chunk)
        ref_rows, ref_sims = full_ranking(query, gallery, k)
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_allclose(sims, ref_sims, rtol=0, atol=1e-6)
    assert list(rows[0, :4]) == [3, 40, 41, 300] and rows[0, -1] == 7


def test_features_file_is_memory_mapped(tmp_path):
    f = features(50)
    tracklet_features(f, [f'cam1/t{i}' for i in range(50)], np.arange(50) % 4 - 1, np.ones(50)).write(
        tmp_path / 'g.npz')
    side = FeaturesFile.read(tmp_path / 'g.npz', mmap=True, scoring=False)
    assert isinstance(side.features, np.memmap)
    np.testing.assert_array_equal(side.features, f)
    assert list(side.paths[:2]) == ['cam1/t0', 'cam1/t1'] and side.labels[0] == -1
    with np.load(tmp_path / 'g.npz') as data:
        np.testing.assert_array_equal(data['query_idx'], np.flatnonzero(np.arange(50) % 4 - 1 > 0))
    # a compressed file still reads (without the map)
    np.savez_compressed(tmp_path / 'c.npz', features=f)
    side = FeaturesFile.read(tmp_path / 'c.npz', mmap=True, scoring=False)
    assert not isinstance(side.features, np.memmap) and side.paths is None
    np.testing.assert_array_equal(side.features, f)
    np.testing.assert_array_equal(side.labels, -np.ones(50))


def write_side(path, f, root=None, labels=None):
    n = len(f)
    tracklet_features(f, [os.path.join(root or 'x', f't{i:03d}') for i in range(n)],
                      -np.ones(n) if labels is None else labels, np.arange(n) % 3 + 1).write(path)
    return path


ROW = re.compile(r'^\s+(\d+)\s+(-?\d\.\d{4})\s+(\S+)', re.M)


def test_search_prints_the_ranking(tmp_path, capsys):
    gallery, query = features(300), features(2, seed=5)
    write_side(tmp_path / 'g.npz', gallery)
    write_side(tmp_path / 'q.npz', query)
    assert search.main(['--query', str(tmp_path / 'q.npz'), '--gallery', str(tmp_path / 'g.npz'), '--topk', '5',
                        '--chunk', '16']) == 0
    out = capsys.readouterr().out
    rows = ROW.findall(out)
    ref_rows, ref_sims = full_ranking(query, gallery, 5)
    assert [int(r) for r, _, _ in rows] == [1, 2, 3, 4, 5] * 2
    assert [p for _, _, p in rows] == [f'x/t{r:03d}' for r in ref_rows.reshape(-1)]
    np.testing.assert_allclose([float(s) for _, s, _ in rows], ref_sims.reshape(-1), atol=6e-5)
    assert out.count('Query ') == 2 and 'cosine similarity' in out


def test_search_folders_and_picture(mars_tracks, tmp_path, capsys):  # noqa: F811
    """A query folder against a gallery root embedded with the model; the picture has the ranked layout."""
    query = mars_tracks / 'tracks' / '003'
    args = ['--load_ckpt', str(mars_tracks / 'ckpt.pth')] + MODEL + CLIP
    assert search.main(args + ['--query', str(query), '--gallery', str(mars_tracks / 'tracks'), '--topk', '4',
                               '--visualize', str(tmp_path / 'ranked.png')]) == 0
    out = capsys.readouterr().out
    rows = ROW.findall(out)
    assert len(rows) == 4 and rows[0][2] == str(query) and float(rows[0][1]) == pytest.approx(1, abs=1e-4)
    assert Image.open(tmp_path / 'ranked.png').size == ranked_image_size(4, 4, 128, 64)


def test_rerank_ranks_by_the_reranked_distance(tmp_path, capsys):
    """--rerank ranks the gallery by util.evaluation.rerank.k_reciprocal_distance(probe, gallery, k1, k2, lambda)."""
    import torch

    from util.evaluation.rerank import k_reciprocal_distance
    gallery, query = features(40), features(2, seed=2)
    gallery[:20] += 2 * query[0]  # a neighbourhood for the k-reciprocal sets
    write_side(tmp_path / 'g.npz', gallery)
    write_side(tmp_path / 'q.npz', query)
    assert search.main(['--query', str(tmp_path / 'q.npz'), '--gallery', str(tmp_path / 'g.npz'), '--topk', '5',
                        '--rerank', '--rerank_k1', '6', '--rerank_k2', '3', '--rerank_lambda', '0.5']) == 0
    out = capsys.readouterr().out
    rows = ROW.findall(out)
    dist = k_reciprocal_distance(torch.from_numpy(query), torch.from_numpy(gallery), 6, 3, 0.5).numpy()
    order = np.argsort(dist, axis=1, kind='stable')[:, :5]
    assert [p for *_, p in rows] == [f'x/t{r:03d}' for r in order.reshape(-1)]
    np.testing.assert_allclose([float(d) for _, d, _ in rows], np.take_along_axis(dist, order, 1).reshape(-1),
                               atol=6e-5)
    assert 're-ranked distance' in out
    assert not np.array_equal(order, full_ranking(query, gallery, 5)[0])  # re-ranking changed the order


def search_error(capsys, argv):
    code = run_main(search.main, argv)
    err = capsys.readouterr().err.replace('\r', '\n').strip().splitlines()[-1]
    assert code == 2 and err.startswith('error: '), (code, err)
    return err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    write_side(tmp_path / 'g.npz', features(30, d=32))
    write_side(tmp_path / 'q.npz', features(1, d=16))
    err = search_error(capsys, ['--query', str(tmp_path / 'q.npz'), '--gallery', str(tmp_path / 'g.npz')])
    assert f'{tmp_path / "g.npz"}: 32-d features, but the query {tmp_path / "q.npz"} has 16-d features' in err
    err = search_error(capsys, ['--query', str(tmp_path / 'nope.npz'), '--gallery', str(tmp_path / 'g.npz')])
    assert f'--query {tmp_path / "nope.npz"}: no such file' in err
    (tmp_path / 'text.npz').write_text('not a zip')
    err = search_error(capsys, ['--query', str(tmp_path / 'text.npz'), '--gallery', str(tmp_path / 'g.npz')])
    assert 'not a readable .npz file' in err
    np.savez(tmp_path / 'eval.npz', features=features(30, d=32))  # no paths: nothing to draw
    err = search_error(capsys, ['--query', str(tmp_path / 'eval.npz'), '--gallery', str(tmp_path / 'g.npz'),
                                '--visualize', str(tmp_path / 'x.png'), '--topk', '2'])
    assert '--visualize needs the tracklet folders' in err
    write_side(tmp_path / 'g2.npz', features(5, d=16))
    err = search_error(capsys, ['--query', str(tmp_path / 'q.npz'), '--gallery', str(tmp_path / 'g2.npz'), '--rerank',
                                '--rerank_k1', '20'])
    assert err.startswith('error: --rerank: ') and 'k1' in err


@pytest.mark.parametrize('bad', ['nan', 'inf', 'zero', 'empty'])
def test_non_finite_zero_or_empty_features_are_refused(tmp_path, capsys, bad):
    # as evaluate.py refuses them: a NaN row would rank as if valid, a zero row has no cosine
    gallery = features(40) if bad != 'empty' else features(0)
    if bad != 'empty':
        gallery[[7, 30]] = {'nan': np.nan, 'inf': np.inf, 'zero': 0.0}[bad]
    write_side(tmp_path / 'g.npz', gallery)
    write_side(tmp_path / 'q.npz', features(2))
    err = search_error(capsys, ['--query', str(tmp_path / 'q.npz'), '--gallery', str(tmp_path / 'g.npz'),
                                '--chunk', '8'])
    side = f'error: --gallery {tmp_path / "g.npz"}: '
    if bad == 'empty':
        assert err == side + 'no tracklets (expected at least one feature row)'
    else:
        what = 'are all zero (no direction, cosine undefined)' if bad == 'zero' else 'are not finite (NaN or Inf)'
        assert err == side + f'2 of 40 feature rows {what}, rows 7, 30; nothing ranked'
