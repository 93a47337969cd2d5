"""util.evaluation.embed and extract_features.py: tracklet folders -> the features evaluate.py computes for the same
frames and flags; frame order, labels from frame names, and one-line errors for bad input."""
import os
import shutil

import numpy as np
import pytest
import torch
from helpers import CLIP, MARS_HEIGHT, MARS_S, MARS_WIDTH, MODEL
from PIL import Image

import evaluate
import extract_features
from util.cli.options import run_main
from util.data.sampling import TEST_SAMPLING_MODES
from util.evaluation.embed import TrackletEmbedder, find_tracklets, frame_sort_key, tracklet_database, tracklet_labels
from util.evaluation.features_file import FeaturesFile

H, W, S = MARS_HEIGHT, MARS_WIDTH, MARS_S


def db_flags(root):
    d = root / 'db'
    return ['--test_txt', str(d / 'test_path.txt'), '--test_info', str(d / 'test_info.npy'),
            '--query_info', str(d / 'query_IDX.npy')]



@pytest.mark.parametrize('mode', TEST_SAMPLING_MODES)
def test_extract_features_equal_evaluate(mars_tracks, tmp_path, mode):
    """Same tracklets and flags: extract_features.py's features, labels and cams are evaluate.py's."""
    sampling = [] if mode == 'chunks' else ['--test_sampling', mode]
    ckpt = ['--load_ckpt', str(mars_tracks / 'ckpt.pth')]
    assert evaluate.main(db_flags(mars_tracks) + ckpt + MODEL + CLIP + sampling
                         + ['--save_features', str(tmp_path / 'eval.npz')]) == 0
    assert extract_features.main(ckpt + MODEL + CLIP + sampling + ['--tracklets', str(mars_tracks / 'tracks'),
                                                                   '--out', str(tmp_path / 'own.npz')]) == 0
    ref, own = np.load(tmp_path / 'eval.npz'), np.load(tmp_path / 'own.npz')
    np.testing.assert_array_equal(own['features'], ref['features'])
    np.testing.assert_array_equal(own['labels'], ref['labels'])
    np.testing.assert_array_equal(own['cams'], ref['cams'])
    assert own['features'].dtype == np.float32 and own['features'].shape[1] == 2048
    assert [os.path.basename(p) for p in own['paths']] == [f'{r:03d}' for r in range(len(ref['labels']))]
    # every tracklet with a real identity is a query against all of them
    np.testing.assert_array_equal(own['query_idx'], np.flatnonzero(ref['labels'] > 0))


def test_features_file_is_scored_by_evaluate(mars_tracks, tmp_path, capsys):
    out = tmp_path / 'own.npz'
    assert extract_features.main(['--load_ckpt', str(mars_tracks / 'ckpt.pth')] + MODEL + CLIP
                                 + ['--tracklets', str(mars_tracks / 'tracks'), '--out', str(out)]) == 0
    with np.load(out) as data:
        assert {'cams', 'features', 'labels', 'query_idx', 'paths'} <= set(data.files)
    assert len(FeaturesFile.read(out).paths) == len(FeaturesFile.read(out).labels)
    capsys.readouterr()
    assert evaluate.main(['--features', str(out)]) == 0
    assert 'CMC : ' in capsys.readouterr().out


def test_frame_lists_and_folders_give_the_same_features(mars_tracks):
    """The API: folders and lists of frame paths, several tracklets per call, (N, 2048) float32."""
    embedder = TrackletEmbedder(mars_tracks / 'ckpt.pth', 'resnet50_s1', S=S, height=H, width=W, batch_size=2,
                                device='cpu')
    folders = find_tracklets([mars_tracks / 'tracks'])[:3]
    lists = [sorted(os.path.join(f, n) for n in os.listdir(f)) for f in folders]  # MARS names: name order
    a, b = embedder.embed(folders), embedder.embed(lists)
    assert a.shape == (3, 2048) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(embedder.embed(folders[1:2])[0], a[1])


def test_frames_ordered_numerically_any_size_and_format(mars_tracks, tmp_path):
    """Frames sort by the number in their names; PNG frames of another size are resized as evaluation does."""
    assert sorted(['f10.jpg', 'f2.jpg', 'f1.png', 'a9_x.jpg'], key=frame_sort_key) == \
        ['a9_x.jpg', 'f1.png', 'f2.jpg', 'f10.jpg']
    mars_names = ['0001C1T0001F010.jpg', '0001C1T0001F002.jpg', '0001C1T0002F001.jpg']
    assert sorted(mars_names, key=frame_sort_key) == sorted(mars_names)
    d = tmp_path / 'cam3_walk'
    d.mkdir()
    rng = np.random.default_rng(0)
    for n in (10, 2, 1, 33):
        Image.fromarray(rng.integers(0, 256, (2 * H + 3, W + 5, 3), dtype=np.uint8)).save(d / f'frame_{n}.png')
    (d / 'notes.txt').write_text('not a frame')
    db = tracklet_database([d])
    assert [os.path.basename(p) for p in db.paths] == ['frame_1.png', 'frame_2.png', 'frame_10.png', 'frame_33.png']
    np.testing.assert_array_equal(db.info, [[0, 3, -1, -1]])
    embedder = TrackletEmbedder(mars_tracks / 'ckpt.pth', 'resnet50_s1', S=S, height=H, width=W, device='cpu')
    np.testing.assert_array_equal(embedder.embed([d]), embedder.embed([db.paths]))


