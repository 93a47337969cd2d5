"""util.pictures.ranks: the ranked-results pictures (layout, border colours of a crafted ranking, agreement
with the metric, the gallery index), index.html, and ``python -m util.visualize ranks``."""
import numpy as np
import pytest
import torch
from helpers import read_png
from PIL import Image

from util.cli import visualize
from util.errors import DataError, ReIDError
from util.pictures import ranks

H, W, S = 32, 16, 4  # drawn frame size and clip length


# test rows [pid, cam]; queries are rows 0 and 6
TRACKS = [(1, 1), (1, 2), (2, 2), (1, 1), (-1, 3), (3, 3), (2, 1)]
QUERY_IDX = np.array([0, 6])


def _crafted_features():
    """Rows 0-5 on a circle (angle a), row 6 lifted out of the plane near row 2: hand-checked rankings.

    query row 0: 0 (a=0, itself: junk), 2 (a=.1, wrong), 3 (.2, junk: same id and camera), 1 (.3, good),
                 4 (.4, junk: id -1), 5 (.5, wrong), 6 (far)
    query row 6: 6 (itself: junk), 2 (good), 3 (wrong), 0 (wrong), 1, 4, 5
    """
    angles = [0.0, 0.3, 0.1, 0.2, 0.4, 0.5]
    f = [[np.cos(a), np.sin(a), 0.0] for a in angles] + [[np.cos(0.12), np.sin(0.12), 1.0]]
    return np.array(f, dtype=np.float32)


def _write_frames(tmp_path, frames_per_track=3):
    """A small test set on disk: frame JPEGs, path list and info rows [start, end, pid, cam]."""
    rng = np.random.default_rng(0)
    paths, info = [], []
    for t, (pid, cam) in enumerate(TRACKS):
        start = len(paths)
        for f in range(frames_per_track):
            path = tmp_path / 'frames' / f'{t:02d}_{f}.jpg'
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path, quality=95)
            paths.append(str(path))
        info.append([start, len(paths) - 1, pid, cam])
    return paths, np.array(info, dtype=np.int64)


def _tile_xy(strip, col):
    """Top-left pixel of a tile, from the documented layout."""
    strip_h = ranks.HEADER_H + H + 2 * ranks.BORDER + ranks.LABEL_H
    return (ranks.MARGIN + col * (W + 2 * ranks.BORDER + ranks.GAP),
            ranks.MARGIN + strip * (strip_h + ranks.STRIP_GAP) + ranks.HEADER_H)


