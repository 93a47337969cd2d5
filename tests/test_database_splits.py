"""iLIDS-VID and PRID2011 builders: the ten splits against a plain restatement of torchreid's split rule,
the query/gallery rows, numeric frame order, and every bad input.

The expected splits and files below are written independently of util/datasets (glob, sorted, regular
expressions): they are the oracle, not a copy of the builder.
"""

import glob
import json
import os
import re
import shutil

import numpy as np
import pytest
import scipy.io
from helpers import run_as_main

from util.data.datasets.ilidsvid import build_ilidsvid_database
from util.data.datasets.prid2011 import build_prid2011_database
from util.data.synthetic import make_ilidsvid, make_prid2011
from util.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DB_FILES = ['gallery_IDX.npy', 'query_IDX.npy', 'test_info.npy', 'test_path.txt', 'train_info.npy',
            'train_path.txt']


# ----------------------------------------------------------------------------------------------------
# The oracle: torchreid's rule and the database of a split, restated plainly
# ----------------------------------------------------------------------------------------------------

def torchreid_splits(ls_set, names):
    """Row k of ls_set (1-based indices into the sorted names): first half test, the rest train; each list in
    index order."""
    half = ls_set.shape[1] // 2
    return [{'train': [names[int(i) - 1] for i in sorted(row[half:])],
             'test': [names[int(i) - 1] for i in sorted(row[:half])]} for row in ls_set]


def frames_in_order(seq_dir):
    """PNG frames of a sequence ordered by the number their name ends with."""
    paths = glob.glob(os.path.join(seq_dir, '*.png'))
    return sorted(paths, key=lambda p: int(re.search(r'(\d+)\.png$', p).group(1)))


def expected_split(split, cam_dirs):
    """{file: array or text} of one split: train = both cameras of each training person; test = the first
    camera of each test person (queries) then the second (gallery)."""
    out = {}
    for part, seqs in (('train', [(n, c) for n in split['train'] for c in (0, 1)]),
                       ('test', [(n, c) for c in (0, 1) for n in split['test']])):
        paths, rows = [], []
        for name, cam in seqs:
            frames = frames_in_order(os.path.join(cam_dirs[cam], name))
            rows.append([len(paths), len(paths) + len(frames) - 1, int(re.search(r'\d+$', name).group()), cam + 1])
            paths += frames
        out[f'{part}_path.txt'] = ''.join(p + '\n' for p in paths)
        out[f'{part}_info.npy'] = np.array(rows, dtype=np.int64)
    n = len(split['test'])
    out['query_IDX.npy'] = np.arange(n)
    out['gallery_IDX.npy'] = np.arange(n, 2 * n)
    return out


def check_databases(out, splits, cam_dirs):
    assert sorted(os.listdir(out)) == [f'split_{k}' for k in range(10)] + ['splits.json']
    assert json.loads((out / 'splits.json').read_text()) == splits
    for k, split in enumerate(splits):
        d = out / f'split_{k}'
        assert sorted(os.listdir(d)) == DB_FILES
        for name, value in expected_split(split, cam_dirs).items():
            if name.endswith('.txt'):
                assert (d / name).read_text() == value, (k, name)
            else:
                got = np.load(d / name)
                assert got.dtype == np.int64 and got.shape == value.shape and (got == value).all(), (k, name)


def expect_error(fn, match, out):
    with pytest.raises(DataError, match=match) as e:
        fn()
    assert '\n' not in str(e.value)
    assert not out.exists()
    assert not [p for p in os.listdir(out.parent) if 'partial' in p] if out.parent.exists() else True
    return str(e.value)


# ----------------------------------------------------------------------------------------------------
# iLIDS-VID
# ----------------------------------------------------------------------------------------------------

@pytest.fixture
def ilids(tmp_path, synthetic_copy):
    d = synthetic_copy(make_ilidsvid, tmp_path / 'iLIDS-VID', seed=1, num_persons=6, max_len=5)
    return d, tmp_path / 'out' / 'iLIDSVID_database'


def ilids_cams(data_dir):
    return [str(data_dir / 'i-LIDS-VID' / 'sequences' / c) for c in ('cam1', 'cam2')]


def ilids_split_file(data_dir):
    return data_dir / 'train-test people splits' / 'train_test_splits_ilidsvid.mat'


def test_ilidsvid_databases_follow_torchreids_rule(ilids):
    data_dir, out = ilids
    build_ilidsvid_database(str(data_dir), str(out), progress=False)
    cams = ilids_cams(data_dir)
    ls_set = scipy.io.loadmat(ilids_split_file(data_dir))['ls_set']
    names = sorted(n for n in os.listdir(cams[0]) if n.startswith('person'))
    splits = torchreid_splits(ls_set, names)
    check_databases(out, splits, cams)
    # The traps were there: a sequence whose text order is not its frame order, and .DS_Store files.
    text = (out / 'split_0' / 'train_path.txt').read_text() + (out / 'split_0' / 'test_path.txt').read_text()
    assert text.index('cam1_person002_999.png') < text.index('cam1_person002_1000.png')
    assert '.DS_Store' not in text and os.path.exists(os.path.join(cams[0], '.DS_Store'))
    assert len({json.dumps(s) for s in splits}) > 1  # the ten splits differ


