"""Synthetic datasets: official layouts and formats, the promised properties, determinism."""

import json
import os
import re

import numpy as np
import pytest
import scipy.io
from helpers import run_as_main
from PIL import Image

from util.cli.options import run_main
from util.cli.synthetic import main
from util.data.synthetic import MARKER, make_dukev, make_ilidsvid, make_lsvid, make_mars, make_prid2011

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_train_ids=4, num_test_ids=4, height=16, width=8)
SHORT = dict(TINY, max_len=10)
MARS_NAME = re.compile(r'(\d{4}|00-1)C(\d)T(\d{4})F(\d{3})\.jpg')


def tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = open(p, 'rb').read()
    return out


@pytest.fixture(scope='module')
def mars(tmp_path_factory):
    d = tmp_path_factory.mktemp('syn') / 'mars'
    # max_len > 64 so that the split must hold a tracklet over 64 frames and one under 8
    make_mars(d, seed=1, max_len=70, num_junk=3, num_distractors=2, **TINY)
    return d


def load_info(root, split):
    info_dir = root / 'MARS-evaluation' / 'info'
    info = scipy.io.loadmat(info_dir / f'tracks_{split}_info.mat')[f'track_{split}_info']
    names = (info_dir / f'{split}_name.txt').read_text().split('\n')
    return info, names


def test_mars_layout_and_info_files(mars):
    assert sorted(os.listdir(mars)) == sorted(['MARS-evaluation', 'bbox_test', 'bbox_train', MARKER])
    info_dir = mars / 'MARS-evaluation' / 'info'
    assert sorted(os.listdir(info_dir)) == ['query_IDX.mat', 'test_name.txt', 'tracks_test_info.mat',
                                            'tracks_train_info.mat', 'train_name.txt']
    for split in ('train', 'test'):
        info, names = load_info(mars, split)
        assert names[-1] == '' and len(names) - 1 == info[-1, 1]  # one name per line, newline-terminated
        names = names[:-1]
        d = mars / f'bbox_{split}'
        listed = [n for i in sorted(os.listdir(d)) for n in sorted(os.listdir(d / i))]
        assert names == listed
        assert info.dtype == np.int32 and info.shape[1] == 4
        assert info[0, 0] == 1 and (info[1:, 0] == info[:-1, 1] + 1).all()  # 1-based, tiling
        for start, end, pid, cam in info:
            parsed = [MARS_NAME.fullmatch(n).groups() for n in names[start - 1:end]]
            assert {(p, c, t) for p, c, t, _ in parsed} == {(parsed[0][0], str(cam), parsed[0][2])}
            assert parsed[0][0] == ('00-1' if pid == -1 else f'{pid:04d}')
            assert [int(f) for *_, f in parsed] == list(range(1, end - start + 2))
    query = scipy.io.loadmat(info_dir / 'query_IDX.mat')['query_IDX']
    assert query.dtype == np.uint16 and query.shape == (1, query.size)


def test_mars_tracklets_queries_junk(mars):
    train, _ = load_info(mars, 'train')
    test, _ = load_info(mars, 'test')
    query = scipy.io.loadmat(mars / 'MARS-evaluation' / 'info' / 'query_IDX.mat')['query_IDX'][0].astype(int) - 1
    assert not set(train[:, 2]) & set(test[:, 2])  # disjoint identities
    assert len(set(train[:, 2])) == 4 and len(set(test[:, 2]) - {-1, 0}) == 4
    assert (test[:, 2] == -1).sum() == 3 and (test[:, 2] == 0).sum() == 2
    for info in (train, test):
        lengths = info[:, 1] - info[:, 0] + 1
        assert lengths.min() < 8 and lengths.max() > 64 and lengths.min() >= 2
    pid, cam = test[:, 2], test[:, 3]
    assert len(query) > 0 and (pid[query] > 0).all()
    for q in query:  # a gallery match of the same identity in another camera
        assert ((pid == pid[q]) & (cam != cam[q])).any()


def test_frames_are_jpegs_of_the_requested_size(mars):
    d = mars / 'bbox_test' / '00-1'
    f = sorted(os.listdir(d))[0]
    with Image.open(d / f) as im:
        assert im.format == 'JPEG' and im.size == (8, 16) and im.mode == 'RGB'


def test_identity_differs_from_others_more_than_from_itself(tmp_path):
    # Learnable: tracklets of one identity are closer than those of different identities on average, even
    # across cameras (mean colour of the person region, frames averaged per tracklet).
    make_mars(tmp_path / 'm', seed=5, num_train_ids=8, num_test_ids=1, height=32, width=16, max_len=8,
              num_junk=0, num_distractors=0)
    info, names = load_info(tmp_path / 'm', 'train')
    feats = []
    for start, end, _, _ in info:
        ims = [np.asarray(Image.open(tmp_path / 'm' / 'bbox_train' / n[:4] / n), np.float32)
               for n in names[start - 1:end]]
        person = np.mean(ims, 0)[6:30, 5:11]  # (H', W', 3) centre of the box
        feats.append(person.reshape(4, -1, 3).mean(1).ravel())
    feats = np.array(feats)
    d = np.linalg.norm(feats[:, None] - feats[None], axis=2)
    same = info[:, 2][:, None] == info[:, 2][None]
    off = ~np.eye(len(info), dtype=bool)
    assert d[same & off].mean() < 0.85 * d[~same].mean()


