"""Pillow's bilinear resize of 8-bit images, as batched torch operations on any device.

``torchvision.transforms.Resize((H, W))`` on a PIL image calls ``Image.resize((W, H), Image.BILINEAR)``.
For 8-bit images Pillow computes it in two separable passes, horizontal first, each with integer
coefficients and integer rounding (``src/libImaging/Resample.c``): per output position a window of source
positions weighted by the triangle filter (widened by the scale factor when downscaling, which is the
antialiasing), the weights normalised in float64, scaled to 22-bit fixed point, then
``out = clip((sum(pixel * weight) + 2**21) >> 22)``. :func:`pil_bilinear_resize_torch` repeats that
arithmetic exactly (the float64 steps in the same order with NumPy, the sums in int32 with torch), so its
output equals Pillow's byte for byte on any device; torchvision's tensor resize differs from Pillow's by a
grey level here and there. Frames can thus be resized where the network runs, e.g. on a GPU, without
changing a pixel. On the CPU :func:`pil_bilinear_resize` simply calls Pillow.
"""
import functools

import numpy as np
import torch
from PIL import Image

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit images


@functools.lru_cache(maxsize=64)
def pil_bilinear_taps(in_size, out_size):
    """Pillow's window and fixed-point weights for resizing one axis from ``in_size`` to ``out_size``.

    Returns (first, weights): int64 (out_size,) first source index of each output's window, and int32
    (out_size, ksize) weights of source positions first .. first + ksize - 1 (zero past the window's end).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f'sizes must be positive, got {in_size} -> {out_size}')
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale                                # the triangle filter's support is 1
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale               # (out,); Pillow adds in0 = 0.0 first
    ss = 1.0 / filterscale
    first = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    count = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64) - first
    taps = np.arange(ksize)                                    # (ksize,)
    x = np.abs(((taps[None, :] + first[:, None]) - center[:, None] + 0.5) * ss)     # (out, ksize)
    w = np.where(x < 1.0, 1.0 - x, 0.0)
    w[taps[None, :] >= count[:, None]] = 0.0
    total = np.zeros(out_size)
    for k in range(ksize):                                     # Pillow's summation order
        total = total + w[:, k]
    w = np.divide(w, total[:, None], out=w, where=total[:, None] != 0.0)
    scaled = w * (1 << PRECISION_BITS)
    fixed = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5))
    return first, fixed.astype(np.int32)


def _resample_first_axis(x, out_size):
    """One Pillow pass along the first axis: int32 (n, ...) -> int32 (out_size, ...) in 0..255.

    Resampling the first axis makes each tap a copy of whole contiguous rows (index_select)."""
    first, weights = pil_bilinear_taps(x.shape[0], out_size)
    first = torch.from_numpy(first).to(x.device)
    weights = torch.from_numpy(weights).to(x.device).view((out_size, -1) + (1,) * (x.dim() - 1))
    acc = torch.full((out_size,) + x.shape[1:], 1 << (PRECISION_BITS - 1), dtype=torch.int32, device=x.device)
    for k in range(weights.shape[1]):
        index = (first + k).clamp_(max=x.shape[0] - 1)        # past the window the weight is 0
        acc += x.index_select(0, index) * weights[:, k]
    return (acc >> PRECISION_BITS).clamp_(0, 255)


def pil_bilinear_resize(images, height, width):
    """uint8 (..., h, w) -> uint8 (..., height, width), equal to Pillow's ``resize((width, height), BILINEAR)``
    of each 8-bit image (channels are independent, so (N, 3, h, w) RGB batches work as they are).

    On the CPU Pillow itself does it, one plane at a time (its C loops are faster there than batched torch
    operations); on other devices :func:`pil_bilinear_resize_torch`.
    """
    if images.dtype != torch.uint8 or images.dim() < 2:
        raise ValueError(f'pil_bilinear_resize expects uint8 (..., h, w) images, got {images.dtype} '
                         f'{tuple(images.shape)}')
    if tuple(images.shape[-2:]) == (height, width):
        return images.clone()
    if images.device.type != 'cpu':
        return pil_bilinear_resize_torch(images, height, width)
    planes = images.reshape((-1,) + tuple(images.shape[-2:])).numpy()                      # (N, h, w)
    out = np.stack([np.asarray(Image.fromarray(p).resize((width, height), Image.BILINEAR)) for p in planes])
    return torch.from_numpy(out).view(images.shape[:-2] + (height, width))


def pil_bilinear_resize_torch(images, height, width):
    """:func:`pil_bilinear_resize` in torch operations on the images' device (int32 sums, as Pillow's)."""
    h, w = images.shape[-2:]
    out = images.to(torch.int32)
    if w != width:                                             # Pillow: horizontal pass first
        out = _resample_first_axis(out.movedim(-1, 0).contiguous(), width).movedim(0, -1)   # (..., h, W)
    if h != height:
        out = _resample_first_axis(out.movedim(-2, 0).contiguous(), height).movedim(0, -2)  # (..., H, W)
    return out.to(torch.uint8).contiguous()