def test_labels_from_mars_and_dukev_names():
    tracks = [['0012C3T0001F001.jpg', '0012C3T0001F002.jpg'],      # MARS
              ['00-1C2T0004F001.jpg'],                             # MARS junk
              ['0007_C6_F0099_X30823.jpg', '0007_C6_F0100_X30823.jpg'],  # DukeV
              ['0031C5F0099X30823.jpg'],                           # DukeV, old names
              ['0012C3T0001F001.jpg', '0013C3T0001F002.jpg'],      # identities disagree
              ['frame_0001.jpg']]                                  # own naming
    pids, cams = tracklet_labels([[os.path.join('x', n) for n in t] for t in tracks])
    np.testing.assert_array_equal(pids, [12, -1, 7, 31, -1, -1])
    np.testing.assert_array_equal(cams, [3, 2, 6, 5, -1, -1])


def test_root_with_nested_tracklet_folders(tmp_path):
    for rel in ('cam1/id2/t1', 'cam1/id10/t1', 'cam2/id1/t3'):
        (tmp_path / rel).mkdir(parents=True)
        Image.new('RGB', (8, 16)).save(tmp_path / rel / '1.jpg')
    (tmp_path / 'cam2' / 'empty').mkdir()
    found = [os.path.relpath(p, tmp_path) for p in find_tracklets([tmp_path])]
    assert found == ['cam1/id2/t1', 'cam1/id10/t1', 'cam2/id1/t3']


def run_extract(mars_tracks, tmp_path, capsys, tracklets, model=MODEL, ckpt=None):
    code = run_main(extract_features.main, ['--load_ckpt', str(ckpt or mars_tracks / 'ckpt.pth')] + model + CLIP
                    + ['--tracklets', *map(str, tracklets), '--out', str(tmp_path / 'f.npz')])
    err = capsys.readouterr().err.replace('\r', '\n').strip().splitlines()[-1]  # after any progress bar
    assert code == 2 and err.startswith('error: '), (code, err)
    assert not (tmp_path / 'f.npz').exists()
    return err


def test_bad_input_is_one_line_and_exit_2(mars_tracks, tmp_path, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert f'{empty}: empty directory' in run_extract(mars_tracks, tmp_path, capsys, [empty])
    no_images = tmp_path / 'no_images'
    no_images.mkdir()
    (no_images / 'readme.txt').write_text('x')
    assert f'{no_images}: no images' in run_extract(mars_tracks, tmp_path, capsys, [no_images])
    assert 'directory not found' in run_extract(mars_tracks, tmp_path, capsys, [tmp_path / 'missing'])
    broken = tmp_path / 'broken'
    shutil.copytree(mars_tracks / 'tracks' / '000', broken, symlinks=False)
    bad = sorted(broken.iterdir())[-1]
    bad.write_bytes(b'\xff\xd8\xff not really a JPEG')
    assert f'cannot read frame {bad}' in run_extract(mars_tracks, tmp_path, capsys, [broken])
    err = run_extract(mars_tracks, tmp_path, capsys, [mars_tracks / 'tracks'], model=['--model_type', 'resnet50_NL',
                                                                          '--temporal', 'Done'])
    assert 'does not fit resnet50_NL' in err and 'looks like --model_type resnet50_s1' in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_embedding_on_the_gpu_matches_the_cpu(mars_tracks):
    """--device cuda gives the CPU's features up to kernel rounding (fp32), and close ones under --amp bf16."""
    folders = find_tracklets([mars_tracks / 'tracks'])
    kw = dict(S=S, height=H, width=W, batch_size=4)
    cpu = TrackletEmbedder(mars_tracks / 'ckpt.pth', 'resnet50_s1', device='cpu', **kw).embed(folders)
    for amp, tol in (('none', 1e-3), ('bf16', 5e-2)):
        gpu = TrackletEmbedder(mars_tracks / 'ckpt.pth', 'resnet50_s1', device='cuda', amp=amp, **kw).embed(folders)
        assert gpu.dtype == np.float32 and np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu) < tol, amp


