"""Database files, frame decoding, the tracklet datasets and their DataLoaders.

Input pipeline: DataLoader workers decode each sampled frame to a uint8 RGB array, resized with PIL's
bilinear filter exactly as ``torchvision.transforms.Resize((H, W))`` does on a PIL image, and stack the S
frames of a clip into a uint8 (S, 3, H, W) tensor. Conversion to float and the ImageNet normalisation
happen on the training device, one batch at a time (:func:`normalize_clip`): a quarter of the bytes
cross process boundaries and the PCIe bus, and nothing float is computed per frame on the CPU.

With ``decoder='auto'`` (the default), JPEG frames that need no resizing (MARS frames are already
256x128) are decoded with torchvision's libjpeg-turbo binding, which produces the same pixels as Pillow's
libjpeg-turbo (tests compare them on baseline, progressive, greyscale and every chroma subsampling) at
lower cost per frame; other formats, frames to be resized, and any JPEG that binding cannot handle go
through Pillow. ``decoder='pil'`` always uses Pillow.

Two opt-in modes move work from the workers to where the network runs, for GPU machines whose CPU cores
cannot keep up; the workers then hand over a :class:`DeviceBatch` and ``batch.decode(device)`` finishes it.
``decoder='resize_on_device'`` (``--resize_on_device``): the workers decode each frame at its own size, as
above, and the device resizes it with Pillow's own integer arithmetic (:mod:`util.resize`), so the clips
equal the default pipeline's exactly; it saves the workers the resize of datasets whose frames are not
already HxW (DukeV). ``decoder='device'`` (``--decode_on_device``): the workers only read the JPEG files,
and each batch is decoded on the device, with nvJPEG in one batched call on a GPU, or with libjpeg-turbo in
the main process on the CPU, then resized in the same exact way. On the CPU its clips equal the default
pipeline's; on a GPU nvJPEG's pixels differ from libjpeg's (by about 2 grey levels on average; torchvision
bounds only the mean difference), so it is not the default.
"""
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, get_worker_info

from util.errors import DataError, ReIDError
from util.resize import pil_bilinear_resize
from util.sampling import (TEST_SAMPLING_MODES, IdentityBatchSampler, chunk_frames, chunk_length,  # noqa: F401
                           shard_bounds, test_clip_indices, test_frame_indices, train_frame_indices)

try:
    from torchvision.io import ImageReadMode, decode_jpeg
except Exception:  # torchvision built without its image extension: Pillow decodes everything
    decode_jpeg = None

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
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
    except Exception as err:
        raise DataError(f'{path}: not a readable .npy file ({_one_line(err)}); expected {what}') from None
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


def _read_rows(path, what, n, info_path):
    """A 1-D index file of 0-based rows of the n-row info (query_IDX.npy, gallery_IDX.npy)."""
    rows = _load_int_array(path, f'{what} row indices').reshape(-1)
    if len(rows) == 0:
        raise DataError(f'{path}: no {what} indices')
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
    query_idx = None if query_path is None else _read_rows(query_path, 'query', len(info), info_path)
    gallery_idx = None if gallery_path is None else _read_rows(gallery_path, 'gallery', len(info), info_path)
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
# Frames

def _one_line(err):
    return ' '.join(str(err).split()) or type(err).__name__


