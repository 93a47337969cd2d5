"""Database builders: byte-compatibility with the original scripts, formats, and every consistency check."""

import io
import os
import re
import shutil

import numpy as np
import pytest
import scipy.io
from helpers import run_as_main

from util.data.datasets.common import field_numbers
from util.data.datasets.dukev import build_dukev_database, dukev_frame_numbers, parse_dukev_names
from util.data.datasets.mars import build_mars_database, parse_mars_names
from util.data.synthetic import make_dukev, make_mars
from util.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTS = ('.jpg', '.JPG', '.jpeg', '.JPEG', '.png', '.PNG', '.ppm', '.PPM', '.bmp', '.BMP')
TINY = dict(num_train_ids=3, num_test_ids=3, height=16, width=8, max_len=6)


# ----------------------------------------------------------------------------------------------------
# What the original scripts write, restated plainly (listdir, sorted, abspath, np.savetxt, np.save)
# ----------------------------------------------------------------------------------------------------

def savetxt_bytes(paths):
    buf = io.BytesIO()
    np.savetxt(buf, np.array(paths), fmt='%s', delimiter='\n')
    return buf.getvalue()


def save_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def expected_mars(data_dir, info_dir):
    out = {}
    for split in ('train', 'test'):
        d = os.path.join(data_dir, f'bbox_{split}')
        paths = [os.path.abspath(os.path.join(d, i, n)) for i in sorted(os.listdir(d))
                 for n in sorted(os.listdir(os.path.join(d, i))) if n.endswith(EXTS)]
        out[f'{split}_path.txt'] = savetxt_bytes(paths)
        info = scipy.io.loadmat(os.path.join(info_dir, f'tracks_{split}_info.mat'))[f'track_{split}_info']
        info[:, 0:2] = info[:, 0:2] - 1
        out[f'{split}_info.npy'] = save_bytes(info)
    query = scipy.io.loadmat(os.path.join(info_dir, 'query_IDX.mat'))['query_IDX']
    out['query_IDX.npy'] = save_bytes(query - 1)
    return out


def expected_dukev(data_dir):
    """The original's output, with the fixes: image files only, query matched by <id>/<tracklet>."""
    out, rows_of = {}, {}
    for split in ('train', 'gallery'):
        d = os.path.join(data_dir, split)
        paths, infos, keys = [], [], []
        for pid in sorted(os.listdir(d)):
            for track in sorted(os.listdir(os.path.join(d, pid))):
                images = [n for n in sorted(os.listdir(os.path.join(d, pid, track))) if n.endswith(EXTS)]
                cam = int(re.match(r'\d{4}_?C(\d)', images[-1]).group(1))
                infos.append([len(paths), len(paths) + len(images) - 1, int(pid), cam])
                paths += [os.path.abspath(os.path.join(d, pid, track, n)) for n in images]
                keys.append((pid, track))
        out[f'{split}_path.txt'] = savetxt_bytes(paths)
        out[f'{split}_info.npy'] = save_bytes(np.array(infos))
        rows_of = {k: r for r, k in enumerate(keys)}
    q = os.path.join(data_dir, 'query')
    query = [rows_of[(pid, t)] for pid in sorted(os.listdir(q)) for t in sorted(os.listdir(os.path.join(q, pid)))]
    out['query_IDX.npy'] = save_bytes(np.array(query))
    return out


def read_dir(d):
    return {n: open(os.path.join(d, n), 'rb').read() for n in sorted(os.listdir(d))}


# ----------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------

@pytest.fixture
def mars(tmp_path, synthetic_copy):
    """A private copy (tests damage it) and the paths the builder takes."""
    d = synthetic_copy(make_mars, tmp_path / 'MARS', seed=3, num_junk=2, num_distractors=2, **TINY)
    return d, d / 'MARS-evaluation' / 'info', tmp_path / 'out' / 'MARS_database'


@pytest.fixture(scope='module')
def dukev_src(tmp_path_factory):
    d = tmp_path_factory.mktemp('src')
    make_dukev(d / 'new', seed=4, num_distractor_ids=2, **TINY)
    make_dukev(d / 'old', seed=4, num_distractor_ids=2, old_names=True, **TINY)
    return d


