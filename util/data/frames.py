"""Frames: decoding frame files into clips, and finishing batches of clips on the device.

Decoding (the default, in DataLoader workers): each sampled frame becomes a uint8 RGB array, resized with
PIL's bilinear filter exactly as ``torchvision.transforms.Resize((H, W))`` does on a PIL image
(:func:`read_frame`, :func:`load_frame`), and the S frames of a clip are stacked into a uint8
(S, 3, H, W) tensor (:func:`load_clip`). Conversion to float and the ImageNet normalisation happen on the
training device, one batch at a time (:func:`normalize_clip`): a quarter of the bytes cross process
boundaries and the PCIe bus, and nothing float is computed per frame on the CPU.

With ``decoder='auto'`` (the default), JPEG frames that need no resizing (MARS frames are already
256x128) are decoded with torchvision's libjpeg-turbo binding, which produces the same pixels as Pillow's
libjpeg-turbo (tests compare them on baseline, progressive, greyscale and every chroma subsampling) at
lower cost per frame; other formats, frames to be resized, and any JPEG that binding cannot handle go
through Pillow. ``decoder='pil'`` always uses Pillow.

Two opt-in modes move work from the workers to where the network runs, for GPU machines whose CPU cores
cannot keep up; the workers then hand over a :class:`DeviceBatch` (of :class:`DeviceClip` from
:func:`read_source_clip` or :func:`read_encoded_clip`) and ``batch.decode(device)`` finishes it.
``decoder='resize_on_device'`` (``--resize_on_device``): the workers decode each frame at its own size, as
above, and the device resizes it with Pillow's own integer arithmetic (:mod:`util.data.resize`), so the clips
equal the default pipeline's exactly; it saves the workers the resize of datasets whose frames are not
already HxW (DukeV). ``decoder='device'`` (``--decode_on_device``): the workers only read the JPEG files,
and each batch is decoded on the device, with nvJPEG in one batched call on a GPU, or with libjpeg-turbo in
the main process on the CPU, then resized in the same exact way. On the CPU its clips equal the default
pipeline's; on a GPU nvJPEG's pixels differ from libjpeg's (by about 2 grey levels on average; torchvision
bounds only the mean difference), so it is not the default.
"""
import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from util.data.resize import pil_bilinear_resize
from util.errors import BROKEN_DEPENDENCY, DataError, one_line

try:
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError as err:  # Pillow decodes everything, slower: say so rather than hide a broken install
    decode_jpeg = None
    warnings.warn(f'torchvision.io cannot be imported ({err}); JPEG frames are decoded with Pillow (slower)',
                  stacklevel=2)


# ----------------------------------------------------------------------------------------------------------
# Decoding frames

_FALLBACKS_WARNED = set()  # reasons for the slow path already warned about in this process


def _warn_fallback(reason, message):
    """Warn the first time frames take Pillow's slower path for `reason` (once per process, not per frame)."""
    if reason not in _FALLBACKS_WARNED:
        _FALLBACKS_WARNED.add(reason)
        warnings.warn(message + ' (warned once)', stacklevel=3)


def _jpeg_magic(data):
    return data[:3].tolist() == [0xFF, 0xD8, 0xFF]


def _decode_libjpeg(path):
    """(h, w, 3) uint8 RGB of a JPEG file, or None when it should go through Pillow instead.

    Only what torchvision raises for a file it cannot decode (RuntimeError) sends it to Pillow, which then
    decodes it or names the file in its error; anything else (a missing operator of a broken torchvision
    install) propagates."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:  # unreadable: Pillow's error names the file
        return None
    if not _jpeg_magic(data):  # not a JPEG: Pillow's format
        return None
    try:
        with warnings.catch_warnings():  # torchvision 0.29 flags its decoders as deprecated on every call
            warnings.simplefilter('ignore', DeprecationWarning)
            chw = decode_jpeg(torch.from_numpy(data), mode=ImageReadMode.UNCHANGED)
    except RuntimeError as err:  # corrupt for libjpeg: Pillow decides (it accepts what libjpeg only warns about)
        _warn_fallback('corrupt', f'torchvision cannot decode {path} ({one_line(err)}); such frames are '
                                  'decoded with Pillow (slower)')
        return None
    if chw.shape[0] == 1:  # greyscale: RGB copies of the grey level, as Pillow's convert('RGB')
        chw = chw.expand(3, -1, -1)
    elif chw.shape[0] != 3:  # CMYK / YCCK: Pillow has its own conversion
        _warn_fallback('cmyk', f'{path} has {chw.shape[0]} colour channels (CMYK); such frames are decoded '
                               'with Pillow (slower)')
        return None
    return chw.permute(1, 2, 0).contiguous().numpy()


def _read_pil(path, height=None, width=None):
    try:
        with Image.open(path) as img:
            img = img if img.mode == 'RGB' else img.convert('RGB')
            return np.asarray(img) if height is None else _resize(img, height, width)
    except BROKEN_DEPENDENCY:
        raise
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError... for a damaged image: one line
        raise DataError(f'cannot read frame {path}: {one_line(err)}') from None


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
    """Whether torchvision's pixels `fast` equal Pillow's for `path` (True where Pillow cannot read it)."""
    try:
        with Image.open(path) as img:
            agrees = np.array_equal(fast, np.asarray(img.convert('RGB')))
    except OSError:  # Pillow cannot read what torchvision decoded: nothing to compare with
        return True
    if not agrees:
        _warn_fallback('disagree', f"torchvision's JPEG decoder and Pillow's give different pixels for {path}: "
                                   'decoding with Pillow (slower)')
    return agrees


def libjpeg_agrees(path):
    """Whether source-size decoding (:func:`read_source_frame`) may use libjpeg-turbo for frames like ``path``:
    False only when, on this installation, its pixels differ from Pillow's on ``path`` (with a warning)."""
    fast = _decode_libjpeg(path) if decode_jpeg is not None else None
    return fast is None or _decoders_agree(path, fast)


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
            raise DataError(f'cannot read frame {path}: {one_line(err)}') from None
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
                        raise DataError(f'cannot read frame {path}: {one_line(err)}') from None
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
        for idx in by_size.values():  # one resize per source size (MARS: none at all)
            group = torch.stack([images[i] for i in idx])                    # (n, 3, h', w')
            decoded[torch.tensor(idx, device=device)] = pil_bilinear_resize(group, h, w)
        clips = decoded[self.frames.to(device)]                              # (B, S, 3, H, W)
        flips = self.flips.to(device)
        clips[flips] = clips[flips].flip(-1)
        return clips