def test_ilidsvid_split_file_errors(ilids):
    data_dir, out = ilids
    path = ilids_split_file(data_dir)
    ls_set = scipy.io.loadmat(path)['ls_set']
    build = lambda: build_ilidsvid_database(str(data_dir), str(out), progress=False)  # noqa: E731
    scipy.io.savemat(path, {'splits': ls_set})
    expect_error(build, r"train_test_splits_ilidsvid\.mat: no variable 'ls_set' \(found: splits\); expected a "
                        r"\(10, 6\) array of 1-based indices into the 6 sorted person directories", out)
    scipy.io.savemat(path, {'ls_set': ls_set[:, :5]})
    expect_error(build, r"variable 'ls_set' has shape \(10, 5\); expected a \(10, 6\) array", out)
    bad = ls_set.copy()
    bad[3, 2] = 7
    scipy.io.savemat(path, {'ls_set': bad})
    expect_error(build, r"ls_set\[3, 2\] is 7; expected .* \(1\.\.6\)", out)
    bad[3, 2] = bad[3, 1]
    scipy.io.savemat(path, {'ls_set': bad})
    expect_error(build, r'ls_set row 3 names a person twice', out)
    os.remove(path)
    expect_error(build, r"train_test_splits_ilidsvid\.mat: file not found", out)


def test_ilidsvid_tree_errors(ilids):
    data_dir, out = ilids
    cam1, cam2 = ilids_cams(data_dir)
    build = lambda: build_ilidsvid_database(str(data_dir), str(out), progress=False)  # noqa: E731
    frame = sorted(os.listdir(os.path.join(cam1, 'person003')))[0]
    os.rename(os.path.join(cam1, 'person003', frame), os.path.join(cam1, 'person003', 'cam1_person003_x1.png'))
    expect_error(build, r'person003/cam1_person003_x1\.png: frame name does not parse \(expected a frame number', out)
    shutil.rmtree(os.path.join(cam1, 'person003'))
    os.mkdir(os.path.join(cam1, 'person003'))
    (data_dir / 'i-LIDS-VID' / 'sequences' / 'cam1' / 'person003' / '.DS_Store').write_bytes(b'x')
    expect_error(build, r'cam1/person003: empty directory \(expected frame images', out)
    shutil.rmtree(os.path.join(cam1, 'person003'))
    expect_error(build, rf'{cam1}/person003: directory not found \(every person of {cam2} needs a sequence in both '
                        r'cameras\)', out)
    shutil.rmtree(os.path.join(cam2, 'person003'))
    shutil.rmtree(os.path.join(cam2, 'person004'))
    expect_error(build, rf'{cam2}/person004: directory not found \(every person of {cam1} needs', out)
    shutil.rmtree(data_dir / 'i-LIDS-VID' / 'sequences' / 'cam2')
    expect_error(build, r'sequences/cam2: directory not found \(expected one directory per person', out)


# ----------------------------------------------------------------------------------------------------
# PRID2011
# ----------------------------------------------------------------------------------------------------

@pytest.fixture
def prid(tmp_path, synthetic_copy):
    d = synthetic_copy(make_prid2011, tmp_path / 'PRID2011', seed=2, num_shared=6, num_short=2, num_cam_a_only=1,
                       num_cam_b_only=2, height=32, width=16, max_len=28)
    return d, tmp_path / 'out' / 'PRID2011_database'


def prid_cams(data_dir):
    return [str(data_dir / 'prid_2011' / 'multi_shot' / c) for c in ('cam_a', 'cam_b')]


def standard_persons(cams):
    """Of person_0001 .. person_0200, those with at least 27 frames in both cameras, sorted."""
    names = [n for n in os.listdir(cams[0]) if re.fullmatch(r'person_\d{4}', n) and int(n[7:]) <= 200]
    return sorted(n for n in names if all(len(glob.glob(os.path.join(c, n, '*.png'))) >= 27 for c in cams))


def test_prid2011_both_split_files_follow_torchreids_rule(prid, tmp_path):
    data_dir, out = prid
    cams = prid_cams(data_dir)
    persons = standard_persons(cams)
    assert 2 <= len(persons) < 6  # the short sequences left some persons out
    from_mat = torchreid_splits(scipy.io.loadmat(data_dir / 'train_test_splits_prid.mat')['ls_set'], persons)
    build_prid2011_database(str(data_dir), str(tmp_path / 'mat'), str(data_dir / 'train_test_splits_prid.mat'),
                            progress=False)
    check_databases(tmp_path / 'mat', from_mat, cams)
    from_json = json.loads((data_dir / 'splits_prid2011.json').read_text())
    build_prid2011_database(str(data_dir), str(out), progress=False)  # default: the .json
    check_databases(out, from_json, cams)
    text = (out / 'split_0' / 'train_path.txt').read_text() + (out / 'split_0' / 'test_path.txt').read_text()
    if 'person_0001' in text:  # the unpadded sequence: 2.png before 10.png
        assert text.index('cam_b/person_0001/2.png') < text.index('cam_b/person_0001/10.png')