def _decode_libjpeg(path):
    """(h, w, 3) uint8 RGB of a JPEG file, or None when it should go through Pillow instead."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
        if data[:3].tolist() != [0xFF, 0xD8, 0xFF]:
            return None
        with warnings.catch_warnings():  # torchvision 0.29 flags its decoders as deprecated on every call
            warnings.simplefilter('ignore', DeprecationWarning)
            chw = decode_jpeg(torch.from_numpy(data), mode=ImageReadMode.UNCHANGED)
    except Exception:  # unreadable or corrupt: Pillow decides (it accepts what libjpeg only warns about)
        return None
    if chw.shape[0] == 1:  # greyscale: RGB copies of the grey level, as Pillow's convert('RGB')
        chw = chw.expand(3, -1, -1)
    elif chw.shape[0] != 3:  # CMYK / YCCK: Pillow has its own conversion
        return None
    return chw.permute(1, 2, 0).contiguous().numpy()


def _read_pil(path, height=None, width=None):
    try:
        with Image.open(path) as img:
            img = img if img.mode == 'RGB' else img.convert('RGB')
            return np.asarray(img) if height is None else _resize(img, height, width)
    except Exception as err:
        raise DataError(f'cannot read frame {path}: {_one_line(err)}') from None


def _resize(img, height, width):
    # torchvision's Resize((H, W)) on a PIL image is exactly this call (and a no-op copy at the same size)
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR)
    return np.asarray(img)


def read_frame(path, height, width, decoder='auto'):
    """(height, width, 3) uint8 RGB array: the frame resized with PIL bilinear as Resize((H, W)) does."""
    array = _decode_libjpeg(path) if decoder == 'auto' and decode_jpeg is not None else None
    if array is None:
        return _read_pil(path, height, width)
    if array.shape[:2] != (height, width):
        array = _resize(Image.fromarray(array), height, width)
    return array


def choose_decoder(path, height, width):
    """The faster exact decoder for frames like ``path``: 'auto' (libjpeg through torchvision) or 'pil'.

    'pil' when the frame needs resizing (Pillow decodes straight into the image it resizes, the other path
    copies into one) or when, on this installation, the two decoders disagree on it (with a warning).
    """
    fast = _decode_libjpeg(path) if decode_jpeg is not None else None
    if fast is None:  # not a JPEG, or unreadable: keep the per-frame choice (errors surface when loading)
        return 'auto' if decode_jpeg is not None else 'pil'
    if not _decoders_agree(path, fast):
        return 'pil'
    return 'auto' if fast.shape[:2] == (height, width) else 'pil'


def _decoders_agree(path, fast):
    try:
        with Image.open(path) as img:
            agrees = np.array_equal(fast, np.asarray(img.convert('RGB')))
    except Exception:
        agrees = True
    if not agrees:
        warnings.warn(f"torchvision's JPEG decoder and Pillow's give different pixels for {path}: "
                      f"decoding with Pillow")
    return agrees


def read_source_frame(path, libjpeg=True):
    """(h, w, 3) uint8 RGB array of the frame at its own size: Pillow's pixels (libjpeg-turbo's if allowed)."""
    array = _decode_libjpeg(path) if libjpeg and decode_jpeg is not None else None
    return _read_pil(path) if array is None else array


def load_frame(path, height, width, decoder='auto'):
    """uint8 (3, height, width) tensor of one frame (a channel-first view of the decoded array)."""
    array = read_frame(path, height, width, decoder)
    if not array.flags.writeable:  # np.asarray of a PIL image is read-only
        array = array.copy()
    return torch.from_numpy(array).permute(2, 0, 1)


def load_clip(paths, height, width, flip=False, decoder='auto'):
    """uint8 (S, 3, height, width) tensor of the frames in ``paths``, optionally flipped horizontally."""
    clip = np.empty((len(paths), height, width, 3), dtype=np.uint8)      # (S, H, W, 3)
    decoded = {}  # short tracklets repeat their last frame: decode it once
    for s, path in enumerate(paths):
        if path not in decoded:
            decoded[path] = read_frame(path, height, width, decoder)
        clip[s] = decoded[path][:, ::-1] if flip else decoded[path]
    return torch.from_numpy(clip).permute(0, 3, 1, 2)                   # (S, 3, H, W) view


# ----------------------------------------------------------------------------------------------------------
# Finishing clips on the device (decoder='resize_on_device' or 'device')

def _jpeg_magic(data):
    return data[:3].tolist() == [0xFF, 0xD8, 0xFF]


@dataclass
class DeviceClip:
    """One clip's distinct frames, to be finished where the network runs. files: JPEG bytes (uint8 1-D
    tensors) when ``encoded``, else decoded uint8 (h, w, 3) arrays at their own size; frames: (S,) index
    into files for each clip frame (short tracklets repeat their last one)."""
    files: list
    frames: list
    flip: bool
    paths: list
    height: int
    width: int
    encoded: bool = True


def _distinct(paths):
    distinct = list(dict.fromkeys(paths))
    index = {p: i for i, p in enumerate(distinct)}
    return distinct, [index[p] for p in paths]


def read_encoded_clip(paths, height, width, flip=False):
    """A DeviceClip of the JPEG files in ``paths``, read but not decoded (each distinct file once)."""
    distinct, frames = _distinct(paths)
    files = []
    for path in distinct:
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as err:
            raise DataError(f'cannot read frame {path}: {_one_line(err)}') from None
        if not _jpeg_magic(data):
            raise DataError(f'cannot read frame {path}: not a JPEG file (--decode_on_device decodes JPEG '
                            f'frames only)')
        files.append(torch.from_numpy(data))
    return DeviceClip(files, frames, bool(flip), distinct, int(height), int(width))


def read_source_clip(paths, height, width, flip=False, libjpeg=True):
    """A DeviceClip of the frames in ``paths`` decoded at their own size (each distinct file once)."""
    distinct, frames = _distinct(paths)
    files = [read_source_frame(path, libjpeg) for path in distinct]
    return DeviceClip(files, frames, bool(flip), distinct, int(height), int(width), encoded=False)


class DeviceBatch:
    """A batch of DeviceClips packed for the trip from a worker: one byte buffer and a few index tensors.

    data: uint8 (bytes,) every file of the batch back to back (JPEG bytes, or decoded (h, w, 3) frames whose
    sizes are in ``shapes``), offsets: int64 (F+1,) file boundaries, frames: int64 (B, S) file of each clip
    frame, flips: bool (B,). ``decode(device)`` -> uint8 (B, S, 3, H, W) on ``device``, what the
    worker-side pipeline returns.
    """

    def __init__(self, clips):
        self.encoded = clips[0].encoded
        files = [f for clip in clips for f in clip.files]
        if self.encoded:
            self.shapes = None
            self.data = torch.cat(files)
        else:
            self.shapes = [f.shape[:2] for f in files]
            self.data = torch.from_numpy(np.concatenate([f.reshape(-1) for f in files]))
        sizes = torch.tensor([int(np.prod(f.shape)) for f in files], dtype=torch.int64)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)])
        first = np.cumsum([0] + [len(clip.files) for clip in clips[:-1]])
        self.frames = torch.tensor([[int(b) + f for f in clip.frames] for b, clip in zip(first, clips)],
                                   dtype=torch.int64)
        self.flips = torch.tensor([clip.flip for clip in clips], dtype=torch.bool)
        self.paths = [p for clip in clips for p in clip.paths]
        self.height, self.width = clips[0].height, clips[0].width

    def __len__(self):
        return len(self.frames)

    def pin_memory(self):
        if not self.encoded:  # decode_jpeg reads its input from CPU memory on every device: pin frames only
            self.data = self.data.pin_memory()
        return self

    def _decode_files(self, device):
        bounds = self.offsets.tolist()
        files = [self.data[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        if device.type == 'cuda':
            # nvJPEG's hardware decoder can write its outputs (blocks just freed to the caching allocator)
            # before the work already queued on this stream has read them: drain the stream first
            # (pytorch/vision#9606). The decoder waits for its own work before returning anyway.
            torch.cuda.current_stream(device).synchronize()
        with warnings.catch_warnings():  # torchvision 0.29 flags its decoders as deprecated on every call
            warnings.simplefilter('ignore', DeprecationWarning)
            try:
                return decode_jpeg(files, mode=ImageReadMode.RGB, device=device)
            except RuntimeError:
                for f, path in zip(files, self.paths):  # find the culprit for the message
                    try:
                        decode_jpeg(f, mode=ImageReadMode.RGB, device=device)
                    except RuntimeError as err:
                        raise DataError(f'cannot read frame {path}: {_one_line(err)}') from None
                raise

    def _frames(self, device):
        """F uint8 (3, h, w) frames on ``device`` at their own sizes."""
        if self.encoded:
            if decode_jpeg is None:
                raise DataError('--decode_on_device needs torchvision built with its image extension')
            return self._decode_files(device)
        data = self.data.to(device, non_blocking=True)
        bounds = self.offsets.tolist()
        return [data[a:b].view(h, w, 3).permute(2, 0, 1)
                for a, b, (h, w) in zip(bounds[:-1], bounds[1:], self.shapes)]

    def decode(self, device):
        """uint8 (B, S, 3, H, W) clips on ``device``."""
        device = torch.device(device)
        images = self._frames(device)                                        # F x (3, h, w)
        h, w = self.height, self.width
        decoded = torch.empty((len(images), 3, h, w), dtype=torch.uint8, device=device)
        by_size = defaultdict(list)
        for i, image in enumerate(images):
            by_size[tuple(image.shape[1:])].append(i)
        for size, idx in by_size.items():  # one resize per source size (MARS: none at all)
            group = torch.stack([images[i] for i in idx])                    # (n, 3, h', w')
            decoded[torch.tensor(idx, device=device)] = pil_bilinear_resize(group, h, w)
        clips = decoded[self.frames.to(device)]                              # (B, S, 3, H, W)
        flips = self.flips.to(device)
        clips[flips] = clips[flips].flip(-1)
        return clips


def normalize_clip(x, device=None, dtype=torch.float32, non_blocking=True):
    """uint8 (..., 3, H, W) -> ImageNet-normalised float on ``device``, in ``dtype``.

    Computed in float32 with the operations of ToTensor (``/255``) and Normalize (``-mean``, ``/std``),
    then cast, so the float32 result equals the original per-frame PIL -> ToTensor -> Normalize pipeline.
    """
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f'normalize_clip expects (..., 3, H, W) images, got shape {tuple(x.shape)}')
    if device is not None:
        x = x.to(device, non_blocking=non_blocking)
    mean, std = _mean_std(x.device)
    y = x.to(torch.float32).div(255).sub_(mean).div_(std)
    return y if dtype == torch.float32 else y.to(dtype)


_MEAN_STD = {}


def _mean_std(device):
    if device not in _MEAN_STD:
        _MEAN_STD[device] = tuple(torch.tensor(v, dtype=torch.float32, device=device).view(3, 1, 1)
                                  for v in (IMAGENET_MEAN, IMAGENET_STD))
    return _MEAN_STD[device]


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
        self.libjpeg = True  # resize_on_device: decode with libjpeg-turbo unless it disagrees with Pillow
        if decoder == 'resize_on_device' and len(self.paths) and decode_jpeg is not None:
            fast = _decode_libjpeg(self.paths[0])
            self.libjpeg = fast is None or _decoders_agree(self.paths[0], fast)

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
    """Evaluation clips of every tracklet, junk and distractors included, under --test_sampling (SPEC 9).

    'chunks' (the first frame of each chunk) and 'first' give one clip per tracklet: ``dataset[i]`` ->
    (uint8 (S, 3, H, W) clip, pid, cam) of tracklet row i. The 'all_*' modes give I clips per tracklet and
    the dataset indexes (tracklet, clip) pairs, tracklet by tracklet: ``dataset[c]`` -> (clip, pid, cam,
    tracklet row ``clip_track[c]``), so that clips of many tracklets share a batch whatever their length.
    ``frames`` (C, S): the global frame indices of every clip (C = N for one clip per tracklet).
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, db, S, height=256, width=128, decoder='auto', sampling='chunks'):
        super().__init__(db, S, height, width, decoder)
        if sampling not in TEST_SAMPLING_MODES:
            raise DataError(f'test sampling {sampling!r} is not one of {", ".join(TEST_SAMPLING_MODES)}')
        self.sampling = sampling
        self.num_tracks = len(self.starts)
        self.clip_track = None  # one clip per tracklet
        if sampling == 'chunks':
            self.frames = test_frame_indices(self.starts, self.ends, self.S)      # (N, S)
        else:
            clips = [test_clip_indices(a, b, self.S, sampling) for a, b in zip(self.starts, self.ends)]
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
            except Exception as err:
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