@pytest.fixture
def dukev(tmp_path, dukev_src):
    d = tmp_path / 'DukeV'
    shutil.copytree(dukev_src / 'new', d)
    return d, tmp_path / 'out' / 'DukeV_database'


def build_mars(paths):
    data_dir, info_dir, out = paths
    build_mars_database(str(data_dir), str(info_dir), str(out), progress=False)


def assert_nothing_written(out):
    assert not out.exists()
    assert not [p for p in os.listdir(out.parent) if 'partial' in p] if out.parent.exists() else True


def expect_error(fn, match, out):
    with pytest.raises(DataError, match=match) as e:
        fn()
    assert '\n' not in str(e.value)
    assert_nothing_written(out)
    return str(e.value)


def edit_mat(path, key, fn):
    value = scipy.io.loadmat(path)[key]
    fn(value)
    scipy.io.savemat(path, {key: value})


# ----------------------------------------------------------------------------------------------------
# MARS
# ----------------------------------------------------------------------------------------------------

def test_mars_matches_original_byte_for_byte(mars):
    data_dir, info_dir, out = mars
    build_mars(mars)
    assert read_dir(out) == expected_mars(data_dir, info_dir)


def test_mars_formats(mars):
    data_dir, info_dir, out = mars
    build_mars(mars)
    assert sorted(os.listdir(out)) == ['query_IDX.npy', 'test_info.npy', 'test_path.txt', 'train_info.npy',
                                       'train_path.txt']
    text = (out / 'test_path.txt').read_text()
    assert text.endswith('.jpg\n') and not text.endswith('\n\n')
    paths = text.split('\n')[:-1]
    assert paths[0].startswith(str(data_dir / 'bbox_test' / '00-1' / '00-1C'))  # junk sorts first
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in paths)
    assert paths == sorted(paths)  # same-length names: directory-then-name order is plain sorted order

    info = np.load(out / 'test_info.npy')
    assert info.dtype == np.int32 and info.shape[1] == 4 and info.flags.f_contiguous  # as loadmat gives
    assert info[0, 0] == 0 and info[-1, 1] == len(paths) - 1  # 0-based, inclusive
    assert (info[1:, 0] == info[:-1, 1] + 1).all()
    names = [os.path.basename(p) for p in paths]
    for start, end, pid, cam in info:
        for n in names[start:end + 1]:
            assert n[:4] == ('00-1' if pid == -1 else f'{pid:04d}') and n[5] == str(cam)
    assert {-1, 0} <= set(info[:, 2].tolist())

    query = np.load(out / 'query_IDX.npy')
    raw = scipy.io.loadmat(info_dir / 'query_IDX.mat')['query_IDX']
    assert query.dtype == np.uint16 and query.shape == raw.shape == (1, query.size)
    assert (query == raw - 1).all() and query.max() < len(info)


def test_parse_mars_names():
    pid, cam, ok = parse_mars_names(['0001C1T0001F001.jpg', '00-1C6T0012F123.jpg', '0000C2T0001F001.jpg',
                                     '1234C3T0001F1000.png', '0001C1F0001T001.jpg', 'x.jpg'])
    assert pid[:4].tolist() == [1, -1, 0, 1234] and cam[:4].tolist() == [1, 6, 2, 3]
    assert ok.tolist() == [True, True, True, True, False, False]


def test_mars_wrong_pid_in_row(mars):
    data_dir, info_dir, out = mars
    edit_mat(info_dir / 'tracks_train_info.mat', 'track_train_info', lambda a: a.__setitem__((1, 2), 999))
    msg = expect_error(lambda: build_mars(mars), r'tracks_train_info\.mat row 2 \[start, end, pid, cam\]', out)
    assert 'whose name says pid' in msg and 'bbox_train' in msg and '999' in msg


