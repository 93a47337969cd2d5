"""Database files, the tracklet datasets and their DataLoaders.

* Database files: :func:`read_database` reads and cross-checks one split (frame path list, info rows,
  query and gallery rows) into a :class:`Database`; :class:`PathTable` packs its paths for the workers.
* Datasets: :class:`TrainClipDataset` (a clip and its relabelled id per (tracklet, seed)) and
  :class:`TestClipDataset` (the clips of every tracklet under --test_sampling).
* Loaders: :func:`make_train_loader` (identity-balanced batches), :func:`make_test_loader` (database order,
  sharded by rank), :func:`collate_clips` and :class:`ClipLoader`.

The workers decode frames with :mod:`util.data.frames`, which documents the decoders (``decoder=``) and the
device batches of --resize_on_device / --decode_on_device.
"""
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from util.data.frames import (
    DeviceBatch,
    DeviceClip,
    choose_decoder,
    libjpeg_agrees,
    load_clip,
    read_encoded_clip,
    read_source_clip,
)
from util.data.sampling import (
    TEST_SAMPLING_MODES,
    IdentityBatchSampler,
    shard_bounds,
    test_clip_indices,
    test_frame_indices,
    train_frame_indices,
)
from util.errors import BROKEN_DEPENDENCY, DataError, ReIDError, one_line

DECODERS = ('auto', 'pil', 'resize_on_device', 'device')


# ----------------------------------------------------------------------------------------------------------
# Database files

@dataclass
class Database:
    """One split of a database: frame paths, tracklet rows and (for a test split) the query rows.

    info: (N, 4) int64 rows [start, end, pid, cam], start/end 0-based inclusive indices into ``paths``.
    query_idx: (Q,) int64 0-based rows of ``info``, or None.
    gallery_idx: (G,) int64 0-based rows of ``info`` ranked for every query (gallery_IDX.npy), or None:
    every row is the gallery.
    """
    paths: list
    info: np.ndarray
    query_idx: Optional[np.ndarray] = None
    txt_path: str = ''
    info_path: str = ''
    gallery_idx: Optional[np.ndarray] = None


def _require_file(path, what):
    if not os.path.isfile(path):
        raise DataError(f'{path}: file not found (expected {what})')


def _load_int_array(path, what):
    _require_file(path, what)
    try:
        array = np.load(path, allow_pickle=False)
    except BROKEN_DEPENDENCY:
        raise
    except Exception as err:  # format errors of a damaged file: one line for the user
        raise DataError(f'{path}: not a readable .npy file ({one_line(err)}); expected {what}') from None
    if array.dtype.kind not in 'iuf' or (array.dtype.kind == 'f' and not np.all(np.isfinite(array)
                                                                                 & (array == np.round(array)))):
        raise DataError(f'{path}: expected integer values ({what}), got dtype {array.dtype}')
    return array.astype(np.int64)


def read_paths(txt_path):
    """The frame path list of a database (one path per line)."""
    _require_file(txt_path, 'a frame path list, one path per line')
    with open(txt_path, encoding='utf-8', errors='surrogateescape') as f:
        paths = f.read().strip().splitlines()
    if not paths:
        raise DataError(f'{txt_path}: empty file (expected a frame path list, one path per line)')
    return paths


def check_unique_rows(rows, source, what):
    """Refuse an index that names a row twice: that tracklet would count twice in the ranking."""
    values, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        row = int(values[np.argmax(counts > 1)])
        where = [int(j) for j in np.flatnonzero(rows == row)[:2]]
        raise DataError(f'{source}: {what} row {row} is listed twice (positions {where[0]} and {where[1]}); '
                        f'expected each row once')


def read_rows(path, what, n, info_path):
    """A 1-D index file of 0-based rows of the n-row info (query_IDX.npy, gallery_IDX.npy)."""
    rows = _load_int_array(path, f'{what} row indices')
    if what == 'gallery' and rows.ndim != 1:  # query_IDX.npy of MARS is (1, Q) as loaded from the .mat
        raise DataError(f'{path}: a {rows.ndim}-d array of shape {rows.shape}; expected the 1-d gallery row '
                        f'indices of {info_path}')
    rows = rows.reshape(-1)
    if len(rows) == 0:
        raise DataError(f'{path}: no {what} indices')
    if what == 'gallery':
        check_unique_rows(rows, path, what)
    bad = (rows < 0) | (rows >= n)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise DataError(f'{path}: {what} index {rows[j]} (position {j}) is outside the '
                        f'{n} tracklet rows of {info_path} (expected 0-based row indices)')
    return rows