def test_mars_is_deterministic(tmp_path):
    make_mars(tmp_path / 'a', seed=7, **SHORT)
    make_mars(tmp_path / 'b', seed=7, **SHORT)
    make_mars(tmp_path / 'c', seed=8, **SHORT)
    a, b = tree(tmp_path / 'a'), tree(tmp_path / 'b')
    assert a == b and len(a) > 20
    assert a != tree(tmp_path / 'c')


def test_dukev_layout_names_and_determinism(tmp_path):
    make_dukev(tmp_path / 'new', seed=2, num_distractor_ids=2, **SHORT)
    make_dukev(tmp_path / 'old', seed=2, num_distractor_ids=2, old_names=True, **SHORT)
    new, old = tree(tmp_path / 'new'), tree(tmp_path / 'old')
    assert sorted(os.listdir(tmp_path / 'new')) == sorted(['gallery', 'query', 'train', MARKER])
    frames = [p for p in new if p.endswith('.jpg')]
    assert all(re.fullmatch(r'(train|query|gallery)/(\d{4})/\d{4}/\2_C\d_F\d{4}_X\d{5}\.jpg', p) for p in frames)
    # Same pixels whatever the naming.
    renamed = {re.sub(r'(\d{4})C(\d)F(\d{4})X', r'\1_C\2_F\3_X', p): v for p, v in old.items() if p != MARKER}
    assert {p: v for p, v in new.items() if p != MARKER} == renamed
    # Every query tracklet is also in gallery, file for file; the query identities have other cameras there.
    query_tracks = {os.path.dirname(p)[len('query/'):] for p in frames if p.startswith('query/')}
    assert len(query_tracks) == 4
    for p in frames:
        if p.startswith('query/'):
            assert new['gallery/' + p[len('query/'):]] == new[p]
    for t in query_tracks:
        pid = t.split('/')[0]
        cams = {p.split('_')[1] for p in frames if p.startswith(f'gallery/{pid}/')}
        assert len(cams) >= 2
    train_ids = {p.split('/')[1] for p in frames if p.startswith('train/')}
    assert not train_ids & {t.split('/')[0] for t in query_tracks}
    make_dukev(tmp_path / 'again', seed=2, num_distractor_ids=2, **SHORT)
    assert tree(tmp_path / 'again') == new


def test_regenerating_replaces_an_earlier_set_only(tmp_path, capsys):
    out = tmp_path / 'set'
    assert main(['mars', '--out', str(out), '--num_train_ids', '2', '--num_test_ids', '2', '--height', '16',
                 '--width', '8', '--max_len', '5']) == 0
    assert 'wrote synthetic MARS' in capsys.readouterr().out
    (out / 'extra').write_text('x')
    assert main(['mars', '--out', str(out), '--num_train_ids', '2', '--num_test_ids', '2', '--height', '16',
                 '--width', '8', '--max_len', '5', '--seed', '1']) == 0
    assert not (out / 'extra').exists()
    assert not [p for p in os.listdir(tmp_path) if 'partial' in p]

    other = tmp_path / 'other'
    other.mkdir()
    (other / 'precious.txt').write_text('x')
    assert run_main(main, ['dukev', '--out', str(other)]) == 2  # the command line's error handling
    err = capsys.readouterr().err
    assert err == f'error: {other}: directory is not empty and was not written by util.data.synthetic (expected a ' \
                  f'new or empty directory, or an earlier synthetic dataset)\n'
    assert os.listdir(other) == ['precious.txt']


def test_cli_rejects_bad_sizes(capsys, monkeypatch):
    # `python -m util.synthetic` run as __main__ in this process (helpers.run_as_main), from the checkout
    monkeypatch.chdir(ROOT)
    code, _, err = run_as_main('util.synthetic', 'mars', '--out', 'unused', '--max_len', '1000', module=True,
                               capsys=capsys)
    assert code == 2
    assert err == 'error: --min_len 2 --max_len 1000: expected 1 <= min_len <= max_len < 1000\n'
    assert not os.path.exists(os.path.join(ROOT, 'unused'))


def _numbers(names):
    return [int(re.search(r'(\d+)\.png$', n).group(1)) for n in names]