def test_mars_wrong_cam_in_row(mars):
    data_dir, info_dir, out = mars
    info = scipy.io.loadmat(info_dir / 'tracks_test_info.mat')['track_test_info']
    r = len(info) - 1
    edit_mat(info_dir / 'tracks_test_info.mat', 'track_test_info', lambda a: a.__setitem__((r, 3), a[r, 3] % 6 + 1))
    msg = expect_error(lambda: build_mars(mars), rf'tracks_test_info\.mat row {r + 1} ', out)
    assert f'camera {info[r, 3]}' in msg and f'F{1:03d}.jpg' in msg  # the row's first frame


def test_mars_wrong_pid_in_name(mars):
    data_dir, info_dir, out = mars
    d = data_dir / 'bbox_train'
    ids = sorted(os.listdir(d))
    frame = sorted(os.listdir(d / ids[0]))[-1]
    # The frame keeps its place in the sorted list but now names another identity.
    os.rename(d / ids[0] / frame, d / ids[0] / (ids[1] + frame[4:]))
    expect_error(lambda: build_mars(mars), rf'{ids[0]}/{ids[1]}C.*: frame of another identity', out)


def test_mars_row_gap_and_overlap(mars):
    data_dir, info_dir, out = mars
    path = info_dir / 'tracks_train_info.mat'
    original = path.read_bytes()
    edit_mat(path, 'track_train_info', lambda a: a.__setitem__((2, 0), a[2, 0] + 1))
    expect_error(lambda: build_mars(mars), r'tracks_train_info\.mat rows 2-3: row 3 starts at frame \d+ but row 2 '
                                           r'ends at frame \d+ \(a gap before row 3', out)
    path.write_bytes(original)
    edit_mat(path, 'track_train_info', lambda a: a.__setitem__((1, 1), a[1, 1] + 1))
    expect_error(lambda: build_mars(mars), r'rows 2-3: .*\(an overlap with row 3', out)


def test_mars_rows_must_cover_every_frame(mars):
    data_dir, info_dir, out = mars
    d = data_dir / 'bbox_train'
    last = sorted(os.listdir(d))[-1]
    frames = sorted(os.listdir(d / last))
    os.remove(d / last / frames[-1])
    msg = expect_error(lambda: build_mars(mars),
                       rf'bbox_train/{last}: tracklet {frames[-1][:11]} has \d+ frames but '
                       r'.*tracks_train_info\.mat row \d+ .* covers \d+: a frame is missing', out)
    assert f'to {frames[-2]}, followed by the end of' in msg


def test_mars_missing_or_extra_frame_names_the_directory_and_the_frames_around(mars):
    data_dir, info_dir, out = mars
    d = data_dir / 'bbox_train'
    info = scipy.io.loadmat(info_dir / 'tracks_train_info.mat')['track_train_info']
    r = int(np.argmax(info[:, 1] - info[:, 0] >= 3))  # a tracklet of 4 frames or more
    names = [n for i in sorted(os.listdir(d)) for n in sorted(os.listdir(d / i))]
    first = names[info[r, 0] - 1]
    pid_dir = d / first[:4]
    os.remove(pid_dir / names[info[r, 0]])  # its second frame
    msg = expect_error(lambda: build_mars(mars), rf'{pid_dir}: tracklet {first[:11]} has {info[r, 1] - info[r, 0]} '
                                                 rf'frames but .*row {r + 1} .* covers {info[r, 1] - info[r, 0] + 1}: '
                                                 rf'a frame is missing', out)
    assert f'frame numbers jump from {first} to {names[info[r, 0] + 1]}' in msg
    shutil.copy(pid_dir / first, pid_dir / names[info[r, 0]])  # back, then one frame too many
    extra = first[:12] + '999.jpg'
    shutil.copy(pid_dir / first, pid_dir / extra)
    last = names[info[r, 1] - 1]
    msg = expect_error(lambda: build_mars(mars), rf'{pid_dir}: tracklet {first[:11]} has .*a frame is extra', out)
    assert f'frame numbers jump from {last} to {extra}' in msg


def test_mars_start_after_end(mars):
    data_dir, info_dir, out = mars
    edit_mat(info_dir / 'tracks_test_info.mat', 'track_test_info', lambda a: a.__setitem__((0, 0), a[0, 1] + 1))
    expect_error(lambda: build_mars(mars), r'tracks_test_info\.mat row 1 .*: start is after end', out)


