"""Pictures: training curves, ranked results (layout, border colours of a crafted ranking), attention maps,
architecture diagrams."""
import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

from util import visualize as viz
from util.errors import DataError, ReIDError

H, W, S = 32, 16, 4  # drawn frame size and clip length of the ranked-results tests


def _png(path):
    img = np.asarray(Image.open(path).convert('RGB'))
    assert img.std() > 0, f'{path} is blank'
    return img


# ------------------------------------------------------------------------------------------ curves

METRICS_HEADER = 'epoch,trip_loss,frame_id_loss,track_id_loss,total_loss,lr,rank1,rank5,rank10,rank20,mAP,seconds\n'


def _write_metrics(path, rows):
    path.write_text(METRICS_HEADER + ''.join(r + '\n' for r in rows))
    return path


def test_curves_with_empty_columns(tmp_path):
    # frame_id_loss never used; validation only after epochs 2 and 3
    csv = _write_metrics(tmp_path / 'metrics.csv', [
        '1,0.90,,5.1,6.00,0.0001,,,,,,3.5',
        '2,0.70,,4.0,4.70,0.0001,0.5,0.7,0.8,0.9,0.35,3.4',
        '3,0.50,,3.2,3.70,1e-05,0.6,0.8,0.9,0.95,0.45,3.6'])
    out = viz.plot_training_curves(str(csv))
    assert out == str(tmp_path / 'training_curves.png')
    width, height = (round(v * viz.CURVES_DPI) for v in viz.CURVES_FIGSIZE)
    assert _png(out).shape == (height, width, 3) == (420, 1400, 3)


def test_curves_without_validation_and_cli(tmp_path):
    csv = _write_metrics(tmp_path / 'metrics.csv', ['1,0.9,,,0.9,0.0001,,,,,,', '2,0.8,,,0.8,0.0001,,,,,,'])
    out = tmp_path / 'c.png'
    assert viz.main(['curves', '--metrics', str(csv), '--out', str(out)]) == 0
    assert _png(out).shape[:2] == (420, 1400)