def read_database(txt_path, info_path, query_path=None, gallery_path=None):
    """Read and cross-check a database split (paths .txt, info .npy, optionally query and gallery .npy)."""
    paths = read_paths(txt_path)
    info = _load_int_array(info_path, 'an (N, 4) array of [start, end, pid, cam] rows')
    if info.ndim != 2 or info.shape[1] != 4 or len(info) == 0:
        raise DataError(f'{info_path}: expected an (N, 4) array of [start, end, pid, cam] rows with N >= 1, '
                        f'got shape {info.shape}')
    start, end = info[:, 0], info[:, 1]
    checks = [(start < 0, 'starts before frame 0'),
              (start > end, 'has start > end'),
              (end >= len(paths), f'ends past the {len(paths)} frames listed in {txt_path}')]
    for bad, what in checks:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f'{info_path}: tracklet row {row} [start, end] = [{start[row]}, {end[row]}] {what} '
                            f'({int(bad.sum())} bad rows; expected 0-based frame indices)')
    query_idx = None if query_path is None else read_rows(query_path, 'query', len(info), info_path)
    gallery_idx = None if gallery_path is None else read_rows(gallery_path, 'gallery', len(info), info_path)
    return Database(paths, info, query_idx, str(txt_path), str(info_path), gallery_idx)


class PathTable:
    """Frame paths packed in one byte buffer with offsets.

    DataLoader workers are forked; touching a list of a million str objects updates their reference counts
    and copies the list into every worker page by page. Two numpy arrays are shared as they are.
    """

    def __init__(self, paths):
        encoded = [os.fsencode(p) for p in paths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self.offsets[1:])
        self.data = np.frombuffer(b''.join(encoded), dtype=np.uint8)

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i):
        return os.fsdecode(self.data[self.offsets[i]:self.offsets[i + 1]].tobytes())


# ----------------------------------------------------------------------------------------------------------
# Datasets

class _TrackletDataset(Dataset):
    def __init__(self, db, S, height, width, decoder):
        if decoder not in DECODERS:
            raise ValueError(f'decoder must be one of {DECODERS}, got {decoder!r}')
        if S < 1:
            raise DataError(f'S must be >= 1, got {S}')
        self.paths = PathTable(db.paths)
        self.starts, self.ends = db.info[:, 0].copy(), db.info[:, 1].copy()
        self.S, self.height, self.width = int(S), int(height), int(width)
        if decoder == 'auto' and len(self.paths):
            decoder = choose_decoder(self.paths[0], self.height, self.width)
        self.decoder = decoder
        # resize_on_device: decode with libjpeg-turbo unless it disagrees with Pillow
        self.libjpeg = decoder != 'resize_on_device' or not len(self.paths) or libjpeg_agrees(self.paths[0])

    def __len__(self):
        return len(self.starts)

    def _load(self, row, frames, flip=False):
        paths = [self.paths[f] for f in frames]
        try:
            if self.decoder == 'device':
                return read_encoded_clip(paths, self.height, self.width, flip)
            if self.decoder == 'resize_on_device':
                return read_source_clip(paths, self.height, self.width, flip, self.libjpeg)
            return load_clip(paths, self.height, self.width, flip, self.decoder)
        except DataError as err:
            raise DataError(f'{err} (tracklet row {row})') from None