def test_mars_query_out_of_range(mars):
    data_dir, info_dir, out = mars
    n = len(scipy.io.loadmat(info_dir / 'tracks_test_info.mat')['track_test_info'])
    edit_mat(info_dir / 'query_IDX.mat', 'query_IDX', lambda a: a.__setitem__((0, 1), n + 1))
    expect_error(lambda: build_mars(mars), rf'query_IDX\.mat: entry 2 is {n + 1}, but .*tracks_test_info\.mat has '
                                           rf'{n} rows \(expected 1-based row numbers 1\.\.{n}\)', out)
    edit_mat(info_dir / 'query_IDX.mat', 'query_IDX', lambda a: a.__setitem__((0, 1), 0))
    expect_error(lambda: build_mars(mars), r'entry 2 is 0', out)


def test_mars_missing_key(mars):
    data_dir, info_dir, out = mars
    scipy.io.savemat(info_dir / 'tracks_train_info.mat', {'foo': np.zeros((2, 4), np.int32)})
    expect_error(lambda: build_mars(mars), r"tracks_train_info\.mat: no variable 'track_train_info' \(found: foo\); "
                                           r"expected a \(N, 4\) array", out)


def test_mars_bad_mat_files(mars):
    data_dir, info_dir, out = mars
    os.remove(info_dir / 'query_IDX.mat')
    expect_error(lambda: build_mars(mars), r"query_IDX\.mat: file not found \(expected .* variable 'query_IDX'\)", out)
    scipy.io.savemat(info_dir / 'tracks_test_info.mat', {'track_test_info': np.zeros((2, 3), np.int32)})
    expect_error(lambda: build_mars(mars), r"variable 'track_test_info' has shape \(2, 3\); expected a \(N, 4\)", out)
    (info_dir / 'tracks_test_info.mat').write_bytes(b'not a mat file')
    expect_error(lambda: build_mars(mars), r'tracks_test_info\.mat: cannot read it as a MATLAB \.mat file', out)


def test_mars_empty_identity_dir(mars):
    data_dir, info_dir, out = mars
    os.mkdir(data_dir / 'bbox_test' / '9999')
    expect_error(lambda: build_mars(mars), r'bbox_test/9999: empty directory \(expected frame images', out)


def test_mars_non_image_file(mars):
    data_dir, info_dir, out = mars
    d = data_dir / 'bbox_train' / sorted(os.listdir(data_dir / 'bbox_train'))[0]
    (d / 'notes.txt').write_text('x')
    expect_error(lambda: build_mars(mars), rf'{d}/notes\.txt: not an image file \(expected only', out)
    os.remove(d / 'notes.txt')
    (data_dir / 'bbox_train' / 'readme.txt').write_text('x')
    expect_error(lambda: build_mars(mars), r'bbox_train/readme\.txt: not a directory \(expected only one directory '
                                           r'per identity', out)


def test_mars_missing_dirs(mars):
    data_dir, info_dir, out = mars
    shutil.rmtree(data_dir / 'bbox_test')
    expect_error(lambda: build_mars(mars), r'bbox_test: directory not found \(expected the MARS test frames', out)
    expect_error(lambda: build_mars_database(str(data_dir / 'nope'), str(info_dir), str(out), progress=False),
                 r'nope: directory not found', out)
    expect_error(lambda: build_mars_database(str(data_dir), str(data_dir / 'nope'), str(out), progress=False),
                 r'nope: directory not found \(expected MARS-evaluation/info', out)


def test_mars_not_a_mars_name(mars):
    data_dir, info_dir, out = mars
    d = data_dir / 'bbox_train' / sorted(os.listdir(data_dir / 'bbox_train'))[0]
    frame = sorted(os.listdir(d))[0]
    os.rename(d / frame, d / (frame[:4] + 'X' + frame[5:]))
    expect_error(lambda: build_mars(mars), r'not a MARS frame name \(expected <pid:4>C<cam>T<tracklet:4>F<frame>', out)


