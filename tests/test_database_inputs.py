"""Inputs that would change the numbers are refused in one line naming the file (two frames with one frame
number, PRID2011 splits beyond person 200 or naming a person twice, an LS-VID query leaving no gallery), and
damaged inputs are one line naming the input, not the output (non-UTF-8 list lines, a scalar or empty HDF5
query, a symbolic-link loop, an unreadable .mat); system files (Thumbs.db, .DS_Store) are skipped."""

import json
import os
import shutil

import h5py
import numpy as np
import pytest
import scipy.io

from util.data.datasets.dukev import build_dukev_database
from util.data.datasets.ilidsvid import build_ilidsvid_database
from util.data.datasets.lsvid import build_lsvid_database
from util.data.datasets.prid2011 import build_prid2011_database
from util.data.synthetic import make_dukev, make_ilidsvid, make_lsvid, make_prid2011
from util.errors import DataError

TINY = dict(num_train_ids=3, num_test_ids=3, height=16, width=8, max_len=6)


def expect_error(fn, out):
    with pytest.raises(DataError) as e:
        fn()
    message = str(e.value)
    assert '\n' not in message and not out.exists()
    assert not [p for p in os.listdir(out.parent) if 'partial' in p] if out.parent.exists() else True
    return message


@pytest.fixture
def ilids(tmp_path, synthetic_copy):
    d = synthetic_copy(make_ilidsvid, tmp_path / 'iLIDS-VID', seed=1, num_persons=6, max_len=5)
    return d, tmp_path / 'o' / 'db'


@pytest.fixture
def prid(tmp_path, synthetic_copy):
    d = synthetic_copy(make_prid2011, tmp_path / 'PRID2011', seed=2, num_shared=6, num_short=2, num_cam_a_only=1,
                       num_cam_b_only=2, height=32, width=16, max_len=28)
    return d, tmp_path / 'o' / 'db'


@pytest.fixture
def lsvid(tmp_path, synthetic_copy):
    return synthetic_copy(make_lsvid, tmp_path / 'LS-VID', seed=3, **TINY), tmp_path / 'o' / 'db'


@pytest.fixture
def dukev(tmp_path, synthetic_copy):
    return synthetic_copy(make_dukev, tmp_path / 'DukeV', seed=4, **TINY), tmp_path / 'o' / 'db'


def read_tree(d):
    return {os.path.relpath(os.path.join(p, n), d): open(os.path.join(p, n), 'rb').read()
            for p, _, files in os.walk(d) for n in files}


def first_frame(seq_dir):
    return sorted(n for n in os.listdir(seq_dir) if not n.startswith('.'))[0]


# -- two frames with one frame number -------------------------------------------------------------------------

def test_ilidsvid_frame_numbers_written_twice(ilids):
    data_dir, out = ilids
    seq = data_dir / 'i-LIDS-VID' / 'sequences' / 'cam1' / 'person001'
    name = first_frame(seq)                                        # cam1_person001_00840.png
    stem, number = name[:-4].rsplit('_', 1)
    twin = f'{stem}_{int(number)}.png'                             # cam1_person001_840.png: the same frame number
    shutil.copy(seq / name, seq / twin)
    message = expect_error(lambda: build_ilidsvid_database(str(data_dir), str(out), progress=False), out)
    assert message == (f'{seq / name} and {seq / twin}: two frames with frame number {int(number)} in one sequence '
                       f'(expected one file per frame)')


def test_prid2011_frame_numbers_written_twice(prid):
    data_dir, out = prid
    seq = data_dir / 'prid_2011' / 'multi_shot' / 'cam_b' / 'person_0001'
    name = first_frame(seq)                                        # 0003.png
    twin = f'{int(name[:-4]):02d}.png'                             # 03.png
    shutil.copy(seq / name, seq / twin)
    message = expect_error(lambda: build_prid2011_database(str(data_dir), str(out), progress=False), out)
    assert message.endswith(f': two frames with frame number {int(name[:-4])} in one sequence (expected one file '
                            f'per frame)')
    assert str(seq / name) in message and str(seq / twin) in message


def test_dukev_frame_number_twice(dukev):
    data_dir, out = dukev
    track = data_dir / 'train' / sorted(os.listdir(data_dir / 'train'))[0]
    track = track / sorted(os.listdir(track))[0]
    name = first_frame(track)                                      # 0001_C6_F0001_X00017.jpg
    twin = name[:15] + '99999.jpg'
    shutil.copy(track / name, track / twin)
    message = expect_error(lambda: build_dukev_database(str(data_dir), str(out), progress=False), out)
    assert message == (f'{track / name} and {track / twin}: two frames with frame number {int(name[9:13])} in one '
                       f'sequence (expected one file per frame)')


def test_lsvid_frame_number_twice(lsvid):
    data_dir, out = lsvid
    d = data_dir / 'tracklet_train' / sorted(os.listdir(data_dir / 'tracklet_train'))[0]
    name = first_frame(d)                                          # 00001_001_05_2341.jpg
    track, number, cam, n = name[:-4].split('_')
    twin = f'{track}_{int(number)}_{cam}_{n}.jpg'
    shutil.copy(d / name, d / twin)
    message = expect_error(lambda: build_lsvid_database(str(data_dir), str(out), progress=False), out)
    assert str(d / name) in message and str(d / twin) in message and 'two frames with frame number' in message


