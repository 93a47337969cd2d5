"""MARS (Zheng et al., ECCV 2016): bbox_train/, bbox_test/ and the MARS-evaluation info files.

Writes, byte for byte what the original release's ``create_MARS_database.py`` writes for well-formed input:

    train_path.txt, test_path.txt   absolute frame paths, one per line (each line ends with a newline),
                                    identity directories sorted by name, frames sorted by name inside each
    train_info.npy, test_info.npy   the MARS-evaluation info arrays with start/end made 0-based; dtype,
                                    memory order (MATLAB files load column-major) and pid/cam as loaded
    query_IDX.npy                   query rows made 0-based; dtype and shape as loaded (uint16, (1, Q))

Beyond the original, every info row is checked against the names of the frames it covers: a missing or
extra frame is reported with its identity directory and the frames around the mismatch.
"""

import os

import numpy as np

from util.data.datasets.common import (
    FrameList,
    codes,
    field_numbers,
    has,
    is_digit,
    list_frames,
    list_subdirs,
    load_mat,
    number,
    replacing_directory,
    write_files,
)
from util.data.datasets.common import progress as progress_bar
from util.errors import DataError


def parse_mars_names(names):
    """pid, cam and a well-formedness mask of MARS frame names `<pid:4>C<cam>T<tracklet:4>F<frame>...`.

    pid '00-1' (junk) reads as -1. Vectorised over all frames: (N,) int64, (N,) int64, (N,) bool.
    """
    c = codes(names, 12)
    junk = has(c, 0, '0') & has(c, 1, '0') & has(c, 2, '-') & has(c, 3, '1')
    pid_ok = is_digit(c[:, 0:4]).all(1) | junk
    ok = (pid_ok & has(c, 4, 'C') & is_digit(c[:, 5]) & has(c, 6, 'T')
          & is_digit(c[:, 7:11]).all(1) & has(c, 11, 'F'))
    pid = np.where(junk, -1, number(np.clip(c[:, 0:4], ord('0'), ord('9'))))
    cam = c[:, 5] - ord('0')
    return pid, cam, ok


def _load_info(path, key):
    what = 'a (N, 4) array of tracklet rows [start, end, pid, cam]'
    info = load_mat(path, key, what)
    if info.ndim != 2 or info.shape[1] != 4:
        raise DataError(f'{path}: variable {key!r} has shape {info.shape}; expected {what}')
    return info


def _row_text(info_file, info, r):
    return f'{info_file} row {r + 1} [start, end, pid, cam] = {info[r].tolist()}'


def check_mars_info(info, frames, info_file, split):
    """Check 1-based MARS info rows against the frames of a split; DataError names the first bad row.

    The rows must tile the frame list in order (first starts at 1, each starts right after the previous
    ends, the last ends at the last frame) and every frame name must carry the row's pid and camera.
    """
    info = info.astype(np.int64)
    start, end = info[:, 0], info[:, 1]
    n = len(frames)
    bad = np.flatnonzero(start > end)
    if bad.size:
        raise DataError(f'{_row_text(info_file, info, bad[0])}: start is after end')
    if start[0] != 1:
        raise DataError(f'{_row_text(info_file, info, 0)}: the first row must start at frame 1 '
                        f'(rows tile the {n} frames of {split} in order)')
    bad = np.flatnonzero(start[1:] != end[:-1] + 1)
    if bad.size:
        r = bad[0]
        what = 'a gap before' if start[r + 1] > end[r] + 1 else 'an overlap with'
        raise DataError(f'{info_file} rows {r + 1}-{r + 2}: row {r + 2} starts at frame {start[r + 1]} '
                        f'but row {r + 1} ends at frame {end[r]} ({what} row {r + 2}; rows must tile '
                        f'the {n} frames of {split} in order)')

    pid, cam, ok = parse_mars_names(frames.names)
    if not ok.all():
        i = int(np.argmin(ok))
        raise DataError(f'{frames.path(i)}: not a MARS frame name (expected '
                        f'<pid:4>C<cam>T<tracklet:4>F<frame>, e.g. 0001C1T0001F001.jpg)')
    # The identity directory holds its own frames only.
    dir_prefix = codes([os.path.basename(d) for d in frames.dirs], 4)
    wrong_dir = (np.repeat(dir_prefix, frames.counts, axis=0) != codes(frames.names, 4)).any(1)
    if wrong_dir.any():
        i = int(np.argmax(wrong_dir))
        raise DataError(f'{frames.path(i)}: frame of another identity (its name does not start with the '
                        f'name of its directory)')
    lengths = end - start + 1
    mismatch = None
    if end[-1] == n:
        mismatch = (np.repeat(info[:, 2], lengths) != pid) | (np.repeat(info[:, 3], lengths) != cam)
        if not mismatch.any():
            return
    _explain_frame_mismatch(info, frames, info_file, split)  # a missing or extra frame, if that is what it is
    if mismatch is None:
        raise DataError(f'{_row_text(info_file, info, len(info) - 1)}: the last row must end at frame '
                        f'{n}, the number of frames in {split}')
    i = int(np.argmax(mismatch))
    r = int(np.searchsorted(end, i + 1))
    raise DataError(f'{_row_text(info_file, info, r)} covers frame {i + 1} {frames.path(i)}, '
                    f'whose name says pid {pid[i]}, camera {cam[i]}')