def test_output_dir_is_replaced_as_a_whole_keeping_other_files(mars):
    data_dir, info_dir, out = mars
    out.mkdir(parents=True)
    (out / 'train_path.txt').write_text('stale\n')
    (out / 'mine.txt').write_text('keep me\n')
    build_mars(mars)
    assert (out / 'mine.txt').read_text() == 'keep me\n'
    assert {n: v for n, v in read_dir(out).items() if n != 'mine.txt'} == expected_mars(data_dir, info_dir)
    assert os.listdir(out.parent) == ['MARS_database']  # no temporary directory left


def _fail_on_call(monkeypatch, module, name, k, error=None):
    """Make module.name raise on its k-th call (1-based)."""
    real, calls = getattr(module, name), []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == k:
            raise OSError(28, 'No space left on device') if error is None else error
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize('where', ['write', 'swap', 'interrupt'])
def test_a_failed_rebuild_leaves_the_old_database_complete(mars, monkeypatch, where):
    data_dir, info_dir, out = mars
    build_mars(mars)
    (out / 'mine.txt').write_text('keep me\n')
    before = read_dir(out)
    # The rebuild reads a copy elsewhere: every path differs, so a mix of the two databases would show.
    copy = data_dir.parent / 'MARS_copy'
    shutil.copytree(data_dir, copy)
    import util.data.datasets.common as common
    if where == 'write':  # the disk fills up at the third file
        _fail_on_call(monkeypatch, common.np, 'save', 2)
    elif where == 'swap':  # the rename of the new directory into place fails
        _fail_on_call(monkeypatch, common.os, 'rename', 2)
    else:  # Ctrl-C while writing
        _fail_on_call(monkeypatch, common.np, 'save', 1, KeyboardInterrupt())
    expected = KeyboardInterrupt if where == 'interrupt' else DataError
    with pytest.raises(expected) as e:
        build_mars((copy, copy / 'MARS-evaluation' / 'info', out))
    if expected is DataError:
        assert re.fullmatch(rf'{out}: cannot write the database \(No space left on device\)', str(e.value))
    assert read_dir(out) == before
    assert sorted(os.listdir(out.parent)) == ['MARS_database']
    monkeypatch.undo()
    build_mars((copy, copy / 'MARS-evaluation' / 'info', out))
    assert read_dir(out)['test_path.txt'] != before['test_path.txt']


def test_output_dir_is_a_file(mars):
    data_dir, info_dir, out = mars
    out.parent.mkdir(parents=True)
    out.write_text('x')
    with pytest.raises(DataError, match='exists and is not a directory'):
        build_mars(mars)


# ----------------------------------------------------------------------------------------------------
# DukeV
# ----------------------------------------------------------------------------------------------------

def test_dukev_matches_original_byte_for_byte(dukev):
    data_dir, out = dukev
    build_dukev_database(str(data_dir), str(out), progress=False)
    assert read_dir(out) == expected_dukev(data_dir)


def test_dukev_formats(dukev):
    data_dir, out = dukev
    build_dukev_database(str(data_dir), str(out), progress=False)
    info = np.load(out / 'gallery_info.npy')
    query = np.load(out / 'query_IDX.npy')
    paths = (out / 'gallery_path.txt').read_text().split('\n')[:-1]
    assert info.dtype == np.int64 and info.shape[1] == 4 and info.flags.c_contiguous
    assert query.dtype == np.int64 and query.ndim == 1
    assert info[0, 0] == 0 and info[-1, 1] == len(paths) - 1 and (info[1:, 0] == info[:-1, 1] + 1).all()
    queries = sorted(os.path.join(p, t) for p in os.listdir(data_dir / 'query')
                     for t in os.listdir(data_dir / 'query' / p))
    assert len(query) == len(queries)
    for q, r in zip(queries, query):  # each query row is the gallery tracklet of the same <id>/<tracklet>
        assert os.path.dirname(paths[info[r, 0]]).endswith('gallery/' + q)