def test_curves_errors(tmp_path, capsys):
    bad = tmp_path / 'bad.csv'
    bad.write_text('step,loss\n1,0.5\n')
    with pytest.raises(DataError, match='"epoch" column'):
        viz.plot_training_curves(str(bad))
    _write_metrics(bad, ['1,0.9,,x,0.9,0.0001,,,,,,'])
    with pytest.raises(DataError, match='line 2, column track_id_loss'):
        viz.plot_training_curves(str(bad))
    assert viz.main(['curves', '--metrics', str(tmp_path / 'missing.csv')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'missing.csv: metrics file not found' in err


# ------------------------------------------------------------------------------------------ ranked results

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
    strip_h = viz.HEADER_H + H + 2 * viz.BORDER + viz.LABEL_H
    return (viz.MARGIN + col * (W + 2 * viz.BORDER + viz.GAP),
            viz.MARGIN + strip * (strip_h + viz.STRIP_GAP) + viz.HEADER_H)


def _border_colour(img, strip, col):
    """The colour of a tile's border, read on its four sides; they must agree."""
    x, y = _tile_xy(strip, col)
    b = viz.BORDER
    sides = [img[y + 1, x + W // 2], img[y + H + 2 * b - 2, x + W // 2],
             img[y + H // 2, x + 1], img[y + H // 2, x + W + 2 * b - 2]]
    assert all((s == sides[0]).all() for s in sides), sides
    return tuple(int(v) for v in sides[0])


def test_border_colours_are_distinct_and_meaningful():
    r, g, b = viz.GOOD_COLOUR
    assert g > r and g > b
    r, g, b = viz.WRONG_COLOUR
    assert r > g and r > b
    assert len(set(viz.JUNK_COLOUR)) == 1  # grey


def test_ranked_results_crafted_case(tmp_path):
    paths, info = _write_frames(tmp_path)
    labels, cams = info[:, 2], info[:, 3]
    out = tmp_path / 'ranks'
    drawn = viz.save_ranked_results(str(out), _crafted_features(), labels, cams, QUERY_IDX, paths, info, S,
                                    num_queries=2, topk=3, height=H, width=W)

    expected = {  # query row -> border kinds of the drawn gallery tiles, first correct rank
        0: (['junk', 'wrong', 'junk', 'good', 'junk', 'wrong'], 2),
        6: (['junk', 'good', 'wrong', 'wrong'], 1),
    }
    assert [q.query_row for q in drawn] == [0, 6]
    for q in drawn:
        kinds, first = expected[q.query_row]
        assert (q.first_match_rank, q.rank1_correct) == (first, first == 1)
        img = _png(out / q.image)
        assert img.shape[:2][::-1] == viz.ranked_image_size(S, len(kinds), H, W)
        width = 2 * viz.MARGIN + max(S, len(kinds)) * (W + 2 * viz.BORDER) + (max(S, len(kinds)) - 1) * viz.GAP
        height = 2 * viz.MARGIN + 2 * (viz.HEADER_H + H + 2 * viz.BORDER + viz.LABEL_H) + viz.STRIP_GAP
        assert img.shape[:2] == (height, width)
        for c in range(S):
            assert _border_colour(img, 0, c) == viz.QUERY_COLOUR
        for c, kind in enumerate(kinds):
            assert _border_colour(img, 1, c) == viz.KIND_COLOURS[kind], (q.query_row, c, kind)
        # the query's first test frame is pasted inside its tile unchanged
        x, y = _tile_xy(0, 0)
        first_frame = np.asarray(Image.open(paths[info[q.query_row, 0]]).convert('RGB'))
        inner = img[y + viz.BORDER:y + viz.BORDER + H, x + viz.BORDER:x + viz.BORDER + W]
        assert np.array_equal(inner, first_frame)

    page = (out / 'index.html').read_text()
    assert 'Rank-1 correct for 1 of 2 queries' in page
    assert all(q.image in page for q in drawn)


def test_ranked_results_agree_with_metric(tmp_path):
    from util.metrics import evaluate_mars
    paths, info = _write_frames(tmp_path, frames_per_track=1)
    features = _crafted_features()
    drawn = viz.save_ranked_results(str(tmp_path / 'r'), torch.from_numpy(features), torch.from_numpy(info[:, 2]),
                                    info[:, 3], QUERY_IDX, paths, info, S, num_queries=5, topk=2, height=H, width=W)
    result = evaluate_mars(features, info[:, 2], info[:, 3], QUERY_IDX)
    assert np.mean([q.rank1_correct for q in drawn]) == result.rank(1)
    assert np.mean([q.first_match_rank <= 2 for q in drawn]) == result.rank(2)


def test_ranked_results_with_gallery_index(tmp_path):
    """Only gallery rows are drawn, in the metric's order, and the first correct rank is the metric's."""
    from util.metrics import evaluate_mars
    paths, info = _write_frames(tmp_path, frames_per_track=1)
    features = _crafted_features()
    gallery = np.array([1, 2, 3, 4, 5])  # neither query row (0, 6) is in the gallery
    order = viz.cosine_ranking(features, QUERY_IDX, gallery)
    assert set(order.ravel()) == set(gallery)
    drawn = viz.save_ranked_results(str(tmp_path / 'r'), features, info[:, 2], info[:, 3], QUERY_IDX, paths, info,
                                    S, num_queries=2, topk=5, height=H, width=W, gallery_idx=gallery)
    result = evaluate_mars(features, info[:, 2], info[:, 3], QUERY_IDX, gallery_idx=gallery)
    firsts = [q.first_match_rank for q in drawn]
    assert [np.mean([f is not None and f <= k for f in firsts]) for k in (1, 2, 3)] == result.cmc[:3].tolist()


def test_ranked_results_all_frames(tmp_path):
    paths, info = _write_frames(tmp_path)
    out = tmp_path / 'ranks'
    drawn = viz.save_ranked_results(str(out), _crafted_features(), info[:, 2], info[:, 3], QUERY_IDX, paths,
                                    info, S, queries=[1], topk=2, height=H, width=W, all_frames=True)
    kinds = ['junk', 'good', 'wrong']  # query row 6, two non-junk items
    img = _png(out / drawn[0].image)
    assert img.shape[:2][::-1] == viz.ranked_image_size(S, len(kinds), H, W, all_frames=True)
    strip_h = viz.HEADER_H + H + 2 * viz.BORDER + viz.LABEL_H
    assert img.shape[0] == 2 * viz.MARGIN + 4 * strip_h + 3 * viz.STRIP_GAP
    for s, kind in enumerate(kinds, start=1):
        for c in range(S):
            assert _border_colour(img, s, c) == viz.KIND_COLOURS[kind]


def test_ranked_results_errors(tmp_path):
    paths, info = _write_frames(tmp_path, frames_per_track=1)
    f = _crafted_features()
    with pytest.raises(DataError, match='one row per tracklet; got 6, 7, 7 and 7'):
        viz.save_ranked_results(str(tmp_path), f[:6], info[:, 2], info[:, 3], QUERY_IDX, paths, info, S)
    with pytest.raises(DataError, match=r'query_idx: indices must lie in \[0, 7\)'):
        viz.save_ranked_results(str(tmp_path), f, info[:, 2], info[:, 3], [0, 7], paths, info, S)
    with pytest.raises(ReIDError, match='topk must be >= 1'):
        viz.save_ranked_results(str(tmp_path), f, info[:, 2], info[:, 3], QUERY_IDX, paths, info, S, topk=0)


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
    assert viz.main(['ranks', '--features', str(npz), *db_args, '--out', str(out), '--topk', '3', '--S', '4',
                     '--height', str(H), '--width', str(W)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ['index.html', 'query000_track0.png', 'query001_track6.png']

    # features of another database: refused with one line
    np.savez(npz, features=_crafted_features(), labels=info[::-1, 2], cams=info[:, 3], query_idx=QUERY_IDX)
    assert viz.main(['ranks', '--features', str(npz), *db_args, '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'labels differ' in err and err.count('\n') == 1


# ------------------------------------------------------------------------------------------ attention

@pytest.fixture(scope='module')
def clip():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (S, 3, 64, 32), dtype=torch.uint8, generator=g)


def _check_maps(model, clip, maps):
    """Every block's weights are softmax rows, equal to the models package's own capture, and the query's
    row is what the figure spreads over the frames (nothing outside the query's window)."""
    from models import attention_maps, non_local_blocks
    from util.data import normalize_clip

    assert [m.name for m in maps] == [name for name, _ in non_local_blocks(model)]
    reference = attention_maps(model.eval(), normalize_clip(clip.unsqueeze(0)))
    for m in maps:
        assert torch.allclose(m.weights, reference[m.name])
        assert torch.allclose(m.weights.sum(-1), torch.ones(m.weights.shape[:2]), atol=1e-5)
        window = slice(m.group * m.group_T, (m.group + 1) * m.group_T)
        assert np.allclose(m.frame_maps[window].reshape(-1), m.weights[m.group, m.query].numpy())
        assert m.frame_maps.sum() == pytest.approx(1.0, abs=1e-5)
        assert m.frame_maps[window].sum() == pytest.approx(1.0, abs=1e-5)


def test_attention_figure(tmp_path, clip):
    from models import build_model

    torch.manual_seed(0)
    model = build_model('resnet50_NL', 5, non_layers=(1, 1, 1, 0), pretrained='none', height=64)
    fig, maps = viz.attention_figure(model, clip, query_frame=1, query_pos=(40, 10))
    _check_maps(model, clip, maps)
    # layer1 keys are max-pooled 2x2 on the 16x8 map; pixel (40, 10) of a 64x32 frame is query cell (10, 2)
    assert [(m.frame_maps.shape, m.query_grid, m.group_T, m.span) for m in maps] == [
        ((S, 8, 4), (16, 8), S, 1), ((S, 8, 4), (8, 4), S, 1), ((S, 4, 2), (4, 2), S, 1)]
    assert [m.query_cell for m in maps] == [(1, 10, 2), (1, 5, 1), (1, 2, 0)]
    assert maps[0].query == (1 * 16 + 10) * 8 + 2  # frame-major (t, row, col)

    out = tmp_path / 'attention.png'
    fig.savefig(out, dpi=viz.ATT_DPI)
    fig_w, fig_h = viz.attention_figure_size(len(maps), S, 64, 32)
    assert _png(out).shape[:2] == (round(fig_h * viz.ATT_DPI), round(fig_w * viz.ATT_DPI))


def test_attention_of_stripe_blocks_on_frame_pairs(clip):
    from models import build_model

    torch.manual_seed(0)
    model = build_model('resnet50_NL_stripe_hr', 5, non_layers=(0, 1, 1, 0), stripes=(16, 8, 4, 4),
                        pretrained='none', height=64)
    maps = viz.query_attention(model, clip, query_frame=3, query_pos=(40, 10))
    _check_maps(model, clip, maps)
    # layer2 (T=4): 8 stripes, attention within frame pairs, the query in the second pair;
    # layer3 (T=2 after pooling pairs): 4 stripes, one pair of pooled frames each covering 2 input frames
    assert [(m.frame_maps.shape, m.group_T, m.span, m.stripes, m.group, m.query_cell) for m in maps] == [
        ((4, 8, 1), 2, 1, True, 1, (3, 5, 0)), ((2, 4, 1), 2, 2, True, 0, (1, 2, 0))]
    assert maps[0].frame_maps[:2].sum() == 0  # the first pair is outside the query's window


def test_attention_cli(tmp_path, capsys):
    from models import build_model, original_state_dict

    torch.manual_seed(0)
    model = build_model('resnet50_NL_stripe_hr', 7, non_layers=(0, 1, 1, 0), stripes=(16, 8, 4, 4),
                        pretrained='none', height=64)
    torch.save(original_state_dict(model), tmp_path / 'ckpt.pth')
    paths, info = _write_frames(tmp_path)
    db_args = _write_database(tmp_path, paths, info)[:4]
    out = tmp_path / 'att.png'
    argv = ['attention', '--load_ckpt', str(tmp_path / 'ckpt.pth'), '--model_type', 'resnet50_NL_stripe_hr',
            '--non_layers', '0', '1', '1', '0', '--stripe', '16', '8', '4', '4', *db_args, '--track', '2',
            '--S', str(S), '--height', '64', '--width', '32', '--query_frame', '2', '--out', str(out)]
    assert viz.main(argv) == 0
    fig_w, fig_h = viz.attention_figure_size(2, S, 64, 32)
    assert _png(out).shape[:2] == (round(fig_h * viz.ATT_DPI), round(fig_w * viz.ATT_DPI))
    assert 'attention maps of 2 non-local blocks' in capsys.readouterr().out

    argv[argv.index('--track') + 1] = '99'
    assert viz.main(argv) == 2
    assert '--track must lie in [0, 7)' in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ architecture diagrams

def test_make_figures(tmp_path):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fig', 'make_figures.py')
    spec = importlib.util.spec_from_file_location('make_figures', script)
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    written = make_figures.main(['--out_dir', str(tmp_path)])
    assert sorted(os.path.basename(p) for p in written) == ['NVAN.png', 'STE-NVAN.png', 'baseline.png']
    for path, (w, h) in zip(written, [(150, 48), (150, 64), (150, 64)]):  # canvas units of 1/10 inch
        assert _png(path).shape[:2] == (round(h / 10 * make_figures.DPI), round(w / 10 * make_figures.DPI))
        assert os.path.getsize(path) < 300 * 1024