def test_prid2011_unpadded_frames_are_in_numeric_order(prid, tmp_path):
    data_dir, out = prid
    cams = prid_cams(data_dir)
    split = [{'train': ['person_0001', 'person_0002'], 'test': ['person_0003', 'person_0004']}] * 10
    (tmp_path / 's.json').write_text(json.dumps(split))
    build_prid2011_database(str(data_dir), str(out), str(tmp_path / 's.json'), progress=False)
    check_databases(out, split, cams)
    text = (out / 'split_0' / 'train_path.txt').read_text()
    assert text.index('cam_b/person_0001/2.png\n') < text.index('cam_b/person_0001/10.png\n')


def test_prid2011_mat_needs_the_standard_persons(prid):
    data_dir, out = prid
    cams = prid_cams(data_dir)
    mat = str(data_dir / 'train_test_splits_prid.mat')
    build = lambda: build_prid2011_database(str(data_dir), str(out), mat, progress=False)  # noqa: E731
    persons = standard_persons(cams)
    seq = os.path.join(cams[1], persons[0])
    for name in sorted(os.listdir(seq))[26:]:  # now 26 frames: one standard person fewer
        os.remove(os.path.join(seq, name))
    expect_error(build, rf'{cams[0]}: {len(persons) - 1} of person_0001 \.\. person_0200 have at least 27 frames in '
                        rf'both cameras, but .*train_test_splits_prid\.mat indexes {len(persons)} persons \(expected '
                        r'the official multi_shot tree, which gives 178\)', out)
    shutil.rmtree(seq)
    expect_error(build, rf'{seq}: directory not found \(persons person_0001 \.\. person_0200 are in both cameras', out)


def test_prid2011_json_errors(prid, tmp_path):
    data_dir, out = prid
    cams = prid_cams(data_dir)
    path = tmp_path / 'splits.json'
    build = lambda: build_prid2011_database(str(data_dir), str(out), str(path), progress=False)  # noqa: E731
    good = json.loads((data_dir / 'splits_prid2011.json').read_text())
    path.write_text(json.dumps([{'train': s['train'], 'query': s['test']} for s in good]))
    expect_error(build, r"splits\.json: split 0 has keys \['query', 'train'\]; expected a list of 10", out)
    path.write_text(json.dumps(good[:9]))
    expect_error(build, r'splits\.json: holds a list of 9; expected a list of 10', out)
    path.write_text('{not json')
    expect_error(build, r'splits\.json: cannot read it as JSON', out)
    path.write_text(json.dumps([{'train': ['person_0001'], 'test': ['person_0201']}] * 10))
    os.rename(os.path.join(cams[1], 'person_0201'), os.path.join(cams[1], 'gone'))
    expect_error(build, rf'{cams[1]}/person_0201: directory not found, but .*splits\.json \(split 0\) needs person '
                        r'person_0201 in both cameras', out)
    path.write_text(json.dumps([{'train': ['person_0001'], 'test': ['person_0777']}] * 10))
    expect_error(build, r"split 0 names person 'person_0777', which is not a person directory", out)
    path.write_text(json.dumps([{'train': ['person_0001'], 'test': ['person_0001']}] * 10))
    expect_error(build, r"split 0 has person 'person_0001' in both train and test", out)
    os.remove(data_dir / 'splits_prid2011.json')
    os.remove(data_dir / 'train_test_splits_prid.mat')
    expect_error(lambda: build_prid2011_database(str(data_dir), str(out), progress=False),
                 r'PRID2011: no split file \(expected splits_prid2011\.json \(torchreid\) or '
                 r'train_test_splits_prid\.mat', out)


def test_cli_builds_and_errors_exit_2(prid, ilids, tmp_path, capsys):
    data_dir, out = prid
    # the scripts run as __main__ in this process (helpers.run_as_main): the exit status the process would have
    code, _, err = run_as_main(os.path.join(ROOT, 'create_PRID2011_database.py'), '--data_dir', data_dir,
                               '--output_dir', out, '--no_progress', '--splits',
                               data_dir / 'train_test_splits_prid.mat', capsys=capsys)
    assert code == 0, err
    assert sorted(os.listdir(out / 'split_9')) == DB_FILES
    ilids_dir, ilids_out = ilids
    os.remove(ilids_split_file(ilids_dir))
    code, stdout, err = run_as_main(os.path.join(ROOT, 'create_iLIDSVID_database.py'), '--data_dir', ilids_dir,
                                    '--output_dir', ilids_out, capsys=capsys)
    assert code == 2 and stdout == ''
    assert err == f"error: {ilids_split_file(ilids_dir)}: file not found (expected a (10, 6) array of 1-based " \
                  f"indices into the 6 sorted person directories of {ilids_cams(ilids_dir)[0]} with variable " \
                  f"'ls_set')\n"
    assert not ilids_out.exists()
