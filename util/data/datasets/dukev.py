"""DukeMTMC-VideoReID (Wu et al., CVPR 2018): train/, query/, gallery/ as <pid>/<tracklet>/<frames>.

Writes what the original release's ``creat_DukeV_database.py`` writes, with its defects fixed:

    train_path.txt, gallery_path.txt   absolute frame paths, <id>/<tracklet> directories sorted by name,
                                       frames in frame-number order (the F field; either name style)
    train_info.npy, gallery_info.npy   int64 rows [start, end, pid, cam], 0-based inclusive, one per
                                       tracklet directory; pid from the directory, cam from the frame names
    query_IDX.npy                      int64 (Q,): gallery rows of the query tracklets, matched by their
                                       <id>/<tracklet> directory names

Frame names are ``0001_C6_F0099_X30823.jpg`` or, in older copies, ``0001C6F0099X30823.jpg``; both may be
mixed in one tracklet. Only image files are counted (the original counted every file).
"""

import os

import numpy as np

from util.data.datasets.common import (
    FrameList,
    check_unique_frames,
    codes,
    frame_order,
    has,
    is_digit,
    list_frames,
    list_subdirs,
    number,
    replacing_directory,
    write_files,
)
from util.data.datasets.common import progress as progress_bar
from util.errors import DataError


def parse_dukev_names(names):
    """pid, cam and a well-formedness mask of DukeV frame names, either style.

    New: `0001_C6_F0099_X30823.jpg`; old copies: `0001C6F0099X30823.jpg`. (N,) int64, (N,) int64, (N,) bool.
    """
    c, new, old = _name_styles(names)
    pid = number(np.clip(c[:, 0:4], ord('0'), ord('9')))
    cam = np.where(new, c[:, 6], c[:, 5]) - ord('0')
    return pid, cam, new | old


def dukev_frame_numbers(names):
    """(N,) int64 frame numbers (the F field) of DukeV frame names, either style (0 where neither)."""
    c, new, _ = _name_styles(names)
    return np.where(new, number(np.clip(c[:, 9:13], ord('0'), ord('9'))),
                    number(np.clip(c[:, 7:11], ord('0'), ord('9'))))


def _name_styles(names):
    c = codes(names, 15)
    new = (is_digit(c[:, 0:4]).all(1) & has(c, 4, '_') & has(c, 5, 'C') & is_digit(c[:, 6])
           & has(c, 7, '_') & has(c, 8, 'F') & is_digit(c[:, 9:13]).all(1) & has(c, 13, '_')
           & has(c, 14, 'X'))
    old = (is_digit(c[:, 0:4]).all(1) & has(c, 4, 'C') & is_digit(c[:, 5]) & has(c, 6, 'F')
           & is_digit(c[:, 7:11]).all(1) & has(c, 11, 'X'))
    return c, new, old