class TrainClipDataset(_TrackletDataset):
    """Training clips. ``dataset[(track_idx, seed)]`` -> (uint8 (S, 3, H, W) clip, relabelled id).

    ``np.random.default_rng(seed)`` draws the frame of each chunk and then the clip-level horizontal flip
    (probability 0.5), so a clip depends only on its index and seed, never on the worker that loads it.
    Identities are relabelled 0..n_id-1 in sorted pid order (``self.pids[label]`` is the original pid).
    """

    flip_p = 0.5

    def __init__(self, db, S, height=256, width=128, decoder='auto'):
        super().__init__(db, S, height, width, decoder)
        self.pids, self.track_labels = np.unique(db.info[:, 2], return_inverse=True)
        self.track_labels = self.track_labels.reshape(-1).astype(np.int64)
        self.n_id = len(self.pids)

    def __getitem__(self, item):
        row, seed = item
        rng = np.random.default_rng(seed)
        frames = train_frame_indices(self.starts[row], self.ends[row], self.S, rng)
        flip = rng.random() < self.flip_p
        return self._load(row, frames, flip), int(self.track_labels[row])


class TestClipDataset(_TrackletDataset):
    """Evaluation clips of every tracklet, junk and distractors included, under --test_sampling (docs/evaluation.md).

    'chunks' (the first frame of each chunk) and 'first' give one clip per tracklet: ``dataset[i]`` ->
    (uint8 (S, 3, H, W) clip, pid, cam) of tracklet row i. The 'all_*' modes give I clips per tracklet and
    the dataset indexes (tracklet, clip) pairs, tracklet by tracklet: ``dataset[c]`` -> (clip, pid, cam,
    tracklet row ``clip_track[c]``), so that clips of many tracklets share a batch whatever their length;
    'strided' (CAL's test clips, ``stride`` frames apart) likewise. ``frames`` (C, S): the global frame
    indices of every clip (C = N for one clip per tracklet).
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, db, S, height=256, width=128, decoder='auto', sampling='chunks', stride=4):
        super().__init__(db, S, height, width, decoder)
        if sampling not in TEST_SAMPLING_MODES:
            raise DataError(f'test sampling {sampling!r} is not one of {", ".join(TEST_SAMPLING_MODES)}')
        self.sampling = sampling
        self.num_tracks = len(self.starts)
        self.clip_track = None  # one clip per tracklet
        if sampling == 'chunks':
            self.frames = test_frame_indices(self.starts, self.ends, self.S)      # (N, S)
        else:
            clips = [test_clip_indices(a, b, self.S, sampling, stride) for a, b in zip(self.starts, self.ends)]
            self.frames = np.concatenate(clips)                                   # (C, S)
            if sampling != 'first':
                self.clip_track = np.repeat(np.arange(self.num_tracks), [len(c) for c in clips])  # (C,)
        self.pids = db.info[:, 2].copy()
        self.cams = db.info[:, 3].copy()
        self.query_idx = db.query_idx

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        if self.clip_track is None:
            return self._load(i, self.frames[i]), int(self.pids[i]), int(self.cams[i])
        row = int(self.clip_track[i])
        return self._load(row, self.frames[i]), int(self.pids[row]), int(self.cams[row]), row


# ----------------------------------------------------------------------------------------------------------
# Loaders

def collate_clips(batch):
    """[(clip, label, ...)] -> (uint8 (B, S, 3, H, W) contiguous, int64 (B,), ...).

    DeviceClips (decoders 'resize_on_device' and 'device') are packed into one DeviceBatch instead."""
    clips = [item[0] for item in batch]
    columns = zip(*(item[1:] for item in batch))
    labels = tuple(torch.tensor(column, dtype=torch.int64) for column in columns)
    if isinstance(clips[0], DeviceClip):
        return (DeviceBatch(clips),) + labels
    shape = (len(clips),) + tuple(clips[0].shape)
    if get_worker_info() is not None:
        # inside a worker, stack straight into shared memory: the batch is not copied again on its way
        # to the main process (what default_collate does)
        storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
        out = torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    else:
        out = torch.empty(shape, dtype=torch.uint8)
    torch.stack(clips, out=out)  # also turns the clips' channel-last memory into (B, S, 3, H, W) order
    return (out,) + labels


class ClipLoader(DataLoader):
    """A DataLoader that re-raises a worker's project error as the original one-line error."""

    def set_epoch(self, epoch):
        """Select the epoch of the identity sampler (every rank must call it with the same epoch)."""
        if hasattr(self.batch_sampler, 'set_epoch'):
            self.batch_sampler.set_epoch(epoch)

    def __iter__(self):
        iterator = super().__iter__()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as err:  # every error: stop the workers, then raise it (a project error unwrapped)
                self._release(iterator)
                del iterator
                lines = str(err).strip().splitlines()
                if isinstance(err, ReIDError) and len(lines) > 1:
                    # a worker's error arrives as "Caught DataError in DataLoader worker process 0.\n
                    # <traceback>\nutil.errors.DataError: <message>": keep the message
                    raise type(err)(lines[-1].split(': ', 1)[-1]) from None
                raise
            yield batch

    def _release(self, iterator):
        # Stop the workers of a failed iteration now. Left to the garbage collector, the iterator can lose
        # its queues before its workers, and shutting down then waits 5 s per worker.
        shutdown = getattr(iterator, '_shutdown_workers', None)
        if shutdown is not None:
            shutdown()
        self._iterator = None


