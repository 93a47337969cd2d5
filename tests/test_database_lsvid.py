"""LS-VID builder: rows in list order, frames by prefix in numeric frame order, the HDF5 query file, and
every bad input. The expected database is restated plainly (glob of the prefix, split on '_')."""

import glob
import os

import h5py
import numpy as np
import pytest

from util.data.datasets.lsvid import build_lsvid_database
from util.data.synthetic import make_lsvid
from util.errors import DataError


@pytest.fixture
def lsvid(tmp_path, synthetic_copy):
    d = synthetic_copy(make_lsvid, tmp_path / 'LS-VID', seed=3, num_train_ids=3, num_test_ids=3, height=16,
                       width=8, max_len=6)
    return d, tmp_path / 'out' / 'LSVID_database'


def expected(data_dir, split):
    """(path text, info rows) from the list file: frames = glob(prefix*) ordered by the second field of the
    name, camera = its third field."""
    paths, rows = [], []
    for line in (data_dir / 'list_sequence' / f'list_seq_{split}.txt').read_text().splitlines():
        prefix, pid = line.split()
        frames = glob.glob(str(data_dir / prefix) + '*')
        frames.sort(key=lambda p: int(os.path.basename(p).split('_')[1]))
        cam = int(os.path.basename(frames[0]).split('_')[2])
        rows.append([len(paths), len(paths) + len(frames) - 1, int(pid), cam])
        paths += frames
    return ''.join(p + '\n' for p in paths), np.array(rows, dtype=np.int64)


def build(paths):
    data_dir, out = paths
    build_lsvid_database(str(data_dir), str(out), progress=False)


def test_lsvid_database(lsvid):
    data_dir, out = lsvid
    build(lsvid)
    assert sorted(os.listdir(out)) == ['gallery_IDX.npy', 'query_IDX.npy', 'test_info.npy', 'test_path.txt',
                                       'train_info.npy', 'train_path.txt']
    for split in ('train', 'test'):
        text, rows = expected(data_dir, split)
        assert (out / f'{split}_path.txt').read_text() == text
        info = np.load(out / f'{split}_info.npy')
        assert info.dtype == np.int64 and (info == rows).all()
    with h5py.File(data_dir / 'test' / 'data' / 'info_test.mat', 'r') as f:
        query = np.asarray(f['query'])[0].astype(int) - 1  # as the public loaders read it
    q, g = np.load(out / 'query_IDX.npy'), np.load(out / 'gallery_IDX.npy')
    assert q.dtype == g.dtype == np.int64 and q.ndim == g.ndim == 1
    n = len(np.load(out / 'test_info.npy'))
    assert q.tolist() == query.tolist() and g.tolist() == [r for r in range(n) if r not in query]
    text = (out / 'train_path.txt').read_text()
    assert '_99_' in text and text.index('_99_') < text.index('_100_')  # the unpadded trap, numeric order


def edit_list(data_dir, split, fn):
    path = data_dir / 'list_sequence' / f'list_seq_{split}.txt'
    lines = path.read_text().splitlines()
    path.write_text(''.join(line + '\n' for line in fn(lines)))
    return path


def expect_error(paths, match):
    with pytest.raises(DataError, match=match) as e:
        build(paths)
    assert '\n' not in str(e.value)
    out = paths[1]
    assert not out.exists() and (not out.parent.exists() or not os.listdir(out.parent))
    return str(e.value)


def test_lsvid_list_errors(lsvid):
    data_dir, out = lsvid
    lines = (data_dir / 'list_sequence' / 'list_seq_test.txt').read_text().splitlines()
    path = edit_list(data_dir, 'test', lambda ls: ls[:2] + [ls[2].replace('_ ', '9_ ')] + ls[3:])
    expect_error(lsvid, rf"list_seq_test\.txt line 3: prefix '{lines[2].split()[0][:-1]}9_' matches no frame in")
    edit_list(data_dir, 'test', lambda ls: ls[:1] + ['tracklet_test/0001/00001_'] + ls[2:])
    expect_error(lsvid, r"list_seq_test\.txt line 2: 'tracklet_test/0001/00001_' \(expected \"<sequence path prefix> "
                        r"<pid>\"\)")
    path.write_text('\n')
    expect_error(lsvid, r'list_seq_test\.txt: no sequences')
    os.remove(path)
    expect_error(lsvid, r'list_seq_test\.txt: file not found')


def test_lsvid_frame_errors(lsvid):
    data_dir, out = lsvid
    prefix = (data_dir / 'list_sequence' / 'list_seq_train.txt').read_text().split()[0]
    frames = sorted(glob.glob(str(data_dir / prefix) + '*'))
    name = os.path.basename(frames[0])
    fields = name.split('_')
    os.rename(frames[0], os.path.join(os.path.dirname(frames[0]), '_'.join(fields[:2] + ['1x'] + fields[3:])))
    expect_error(lsvid, r'frame name does not parse \(expected <tracklet>_<frame>_<cam>_<n>\.jpg')
    other = f'{int(fields[2]) % 15 + 1:02d}'
    os.rename(os.path.join(os.path.dirname(frames[0]), '_'.join(fields[:2] + ['1x'] + fields[3:])),
              os.path.join(os.path.dirname(frames[0]), '_'.join(fields[:2] + [other] + fields[3:])))
    # The first frame now says another camera: the second frame is the one that differs from it.
    expect_error(lsvid, rf'{fields[0]}_\d+_{fields[2]}_\d+\.jpg: camera {int(fields[2])} differs from camera '
                        rf'{int(other)} of the first frame of its sequence \(.*list_seq_train\.txt line 1\)')
    os.rename(os.path.join(os.path.dirname(frames[0]), '_'.join(fields[:2] + [other] + fields[3:])), frames[0])
    (data_dir / (prefix + 'notes.txt')).write_text('x')
    expect_error(lsvid, r'notes\.txt: not an image file')


def test_lsvid_query_file_errors(lsvid):
    data_dir, out = lsvid
    path = data_dir / 'test' / 'data' / 'info_test.mat'
    n = len((data_dir / 'list_sequence' / 'list_seq_test.txt').read_text().splitlines())
    with h5py.File(path, 'w') as f:
        f['query'] = np.array([[1.0, n + 1.0]])
    expect_error(lsvid, rf"info_test\.mat: query entry 2 is {n + 1}; expected a 'query' vector of 1-based rows of "
                        rf".*list_seq_test\.txt \(1\.\.{n}\)")
    with h5py.File(path, 'w') as f:
        f['probe'] = np.array([[1.0]])
    expect_error(lsvid, r"info_test\.mat: no variable 'query' \(found: probe\)")
    with h5py.File(path, 'w') as f:
        f['query'] = np.ones((2, 2))
    expect_error(lsvid, r"variable 'query' has shape \(2, 2\)")
    path.write_bytes(b'garbage')
    expect_error(lsvid, r'info_test\.mat: cannot read it as a MATLAB \.mat file')
