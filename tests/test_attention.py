"""util.pictures.attention: non-local attention maps (softmax rows equal to the models package's capture,
their layout over the frames of full-map and stripe blocks) and the figure, and
``python -m util.visualize attention``."""
import numpy as np
import pytest
import torch
from helpers import read_png
from PIL import Image

from util.cli import visualize
from util.pictures import attention

S = 4  # clip length


def _write_test_split(tmp_path, n_tracks=7, frames_per_track=3):
    """A test split on disk (random 32x16 JPEG frames, test_path.txt, test_info.npy); returns its CLI arguments."""
    rng = np.random.default_rng(0)
    paths = []
    for f in range(n_tracks * frames_per_track):
        paths.append(str(tmp_path / f'{f:03d}.jpg'))
        Image.fromarray(rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)).save(paths[-1], quality=95)
    starts = np.arange(n_tracks) * frames_per_track
    info = np.stack([starts, starts + frames_per_track - 1, np.arange(n_tracks), np.ones(n_tracks, int)], axis=1)
    (tmp_path / 'test_path.txt').write_text(''.join(p + '\n' for p in paths))
    np.save(tmp_path / 'test_info.npy', info)
    return ['--test_txt', str(tmp_path / 'test_path.txt'), '--test_info', str(tmp_path / 'test_info.npy')]


@pytest.fixture(scope='module')
def clip():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (S, 3, 64, 32), dtype=torch.uint8, generator=g)


def _check_maps(model, clip, maps):
    """Every block's weights are softmax rows, equal to the models package's own capture, and the query's
    row is what the figure spreads over the frames (nothing outside the query's window)."""
    from models import attention_maps, non_local_blocks
    from models.preprocess import normalize_clip

    assert [m.name for m in maps] == [name for name, _ in non_local_blocks(model)]
    reference = {name: w for name, _, _, w in attention_maps(model, normalize_clip(clip.unsqueeze(0)))}
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
    fig, maps = attention.attention_figure(model, clip, query_frame=1, query_pos=(40, 10))
    _check_maps(model, clip, maps)
    # layer1 keys are max-pooled 2x2 on the 16x8 map; pixel (40, 10) of a 64x32 frame is query cell (10, 2)
    assert [(m.frame_maps.shape, m.query_grid, m.group_T, m.span) for m in maps] == [
        ((S, 8, 4), (16, 8), S, 1), ((S, 8, 4), (8, 4), S, 1), ((S, 4, 2), (4, 2), S, 1)]
    assert [m.query_cell for m in maps] == [(1, 10, 2), (1, 5, 1), (1, 2, 0)]
    assert maps[0].query == (1 * 16 + 10) * 8 + 2  # frame-major (t, row, col)

    out = tmp_path / 'attention.png'
    fig.savefig(out, dpi=attention.ATT_DPI)
    fig_w, fig_h = attention.attention_figure_size(len(maps), S, 64, 32)
    assert read_png(out).shape[:2] == (round(fig_h * attention.ATT_DPI), round(fig_w * attention.ATT_DPI))


def test_attention_of_stripe_blocks_on_frame_pairs(clip):
    from models import build_model

    torch.manual_seed(0)
    model = build_model('resnet50_NL_stripe_hr', 5, non_layers=(0, 1, 1, 0), stripes=(16, 8, 4, 4),
                        pretrained='none', height=64)
    maps = attention.query_attention(model, clip, query_frame=3, query_pos=(40, 10))
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
    db_args = _write_test_split(tmp_path)
    out = tmp_path / 'att.png'
    argv = ['attention', '--load_ckpt', str(tmp_path / 'ckpt.pth'), '--model_type', 'resnet50_NL_stripe_hr',
            '--non_layers', '0', '1', '1', '0', '--stripe', '16', '8', '4', '4', *db_args, '--track', '2',
            '--S', str(S), '--height', '64', '--width', '32', '--query_frame', '2', '--out', str(out)]
    assert visualize.main(argv) == 0
    fig_w, fig_h = attention.attention_figure_size(2, S, 64, 32)
    assert read_png(out).shape[:2] == (round(fig_h * attention.ATT_DPI), round(fig_w * attention.ATT_DPI))
    assert 'attention maps of 2 non-local blocks' in capsys.readouterr().out

    argv[argv.index('--track') + 1] = '99'
    assert visualize.main(argv) == 2
    assert '--track must lie in [0, 7)' in capsys.readouterr().err