def _loader_options(num_workers, pin_memory):
    num_workers = int(num_workers)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return dict(num_workers=num_workers, pin_memory=bool(pin_memory), persistent_workers=num_workers > 0,
                collate_fn=collate_clips)


def make_train_loader(db, S, class_per_batch, track_per_class, seed, num_workers, height=256, width=128,
                      rank=0, world_size=1, pin_memory=None, decoder='auto'):
    """Identity-balanced training batches: (uint8 (P'*K, S, 3, H, W) clips, int64 (P'*K,) labels).

    P' = class_per_batch / world_size identities per rank. Call ``loader.set_epoch(e)`` before each epoch;
    the batches are a function of (seed, epoch) alone. ``loader.dataset.n_id`` is the number of classes.
    """
    dataset = TrainClipDataset(db, S, height, width, decoder)
    sampler = IdentityBatchSampler(dataset.track_labels, class_per_batch, track_per_class, seed,
                                   rank=rank, world_size=world_size)
    return ClipLoader(dataset, batch_sampler=sampler, **_loader_options(num_workers, pin_memory))


@dataclass(frozen=True)
class ClipConfig:
    """How the test clips of a tracklet are cut and read (evaluate.py's clip flags)."""
    S: int                         # frames per clip
    height: int = 256              # frame size after resizing
    width: int = 128
    test_sampling: str = 'chunks'  # util.data.sampling.TEST_SAMPLING_MODES
    decoder: str = 'auto'          # 'auto', 'resize_on_device' or 'device' (see decoder_for)
    test_stride: int = 4           # frames between a clip's frames under 'strided' (CAL's test clips)


def decoder_for(decode_on_device=False, resize_on_device=False):
    """The loaders' decoder: 'device' when JPEGs are decoded where the network runs (which resizes there too),
    'resize_on_device' when only the resize runs there, else 'auto' (the workers do both)."""
    if decode_on_device:
        return 'device'
    return 'resize_on_device' if resize_on_device else 'auto'


def make_test_loader(db, S, batch_size, num_workers, height=256, width=128, rank=0, world_size=1,
                     pin_memory=None, decoder='auto', sampling='chunks', stride=4):
    """Evaluation batches in database order: (uint8 (B, S, 3, H, W), int64 pids (B,), int64 cams (B,)), plus
    int64 tracklet rows (B,) in the 'all_*' and 'strided' sampling modes, whose batches hold B clips of any tracklets.

    With ``world_size`` > 1, rank r loads the contiguous tracklet rows ``loader.shard = (lo, hi)`` from
    :func:`util.data.sampling.shard_bounds` (all the clips of a tracklet on one rank); concatenating the ranks'
    features in rank order (dropping any padding added for an all-gather of equal sizes) restores database
    order, which ``query_idx`` refers to.
    """
    if not 0 <= rank < world_size:
        raise DataError(f'rank {rank} is not in 0..world_size-1 (world_size {world_size})')
    dataset = TestClipDataset(db, S, height, width, decoder, sampling, stride)
    bounds = shard_bounds(dataset.num_tracks, int(world_size))
    lo, hi = bounds[rank], bounds[rank + 1]
    items = range(lo, hi)
    if dataset.clip_track is not None:
        items = range(*(int(c) for c in np.searchsorted(dataset.clip_track, [lo, hi])))
    loader = ClipLoader(dataset, batch_size=int(batch_size), sampler=items, shuffle=False,
                        **_loader_options(num_workers, pin_memory))
    loader.shard = (lo, hi)
    return loader