def scan_dukev_split(split_dir, progress=True):
    """List <id>/<tracklet>/<frame> of a DukeV split; returns (frames, keys, info int64 (T, 4)).

    keys[t] = (id directory, tracklet directory) of row t. Frames of a tracklet are put in frame-number
    order, which for one name style is name order.
    """
    listed = FrameList()
    keys, pids = [], []
    root = os.path.abspath(split_dir)
    for pid_name in progress_bar(list_subdirs(split_dir, 'one directory per identity, e.g. 0001', skip_hidden=True),
                                 f'scanning {os.path.basename(root)}', progress):
        id_dir = os.path.join(root, pid_name)
        if not pid_name.isdigit():
            raise DataError(f'{id_dir}: identity directory name is not a number (expected e.g. 0001)')
        for track in list_subdirs(id_dir, 'one directory per tracklet, e.g. 0001', skip_hidden=True):
            d = os.path.join(id_dir, track)
            listed.add(d, list_frames(d, skip_hidden=True))
            keys.append((pid_name, track))
            pids.append(int(pid_name))

    counts = np.asarray(listed.counts, np.int64)
    end = np.cumsum(counts) - 1
    start = end - counts + 1
    pid, cam, ok = parse_dukev_names(listed.names)
    if not ok.all():
        i = int(np.argmin(ok))
        raise DataError(f'{listed.path(i)}: not a DukeV frame name (expected <pid:4>_C<cam>_F<frame:4>_X<n> '
                        f'or <pid:4>C<cam>F<frame:4>X<n>, e.g. 0001_C6_F0099_X30823.jpg)')
    frames = listed
    numbers = dukev_frame_numbers(listed.names)
    order = frame_order(numbers, counts)
    if order is not None:  # mixed name styles: old ones sort first as text
        frames, names = FrameList(), np.asarray(listed.names, dtype=object)[order]
        for d, s, e in zip(listed.dirs, start, end):
            frames.add(d, list(names[s:e + 1]))
        pid, cam, numbers = pid[order], cam[order], numbers[order]
    check_unique_frames(numbers, counts, frames.path)
    bad = pid != np.repeat(np.asarray(pids, np.int64), counts)
    if bad.any():
        i = int(np.argmax(bad))
        id_dir = os.path.dirname(frames.dirs[frames.group(i)])
        raise DataError(f'{frames.path(i)}: the name says pid {pid[i]} but the frame is in identity '
                        f'directory {id_dir}')
    # A tracklet comes from one camera: every frame must agree with the first.
    bad = cam != np.repeat(cam[start], counts)
    if bad.any():
        i = int(np.argmax(bad))
        t = int(np.searchsorted(end, i))
        raise DataError(f'{frames.path(i)}: camera {cam[i]} differs from camera {cam[start[t]]} of the '
                        f'first frame of its tracklet {frames.path(int(start[t]))}')
    info = np.stack([start, end, np.asarray(pids, np.int64), cam[end]], axis=1)
    return frames, keys, info


def _query_keys(query_dir):
    keys = []
    for pid_name in list_subdirs(query_dir, 'one directory per identity, e.g. 0001', skip_hidden=True):
        tracks = list_subdirs(os.path.join(query_dir, pid_name), 'one directory per tracklet, e.g. 0001',
                              skip_hidden=True)
        keys.extend((pid_name, t) for t in tracks)
    return keys


def build_dukev_database(data_dir, output_dir, progress=True):
    """Write DukeV_database files for `data_dir` holding train, query and gallery."""
    if not os.path.isdir(data_dir):
        raise DataError(f'{data_dir}: directory not found (expected the DukeMTMC-VideoReID directory '
                        f'holding train, query and gallery)')
    split_dirs = {s: os.path.join(data_dir, s) for s in ('train', 'query', 'gallery')}
    for s, d in split_dirs.items():
        if not os.path.isdir(d):
            raise DataError(f'{d}: directory not found (expected the DukeV {s} split, '
                            f'<id>/<tracklet>/<frames>)')
    # created now: an unwritable place fails before the scan
    with replacing_directory(output_dir, inputs=(data_dir,)) as root:
        query_keys = _query_keys(split_dirs['query'])
        out = {}
        frames, _, info = scan_dukev_split(split_dirs['train'], progress)
        out['train_path.txt'] = frames.path_text()
        out['train_info.npy'] = info
        frames, gallery_keys, info = scan_dukev_split(split_dirs['gallery'], progress)
        out['gallery_path.txt'] = frames.path_text()
        out['gallery_info.npy'] = info

        # Match by (identity, tracklet) directory names, not by position in the sorted lists.
        row_of = {key: r for r, key in enumerate(gallery_keys)}
        missing = [key for key in query_keys if key not in row_of]
        if missing:
            q = os.path.join(split_dirs['query'], *missing[0])
            raise DataError(f'{q}: query tracklet not found in gallery (expected '
                            f'{os.path.join(split_dirs["gallery"], *missing[0])}; {len(missing)} query '
                            f'tracklet(s) missing)')
        out['query_IDX.npy'] = np.asarray([row_of[key] for key in query_keys], dtype=np.int64)
        write_files(root, out)


