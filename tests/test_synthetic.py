"""Synthetic datasets: official layouts and formats, the promised properties, determinism."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from util.synthetic import MARKER, main, make_dukev, make_mars

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
    for start, end, pid, _ in info:
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
    assert main(['dukev', '--out', str(other)]) == 2
    err = capsys.readouterr().err
    assert err == f'error: {other}: directory is not empty and was not written by util.synthetic (expected a new ' \
                  f'or empty directory, or an earlier synthetic dataset)\n'
    assert os.listdir(other) == ['precious.txt']


def test_cli_rejects_bad_sizes():
    r = subprocess.run([sys.executable, '-m', 'util.synthetic', 'mars', '--out', 'unused', '--max_len', '1000'],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr == 'error: --min_len 2 --max_len 1000: expected 1 <= min_len <= max_len < 1000\n'
    assert not os.path.exists(os.path.join(ROOT, 'unused'))