def test_dukev_both_namings_give_the_same_database(dukev_src, tmp_path):
    for style in ('new', 'old'):
        build_dukev_database(str(dukev_src / style), str(tmp_path / style), progress=False)
    new, old = read_dir(tmp_path / 'new'), read_dir(tmp_path / 'old')
    for name in ('train_info.npy', 'gallery_info.npy', 'query_IDX.npy'):
        assert new[name] == old[name]
    for name in ('train_path.txt', 'gallery_path.txt'):
        a, b = new[name].decode().split('\n'), old[name].decode().split('\n')
        assert [p.replace('/new/', '/').replace('_', '') for p in a] == \
               [p.replace('/old/', '/').replace('_', '') for p in b]
    assert '_C' in new['train_path.txt'].decode() and '_C' not in old['train_path.txt'].decode()


def test_dukev_frames_in_frame_number_order_whatever_the_name_style(dukev):
    data_dir, out = dukev
    t = _first_track(data_dir / 'train')
    frames = sorted(os.listdir(t))
    assert len(frames) >= 3
    for name in frames[::2]:  # every other frame renamed to the old style: as text, those sort first
        os.rename(t / name, t / name.replace('_', ''))
    build_dukev_database(str(data_dir), str(out), progress=False)
    paths = (out / 'train_path.txt').read_text().split('\n')
    listed = [os.path.basename(p) for p in paths if os.path.dirname(p) == str(t)]
    assert [n.replace('_', '') for n in listed] == [n.replace('_', '') for n in frames]
    assert sorted(listed) != listed  # the text order would have been wrong
    info = np.load(out / 'train_info.npy')
    assert info[0].tolist() == [0, len(frames) - 1, int(t.parent.name), int(frames[0][6])]


def test_parse_dukev_names():
    names = ['0001_C6_F0099_X30823.jpg', '0012C3F0101X00001.jpg', '0001_C6F0099_X3.jpg']
    pid, cam, ok = parse_dukev_names(names)
    assert pid[:2].tolist() == [1, 12] and cam[:2].tolist() == [6, 3] and ok.tolist() == [True, True, False]
    assert dukev_frame_numbers(names)[:2].tolist() == [99, 101]


def _first_track(root):
    pid = sorted(os.listdir(root))[0]
    track = sorted(os.listdir(root / pid))[0]
    return root / pid / track


def test_dukev_query_missing_from_gallery(dukev):
    data_dir, out = dukev
    q = _first_track(data_dir / 'query')
    shutil.rmtree(data_dir / 'gallery' / q.parent.name / q.name)
    expect_error(lambda: build_dukev_database(str(data_dir), str(out), progress=False),
                 rf'query/{q.parent.name}/{q.name}: query tracklet not found in gallery \(expected .*gallery/'
                 rf'{q.parent.name}/{q.name}; 1 query tracklet\(s\) missing\)', out)


def test_dukev_mixed_cameras_in_a_tracklet(dukev):
    data_dir, out = dukev
    t = _first_track(data_dir / 'train')
    last = sorted(os.listdir(t))[-1]
    cam = last[6]
    os.rename(t / last, t / (last[:6] + str(int(cam) % 8 + 1) + last[7:]))
    expect_error(lambda: build_dukev_database(str(data_dir), str(out), progress=False),
                 rf'_C{int(cam) % 8 + 1}_.*: camera {int(cam) % 8 + 1} differs from camera {cam} of the first frame',
                 out)


def test_dukev_pid_differs_from_directory(dukev):
    data_dir, out = dukev
    t = _first_track(data_dir / 'gallery')
    last = sorted(os.listdir(t))[-1]
    os.rename(t / last, t / ('9999' + last[4:]))
    expect_error(lambda: build_dukev_database(str(data_dir), str(out), progress=False),
                 r'9999_C.*: the name says pid 9999 but the frame is in identity directory', out)