def test_ilidsvid_layout_split_file_and_traps(tmp_path):
    root = tmp_path / 'iLIDS-VID'
    make_ilidsvid(root, seed=0, num_persons=4, max_len=4)
    seq = root / 'i-LIDS-VID' / 'sequences'
    persons = ['person001', 'person002', 'person003', 'person004']
    for cam in ('cam1', 'cam2'):
        assert sorted(os.listdir(seq / cam)) == (['.DS_Store'] if cam == 'cam1' else []) + persons
        for p in persons:
            names = [n for n in os.listdir(seq / cam / p) if n != '.DS_Store']
            assert names and all(re.fullmatch(rf'{cam}_{p}_\d+\.png', n) for n in names)
            assert sorted(_numbers(names)) == list(range(min(_numbers(names)), min(_numbers(names)) + len(names)))
    assert (seq / 'cam2' / 'person001' / '.DS_Store').exists()
    trap = os.listdir(seq / 'cam1' / 'person002')
    assert sorted(trap) != sorted(trap, key=lambda n: _numbers([n]))  # text order is not frame order
    with Image.open(seq / 'cam1' / 'person001' / sorted(os.listdir(seq / 'cam1' / 'person001'))[0]) as im:
        assert im.format == 'PNG' and im.size == (64, 128) and im.mode == 'RGB'
    ls_set = scipy.io.loadmat(root / 'train-test people splits' / 'train_test_splits_ilidsvid.mat')['ls_set']
    assert ls_set.shape == (10, 4) and ls_set.dtype == np.float64
    assert all(sorted(row) == [1, 2, 3, 4] for row in ls_set.tolist())


def test_prid2011_persons_short_sequences_and_split_files(tmp_path):
    root = tmp_path / 'PRID2011'
    summary = make_prid2011(root, seed=0, num_shared=5, num_short=2, num_cam_a_only=1, num_cam_b_only=2, height=16,
                            width=8, max_len=28)
    shot = root / 'prid_2011' / 'multi_shot'
    a = sorted(n for n in os.listdir(shot / 'cam_a') if n != '.DS_Store')
    b = sorted(os.listdir(shot / 'cam_b'))
    shared = [f'person_{p:04d}' for p in range(1, 6)]
    assert a == shared + ['person_0201'] and b == shared + ['person_0201', 'person_0202']
    assert (shot / 'cam_a' / '.DS_Store').exists()
    lengths = {p: (len(os.listdir(shot / 'cam_a' / p)), len(os.listdir(shot / 'cam_b' / p))) for p in shared}
    standard = [p for p in shared if min(lengths[p]) >= 27]
    assert len(standard) == 3 == summary['standard_persons'] and all(max(v) >= 27 for v in lengths.values())
    trap = os.listdir(shot / 'cam_b' / 'person_0001')
    assert '1.png' in trap and '10.png' in trap  # unpadded: 10.png sorts before 2.png as text
    ls_set = scipy.io.loadmat(root / 'train_test_splits_prid.mat')['ls_set']
    assert ls_set.shape == (10, 3) and all(sorted(row) == [1, 2, 3] for row in ls_set.tolist())
    splits = json.loads((root / 'splits_prid2011.json').read_text())
    assert len(splits) == 10 and all(sorted(s) == ['test', 'train'] for s in splits)
    assert splits[0]['test'] == sorted(standard[int(i) - 1] for i in ls_set[0, :1])
    assert sorted(splits[0]['train'] + splits[0]['test']) == standard


def test_lsvid_layout_hdf5_query_and_determinism(tmp_path):
    make_lsvid(tmp_path / 'a', seed=4, num_train_ids=2, num_test_ids=2, height=16, width=8, max_len=4)
    make_lsvid(tmp_path / 'b', seed=4, num_train_ids=2, num_test_ids=2, height=16, width=8, max_len=4)
    assert tree(tmp_path / 'a') == tree(tmp_path / 'b')
    root = tmp_path / 'a'
    with open(root / 'test' / 'data' / 'info_test.mat', 'rb') as f:
        assert f.read(19) == b'MATLAB 7.3 MAT-file'
    with pytest.raises(NotImplementedError):  # v7.3: scipy cannot read it, h5py can
        scipy.io.loadmat(root / 'test' / 'data' / 'info_test.mat')
    import h5py
    with h5py.File(root / 'test' / 'data' / 'info_test.mat', 'r') as f:
        query = np.asarray(f['query'])
    test_lines = (root / 'list_sequence' / 'list_seq_test.txt').read_text().splitlines()
    assert query.shape == (1, 2) and query.dtype == np.float64 and query.max() <= len(test_lines)
    for line in test_lines + (root / 'list_sequence' / 'list_seq_train.txt').read_text().splitlines():
        prefix, pid = line.split()
        frames = [n for n in os.listdir(root / os.path.dirname(prefix)) if n.startswith(os.path.basename(prefix))]
        assert frames and all(re.fullmatch(r'\d{5}_\d+_\d{2}_\d{4}\.jpg', n) for n in frames)
        assert os.path.dirname(prefix).endswith(f'{int(pid):04d}')


def test_new_layouts_from_the_command_line(tmp_path, capsys, monkeypatch):
    for dataset in ('ilidsvid', 'prid2011', 'lsvid'):
        assert main([dataset, '--out', str(tmp_path / dataset), '--height', '16', '--width', '8']) == 0
    monkeypatch.chdir(ROOT)
    code, _, err = run_as_main('util.synthetic', 'prid2011', '--out', tmp_path / 'p', '--num_persons', '201',
                               module=True, capsys=capsys)
    assert code == 2 and err == 'error: --num_shared 201: expected 2..200\n'