def _explain_frame_mismatch(info, frames, info_file, split):
    """Raise for the first row whose frames differ from its tracklet's as the frame names give them
    (runs of one <pid>C<cam>T<tracklet>): name the identity directory and the frames around the mismatch."""
    names = frames.names
    key = codes(names, 11)
    cut = np.flatnonzero((key[1:] != key[:-1]).any(1)) + 1
    run_start, run_end = np.r_[0, cut], np.r_[cut, len(names)] - 1  # 0-based inclusive
    row_start, row_end = info[:, 0] - 1, info[:, 1] - 1
    k = min(len(info), len(run_start))
    differ = np.flatnonzero((row_start[:k] != run_start[:k]) | (row_end[:k] != run_end[:k]))
    r = int(differ[0]) if differ.size else k
    if r >= len(run_start):  # every tracklet of the names has its row: not a frame-count problem
        return
    a, b = int(run_start[r]), int(run_end[r])
    where = frames.dirs[frames.group(a)]
    if r >= len(info):
        raise DataError(f'{where}: frames {names[a]} .. {names[b]} are covered by no row of {info_file} '
                        f'(its {len(info)} rows end at frame {row_end[-1] + 1} of {split}): extra frames?')
    covered = int(row_end[r] - row_start[r] + 1)
    frame_no, _ = field_numbers(names[a:b + 1], -1, sep='F')
    jump = np.flatnonzero(np.diff(frame_no) != 1)
    if jump.size:
        j = a + int(jump[0])
        around = f'frame numbers jump from {names[j]} to {names[j + 1]}'
    else:
        after = names[b + 1] if b + 1 < len(names) else f'the end of {split}'
        around = f'its frames run from {names[a]} to {names[b]}, followed by {after}'
    missing = 'missing' if b - a + 1 < covered else 'extra'
    raise DataError(f'{where}: tracklet {names[a][:11]} has {b - a + 1} frames but '
                    f'{_row_text(info_file, info, r)} covers {covered}: a frame is {missing} ({around})')


def check_query_idx(query_idx, num_rows, query_file, info_file):
    """1-based query rows must index the test info rows."""
    q = query_idx.reshape(-1).astype(np.int64)
    bad = np.flatnonzero((q < 1) | (q > num_rows))
    if bad.size:
        k = bad[0]
        raise DataError(f'{query_file}: entry {k + 1} is {q[k]}, but {info_file} has {num_rows} rows '
                        f'(expected 1-based row numbers 1..{num_rows})')


def scan_mars_split(split_dir, progress=True):
    """List the frames of bbox_train or bbox_test: identity directories, then image files, both sorted."""
    ids = list_subdirs(split_dir, 'one directory per identity, e.g. 0001, 00-1', skip_hidden=True)
    frames = FrameList()
    root = os.path.abspath(split_dir)
    for name in progress_bar(ids, f'scanning {os.path.basename(root)}', progress):
        d = os.path.join(root, name)
        frames.add(d, list_frames(d, skip_hidden=True))
    return frames


def build_mars_database(data_dir, info_dir, output_dir, progress=True):
    """Write MARS_database files for `data_dir` (bbox_train, bbox_test) and `info_dir` (MARS-evaluation)."""
    info_files = {k: os.path.join(info_dir, f) for k, f in
                  [('train', 'tracks_train_info.mat'), ('test', 'tracks_test_info.mat'), ('query', 'query_IDX.mat')]}
    split_dirs = {s: os.path.join(data_dir, f'bbox_{s}') for s in ('train', 'test')}
    # Cheap checks first, so that a typo does not cost a full scan.
    if not os.path.isdir(data_dir):
        raise DataError(f'{data_dir}: directory not found (expected the MARS directory holding '
                        f'bbox_train and bbox_test)')
    if not os.path.isdir(info_dir):
        raise DataError(f'{info_dir}: directory not found (expected MARS-evaluation/info holding '
                        f'tracks_train_info.mat, tracks_test_info.mat and query_IDX.mat)')
    for s, d in split_dirs.items():
        if not os.path.isdir(d):
            raise DataError(f'{d}: directory not found (expected the MARS {s} frames, one directory '
                            f'per identity)')
    # created now: an unwritable place fails before the scan
    with replacing_directory(output_dir, inputs=(data_dir, info_dir)) as root:
        train_info = _load_info(info_files['train'], 'track_train_info')
        test_info = _load_info(info_files['test'], 'track_test_info')
        query_idx = load_mat(info_files['query'], 'query_IDX', 'a (1, Q) array of 1-based test info rows')
        check_query_idx(query_idx, len(test_info), info_files['query'], info_files['test'])

        out = {}
        for split, info in (('train', train_info), ('test', test_info)):
            frames = scan_mars_split(split_dirs[split], progress)
            check_mars_info(info, frames, info_files[split], split_dirs[split])
            # In place, as the original: dtype and (column-major) memory order stay as loaded.
            info[:, 0:2] -= 1
            out[f'{split}_path.txt'] = frames.path_text()
            out[f'{split}_info.npy'] = info
        out['query_IDX.npy'] = query_idx - 1
        write_files(root, out)