# -- split and query files ------------------------------------------------------------------------------------

def test_prid2011_json_beyond_person_200_or_naming_a_person_twice(prid, tmp_path):
    data_dir, out = prid
    cams = [data_dir / 'prid_2011' / 'multi_shot' / c for c in ('cam_a', 'cam_b')]
    for cam in cams:  # person_0201 in both cameras: two different people under one number
        if not (cam / 'person_0201').exists():
            shutil.copytree(cam / 'person_0001', cam / 'person_0201')
    good = json.loads((data_dir / 'splits_prid2011.json').read_text())
    path = tmp_path / 'splits.json'
    build = lambda: build_prid2011_database(str(data_dir), str(out), str(path), progress=False)  # noqa: E731
    path.write_text(json.dumps([dict(s, test=s['test'] + ['person_0201']) for s in good]))
    assert expect_error(build, out) == (f"{path}: split 0 names person 'person_0201', but only person_0001 .. "
                                        f"person_0200 are the same person in cam_a and cam_b")
    path.write_text(json.dumps([dict(s, train=s['train'] + s['train'][:1]) for s in good]))
    assert expect_error(build, out) == (f"{path}: split 0 names person {good[0]['train'][0]!r} twice in its train "
                                        f"list (expected each person once)")


def test_lsvid_query_of_every_test_row_leaves_no_gallery(lsvid):
    data_dir, out = lsvid
    n = len((data_dir / 'list_sequence' / 'list_seq_test.txt').read_text().split('\n')) - 1
    mat = data_dir / 'test' / 'data' / 'info_test.mat'
    with h5py.File(mat, 'w') as f:
        f['query'] = np.arange(1, n + 1, dtype=np.float64)[:, None]
    message = expect_error(lambda: build_lsvid_database(str(data_dir), str(out), progress=False), out)
    assert message == (f"{mat}: 'query' lists all {n} rows of {data_dir / 'list_sequence' / 'list_seq_test.txt'}, "
                       f"which leaves the gallery (the other test rows) empty")


@pytest.mark.parametrize('value', ['scalar', 'empty'])
def test_lsvid_query_scalar_or_empty(lsvid, value):
    data_dir, out = lsvid
    mat = data_dir / 'test' / 'data' / 'info_test.mat'
    with h5py.File(mat, 'w') as f:
        f['query'] = np.float64(1) if value == 'scalar' else h5py.Empty('f8')
    message = expect_error(lambda: build_lsvid_database(str(data_dir), str(out), progress=False), out)
    shape = '()' if value == 'scalar' else '(0,)'
    assert message.startswith(f"{mat}: variable 'query' ") and shape in message


def test_lsvid_list_line_not_utf8(lsvid):
    data_dir, out = lsvid
    path = data_dir / 'list_sequence' / 'list_seq_train.txt'
    lines = path.read_bytes().split(b'\n')
    lines[1] = lines[1][:3] + b'\xff' + lines[1][3:]
    path.write_bytes(b'\n'.join(lines))
    message = expect_error(lambda: build_lsvid_database(str(data_dir), str(out), progress=False), out)
    assert message == (f'{path} line 2: byte 0xff at column 4 is not UTF-8 (expected lines "<sequence path prefix> '
                       f'<pid>" in UTF-8)')


# -- faults of the inputs are named as such -------------------------------------------------------------------

def test_symbolic_link_loop_in_a_sequence_names_the_loop(ilids):
    data_dir, out = ilids
    seq = data_dir / 'i-LIDS-VID' / 'sequences' / 'cam2' / 'person002'
    os.symlink(seq / 'loop', seq / 'loop')
    message = expect_error(lambda: build_ilidsvid_database(str(data_dir), str(out), progress=False), out)
    assert message.startswith(f'{seq / "loop"}: ') and str(out) not in message


def test_unreadable_split_file_says_permission_denied(ilids, monkeypatch):
    data_dir, out = ilids
    mat = data_dir / 'train-test people splits' / 'train_test_splits_ilidsvid.mat'

    def refused(path, *args, **kwargs):
        raise PermissionError(13, 'Permission denied', str(path))
    monkeypatch.setattr(scipy.io, 'loadmat', refused)
    message = expect_error(lambda: build_ilidsvid_database(str(data_dir), str(out), progress=False), out)
    assert message.startswith(f'{mat}: permission denied (expected ')


# -- system files --------------------------------------------------------------------------------------------

def test_system_files_are_skipped_by_every_builder(dukev, ilids, tmp_path):
    for (data_dir, _), build in ((dukev, build_dukev_database), (ilids, build_ilidsvid_database)):
        out = tmp_path / 'with_system_files'
        build(str(data_dir), str(tmp_path / 'clean'), progress=False)
        clean = read_tree(tmp_path / 'clean')
        for parent, dirs, files in os.walk(data_dir):
            if files and not dirs:  # a frame folder, and its parent
                for name in ('.DS_Store', 'Thumbs.db', 'desktop.ini'):
                    (tmp_path / parent / name).write_bytes(b'\0')
                (tmp_path / os.path.dirname(parent) / 'Thumbs.db').write_bytes(b'\0')
        build(str(data_dir), str(out), progress=False)
        assert read_tree(out) == clean
        shutil.rmtree(tmp_path / 'clean')
        shutil.rmtree(out)