def make_test_loader(db, S, batch_size, num_workers, height=256, width=128, rank=0, world_size=1,
                     pin_memory=None, decoder='auto', sampling='chunks'):
    """Evaluation batches in database order: (uint8 (B, S, 3, H, W), int64 pids (B,), int64 cams (B,)), plus
    int64 tracklet rows (B,) in the 'all_*' sampling modes, whose batches hold B clips of any tracklets.

    With ``world_size`` > 1, rank r loads the contiguous tracklet rows ``loader.shard = (lo, hi)`` from
    :func:`util.sampling.shard_bounds` (all the clips of a tracklet on one rank); concatenating the ranks'
    features in rank order (dropping any padding added for an all-gather of equal sizes) restores database
    order, which ``query_idx`` refers to.
    """
    if not 0 <= rank < world_size:
        raise DataError(f'rank {rank} is not in 0..world_size-1 (world_size {world_size})')
    dataset = TestClipDataset(db, S, height, width, decoder, sampling)
    bounds = shard_bounds(dataset.num_tracks, int(world_size))
    lo, hi = bounds[rank], bounds[rank + 1]
    items = range(lo, hi)
    if dataset.clip_track is not None:
        items = range(*(int(c) for c in np.searchsorted(dataset.clip_track, [lo, hi])))
    loader = ClipLoader(dataset, batch_size=int(batch_size), sampler=items, shuffle=False,
                        **_loader_options(num_workers, pin_memory))
    loader.shard = (lo, hi)
    return loader