def _border_colour(img, strip, col):
    """The colour of a tile's border, read on its four sides; they must agree."""
    x, y = _tile_xy(strip, col)
    b = ranks.BORDER
    sides = [img[y + 1, x + W // 2], img[y + H + 2 * b - 2, x + W // 2],
             img[y + H // 2, x + 1], img[y + H // 2, x + W + 2 * b - 2]]
    assert all((s == sides[0]).all() for s in sides), sides
    return tuple(int(v) for v in sides[0])


def _hue(rgb):
    """'green', 'red', 'blue' where one channel leads the others by 60 grey levels, 'grey' for equal
    channels darker than the white background, else None."""
    r, g, b = rgb
    if r == g == b:
        return 'grey' if r < 230 else None
    for name, (lead, *rest) in {'red': (r, g, b), 'green': (g, r, b), 'blue': (b, r, g)}.items():
        if all(lead - v >= 60 for v in rest):
            return name
    return None


def test_drawn_borders_read_green_for_good_red_for_wrong_grey_for_junk(tmp_path):
    """The pixels a reader sees, not the constants: query row 0's gallery is junk, wrong, junk, good."""
    paths, info = _write_frames(tmp_path)
    drawn = ranks.save_ranked_results(str(tmp_path / 'ranks'), _crafted_features(), info[:, 2], info[:, 3],
                                    QUERY_IDX[:1], paths, info, S, num_queries=1, topk=2, height=H, width=W)
    img = read_png(tmp_path / 'ranks' / drawn[0].image)
    assert [_hue(_border_colour(img, 1, c)) for c in range(4)] == ['grey', 'red', 'grey', 'green']
    assert _hue(_border_colour(img, 0, 0)) == 'blue'  # the query's own frames


def test_ranked_results_crafted_case(tmp_path):
    paths, info = _write_frames(tmp_path)
    labels, cams = info[:, 2], info[:, 3]
    out = tmp_path / 'ranks'
    drawn = ranks.save_ranked_results(str(out), _crafted_features(), labels, cams, QUERY_IDX, paths, info, S,
                                    num_queries=2, topk=3, height=H, width=W)

    expected = {  # query row -> border kinds of the drawn gallery tiles, first correct rank
        0: (['junk', 'wrong', 'junk', 'good', 'junk', 'wrong'], 2),
        6: (['junk', 'good', 'wrong', 'wrong'], 1),
    }
    assert [q.query_row for q in drawn] == [0, 6]
    for q in drawn:
        kinds, first = expected[q.query_row]
        assert (q.first_match_rank, q.rank1_correct) == (first, first == 1)
        img = read_png(out / q.image)
        assert img.shape[:2][::-1] == ranks.ranked_image_size(S, len(kinds), H, W)
        width = 2 * ranks.MARGIN + max(S, len(kinds)) * (W + 2 * ranks.BORDER) + (max(S, len(kinds)) - 1) * ranks.GAP
        height = 2 * ranks.MARGIN + 2 * (ranks.HEADER_H + H + 2 * ranks.BORDER + ranks.LABEL_H) + ranks.STRIP_GAP
        assert img.shape[:2] == (height, width)
        for c in range(S):
            assert _border_colour(img, 0, c) == ranks.QUERY_COLOUR
        for c, kind in enumerate(kinds):
            assert _border_colour(img, 1, c) == ranks.KIND_COLOURS[kind], (q.query_row, c, kind)
        # the query's first test frame is pasted inside its tile unchanged
        x, y = _tile_xy(0, 0)
        first_frame = np.asarray(Image.open(paths[info[q.query_row, 0]]).convert('RGB'))
        inner = img[y + ranks.BORDER:y + ranks.BORDER + H, x + ranks.BORDER:x + ranks.BORDER + W]
        assert np.array_equal(inner, first_frame)

    page = (out / 'index.html').read_text()
    assert 'Rank-1 correct for 1 of 2 queries' in page
    assert all(q.image in page for q in drawn)


def test_ranked_results_agree_with_metric(tmp_path):
    from util.evaluation.metrics import evaluate_mars
    paths, info = _write_frames(tmp_path, frames_per_track=1)
    features = _crafted_features()
    drawn = ranks.save_ranked_results(str(tmp_path / 'r'), torch.from_numpy(features), torch.from_numpy(info[:, 2]),
                                    info[:, 3], QUERY_IDX, paths, info, S, num_queries=5, topk=2, height=H, width=W)
    result = evaluate_mars(features, info[:, 2], info[:, 3], QUERY_IDX)
    assert np.mean([q.rank1_correct for q in drawn]) == result.rank(1)
    assert np.mean([q.first_match_rank <= 2 for q in drawn]) == result.rank(2)


def test_ranked_results_with_gallery_index(tmp_path):
    """Only gallery rows are drawn, in the metric's order, and the first correct rank is the metric's."""
    from util.evaluation.metrics import evaluate_mars
    paths, info = _write_frames(tmp_path, frames_per_track=1)
    features = _crafted_features()
    gallery = np.array([1, 2, 3, 4, 5])  # neither query row (0, 6) is in the gallery
    order = ranks.cosine_ranking(features, QUERY_IDX, gallery)
    assert set(order.ravel()) == set(gallery)
    drawn = ranks.save_ranked_results(str(tmp_path / 'r'), features, info[:, 2], info[:, 3], QUERY_IDX, paths, info,
                                    S, num_queries=2, topk=5, height=H, width=W, gallery_idx=gallery)
    result = evaluate_mars(features, info[:, 2], info[:, 3], QUERY_IDX, gallery_idx=gallery)
    firsts = [q.first_match_rank for q in drawn]
    assert [np.mean([f is not None and f <= k for f in firsts]) for k in (1, 2, 3)] == result.cmc[:3].tolist()


def test_ranked_results_all_frames(tmp_path):
    paths, info = _write_frames(tmp_path)
    out = tmp_path / 'ranks'
    drawn = ranks.save_ranked_results(str(out), _crafted_features(), info[:, 2], info[:, 3], QUERY_IDX, paths,
                                    info, S, queries=[1], topk=2, height=H, width=W, all_frames=True)
    kinds = ['junk', 'good', 'wrong']  # query row 6, two non-junk items
    img = read_png(out / drawn[0].image)
    assert img.shape[:2][::-1] == ranks.ranked_image_size(S, len(kinds), H, W, all_frames=True)
    strip_h = ranks.HEADER_H + H + 2 * ranks.BORDER + ranks.LABEL_H
    assert img.shape[0] == 2 * ranks.MARGIN + 4 * strip_h + 3 * ranks.STRIP_GAP
    for s, kind in enumerate(kinds, start=1):
        for c in range(S):
            assert _border_colour(img, s, c) == ranks.KIND_COLOURS[kind]


def test_ranked_results_errors(tmp_path):
    paths, info = _write_frames(tmp_path, frames_per_track=1)
    f = _crafted_features()
    with pytest.raises(DataError, match='one row per tracklet; got 6, 7, 7 and 7'):
        ranks.save_ranked_results(str(tmp_path), f[:6], info[:, 2], info[:, 3], QUERY_IDX, paths, info, S)
    with pytest.raises(DataError, match=r'query_idx: indices must lie in \[0, 7\)'):
        ranks.save_ranked_results(str(tmp_path), f, info[:, 2], info[:, 3], [0, 7], paths, info, S)
    with pytest.raises(ReIDError, match='topk must be >= 1'):
        ranks.save_ranked_results(str(tmp_path), f, info[:, 2], info[:, 3], QUERY_IDX, paths, info, S, topk=0)


def _write_database(tmp_path, paths, info):
    (tmp_path / 'test_path.txt').write_text(''.join(p + '\n' for p in paths))
    np.save(tmp_path / 'test_info.npy', info)
    np.save(tmp_path / 'query_IDX.npy', QUERY_IDX)
    return ['--test_txt', str(tmp_path / 'test_path.txt'), '--test_info', str(tmp_path / 'test_info.npy'),
            '--query_info', str(tmp_path / 'query_IDX.npy')]


def test_ranks_cli(tmp_path, capsys):
    paths, info = _write_frames(tmp_path)
    db_args = _write_database(tmp_path, paths, info)
    npz = tmp_path / 'f.npz'
    np.savez(npz, features=_crafted_features(), labels=info[:, 2], cams=info[:, 3], query_idx=QUERY_IDX)
    out = tmp_path / 'ranks'
    assert visualize.main(['ranks', '--features', str(npz), *db_args, '--out', str(out), '--topk', '3', '--S', '4',
                     '--height', str(H), '--width', str(W)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ['index.html', 'query000_track0.png', 'query001_track6.png']

    # features of another database: refused with one line
    np.savez(npz, features=_crafted_features(), labels=info[::-1, 2], cams=info[:, 3], query_idx=QUERY_IDX)
    assert visualize.main(['ranks', '--features', str(npz), *db_args, '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'labels differ' in err and err.count('\n') == 1