def test_dukev_bad_inputs(dukev):
    data_dir, out = dukev
    t = _first_track(data_dir / 'train')
    (t / 'notes.txt').write_bytes(b'')
    expect_error(lambda: build_dukev_database(str(data_dir), str(out), progress=False),
                 r'notes\.txt: not an image file', out)
    os.remove(t / 'notes.txt')
    frame = sorted(os.listdir(t))[0]
    os.rename(t / frame, t / ('a' + frame))
    expect_error(lambda: build_dukev_database(str(data_dir), str(out), progress=False), r'not a DukeV frame name', out)
    os.rename(t / ('a' + frame), t / frame)
    os.mkdir(data_dir / 'gallery' / '9998')
    expect_error(lambda: build_dukev_database(str(data_dir), str(out), progress=False),
                 r'gallery/9998: empty directory \(expected one directory per tracklet', out)
    shutil.rmtree(data_dir / 'query')
    expect_error(lambda: build_dukev_database(str(data_dir), str(out), progress=False),
                 r'query: directory not found \(expected the DukeV query split', out)


def test_dukev_counts_image_files_only(tmp_path):
    # A tracklet directory with only an image is fine; the rows count images (the original counted every file).
    root = tmp_path / 'D'
    for split in ('train', 'query', 'gallery'):
        d = root / split / '0001' / '0001'
        d.mkdir(parents=True)
        for i in range(3):
            (d / f'0001_C2_F{i + 1:04d}_X{i:05d}.jpg').write_bytes(b'')
    build_dukev_database(str(root), str(tmp_path / 'out'), progress=False)
    assert np.load(tmp_path / 'out' / 'train_info.npy').tolist() == [[0, 2, 1, 2]]
    assert np.load(tmp_path / 'out' / 'query_IDX.npy').tolist() == [0]


# ----------------------------------------------------------------------------------------------------
# Command lines
# ----------------------------------------------------------------------------------------------------

def test_cli_errors_exit_2(tmp_path, capsys):
    # the scripts run as __main__ in this process (helpers.run_as_main): the exit status the process would have
    code, out, err = run_as_main(os.path.join(ROOT, 'create_MARS_database.py'), '--data_dir', tmp_path / 'missing',
                                 '--info_dir', tmp_path, '--output_dir', tmp_path / 'out', capsys=capsys)
    assert code == 2 and out == ''
    assert err == f'error: {tmp_path / "missing"}: directory not found (expected the MARS directory holding ' \
                  f'bbox_train and bbox_test)\n'
    code, out, err = run_as_main(os.path.join(ROOT, 'create_DukeV_database.py'), '--data_dir', tmp_path,
                                 '--output_dir', tmp_path / 'out', capsys=capsys)
    assert code == 2 and err.startswith(f'error: {tmp_path / "train"}: directory not found')
    assert err.count('\n') == 1
    assert not (tmp_path / 'out').exists()


def test_cli_builds(mars, capsys):
    data_dir, info_dir, out = mars
    code, _, err = run_as_main(os.path.join(ROOT, 'create_MARS_database.py'), '--data_dir', data_dir,
                               '--info_dir', info_dir, '--output_dir', out, '--no_progress', capsys=capsys)
    assert code == 0, err
    assert read_dir(out) == expected_mars(data_dir, info_dir)


def test_field_numbers_equal_a_plain_split():
    # Column-wise parsing of same-layout names and the one-by-one path against str.split, on random names.
    rng = np.random.default_rng(0)
    alphabet = np.array(list('0123456789_._a'))
    names = [''.join(rng.choice(alphabet, rng.integers(1, 10))) for _ in range(5000)]
    names += [f'{k:05d}_{f:03d}_{c:02d}_0001.jpg' for k in range(3) for f in (9, 99, 100) for c in (1, 15)]
    for fields in ((-1, 0), (1, 2, -2)):
        values, ok = field_numbers(names, fields)
        for j, field in enumerate(fields):
            for name, v, good in zip(names, values[:, j], ok[:, j]):
                parts = (name.rpartition('.')[0] if '.' in name else name).split('_')
                text = parts[field] if -len(parts) <= field < len(parts) else ''
                assert good == text.isdigit() and v == (int(text) if good else 0), (name, field)
    assert field_numbers(['cam1_person001_00317.png', 'x_1x.png'], -1)[0].tolist() == [317, 0]
