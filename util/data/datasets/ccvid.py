"""CCVID (Gu et al., CVPR 2022, "Clothes-Changing Person Re-identification with RGB Modality Only"): 226
identities, 2,856 tracklets of gait videos with clothes changes.

    D/train.txt  query.txt  gallery.txt   lines "<session>/<tracklet dir> <pid> <clothes label>"
    D/session1/001_01/00001.jpg ...       frames: the image files of the folder, sorted by name

As CAL's data/datasets/ccvid.py reads it: camera = the number after the first ``_`` of the tracklet directory
name, plus 12 in ``session3``; clothes = the (pid, clothes label) pair, numbered over the split's sorted pairs
(the test split = query and gallery together). Test rows = the query.txt rows followed by the gallery.txt rows:
``query_IDX.npy`` the first block, ``gallery_IDX.npy`` the second. CAL globs every file of a folder; only image
files are frames here (a stray file in a folder is not read as a frame).
"""

import os

import numpy as np

from util.data.datasets.common import (
    FrameList,
    info_rows,
    list_frames,
    replacing_directory,
    write_files,
)
from util.data.datasets.common import progress as progress_bar
from util.errors import DataError

LIST_FILES = ('train.txt', 'query.txt', 'gallery.txt')
LINE_HINT = '"<session>/<tracklet dir> <pid> <clothes label>"'
SESSION3_OFFSET = 12


def read_list(path):
    """(tracklet paths, pids, clothes labels, line numbers) of one list file."""
    if not os.path.isfile(path):
        raise DataError(f'{path}: file not found (expected lines {LINE_HINT})')
    tracks, pids, labels, lines = [], [], [], []
    with open(path, encoding='utf-8') as f:
        for k, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or not fields[1].isdigit() or '/' not in fields[0]:
                raise DataError(f'{path} line {k}: {line.strip()!r} (expected {LINE_HINT})')
            tracks.append(fields[0])
            pids.append(int(fields[1]))
            labels.append(fields[2])
            lines.append(k)
    if not tracks:
        raise DataError(f'{path}: no tracklets (expected lines {LINE_HINT})')
    return tracks, pids, labels, lines


def camera(track, path, line):
    """CAL's camera id: the number after the first '_' of the tracklet directory, + 12 in session3."""
    session, name = track.split('/')[0], track.rstrip('/').split('/')[-1]
    fields = name.split('_')
    if len(fields) < 2 or not fields[1].isdigit():
        raise DataError(f'{path} line {line}: tracklet directory {name!r} has no camera number after its first '
                        f"'_' (expected e.g. 001_01)")
    return int(fields[1]) + (SESSION3_OFFSET if session == 'session3' else 0)


def scan(data_dir, lists, progress=True):
    """Frames and int64 info rows of the tracklets of several list files, one after the other."""
    frames, pids, cams = FrameList(), [], []
    root = os.path.abspath(data_dir)
    for path, (tracks, track_pids, _, lines) in lists:
        for track, pid, line in zip(progress_bar(tracks, f'scanning {os.path.basename(path)}', progress),
                                    track_pids, lines):
            d = os.path.join(root, track.rstrip('/'))
            names = list_frames(d, skip_hidden=True, strict=False, what=f'the frames of {path} line {line}')
            frames.add(d, names)
            pids.append(pid)
            cams.append(camera(track, path, line))
    return frames, info_rows(np.asarray(frames.counts, np.int64), pids, cams)


def clothes_ids(pids, labels):
    """Index of each row's (pid, clothes label) among the sorted distinct pairs."""
    keys = sorted(set(zip(pids, labels)))
    index = {key: i for i, key in enumerate(keys)}
    return np.asarray([index[key] for key in zip(pids, labels)], dtype=np.int64)


def build_ccvid_database(data_dir, output_dir, progress=True):
    """Write train_path.txt, train_info.npy, train_clothes.npy, test_path.txt, test_info.npy, test_clothes.npy,
    query_IDX.npy and gallery_IDX.npy."""
    if not os.path.isdir(data_dir):
        raise DataError(f'{data_dir}: directory not found (expected the CCVID directory holding train.txt, '
                        f'query.txt, gallery.txt and the session folders)')
    train, query, gallery = ((os.path.join(data_dir, name), read_list(os.path.join(data_dir, name)))
                             for name in LIST_FILES)
    out = {}
    frames, info = scan(data_dir, [train], progress)
    out.update({'train_path.txt': frames.path_text(), 'train_info.npy': info,
                'train_clothes.npy': clothes_ids(train[1][1], train[1][2])})
    frames, info = scan(data_dir, [query, gallery], progress)
    num_query, num_gallery = len(query[1][0]), len(gallery[1][0])
    out.update({'test_path.txt': frames.path_text(), 'test_info.npy': info,
                'test_clothes.npy': clothes_ids(query[1][1] + gallery[1][1], query[1][2] + gallery[1][2]),
                'query_IDX.npy': np.arange(num_query, dtype=np.int64),
                'gallery_IDX.npy': np.arange(num_query, num_query + num_gallery, dtype=np.int64)})
    with replacing_directory(output_dir, inputs=(data_dir,)) as root:
        write_files(root, out)
    return out
