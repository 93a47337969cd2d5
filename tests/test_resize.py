"""util.data.resize: Pillow's bilinear resize repeated in torch must equal Pillow byte for byte."""
import numpy as np
import pytest
import torch
from PIL import Image

from util.data.resize import pil_bilinear_resize, pil_bilinear_resize_torch, pil_bilinear_taps

SOURCE_SIZES = [(128, 64), (384, 192), (100, 37), (17, 5), (257, 127), (1, 1), (3, 300)]
TARGET_SIZES = [(256, 128), (255, 129), (8, 4), (40, 7), (1, 1)]


def _pillow(array, height, width):
    return np.asarray(Image.fromarray(array).resize((width, height), Image.BILINEAR))


def _image(rng, h, w, smooth):
    if smooth:  # gradients put many outputs near a rounding boundary
        ramp = np.linspace(0, 255, w)[None, :, None] + rng.normal(0, 12, (h, w, 3))
        return ramp.clip(0, 255).astype(np.uint8)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_hand_computed_upscale():
    # one row [0, 255] to 4 columns: windows and weights worked out from Pillow's formulas
    # (centres 0.25, 0.75, 1.25, 1.75; weights 1 | .75 .25 | .25 .75 | 1; +2**21, >> 22)
    row = torch.tensor([[0, 255]], dtype=torch.uint8)
    assert pil_bilinear_resize_torch(row, 1, 4).tolist() == [[0, 64, 191, 255]]
    assert _pillow(row.numpy(), 1, 4).tolist() == [[0, 64, 191, 255]]
    first, weights = pil_bilinear_taps(2, 4)
    assert first.tolist() == [0, 0, 0, 1]
    assert weights.tolist() == [[1 << 22, 0, 0], [3 << 20, 1 << 20, 0], [1 << 20, 3 << 20, 0], [1 << 22, 0, 0]]


@pytest.mark.parametrize('source', SOURCE_SIZES)
def test_torch_resize_equals_pillow(source):
    rng = np.random.default_rng(sum(source))
    for target in TARGET_SIZES + [source, (source[0], 64), (256, source[1])]:
        for smooth in (False, True):
            array = _image(rng, *source, smooth)
            expected = _pillow(array, *target)                                  # (H, W, 3)
            chw = torch.from_numpy(array).permute(2, 0, 1)
            got = pil_bilinear_resize_torch(chw[None], *target)[0].permute(1, 2, 0).numpy()
            assert got.shape == expected.shape
            assert np.array_equal(got, expected), f'{source} -> {target}'


def test_greyscale_planes_and_batch_shapes():
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (97, 53), dtype=np.uint8)
    assert np.array_equal(pil_bilinear_resize_torch(torch.from_numpy(grey), 256, 128).numpy(),
                          _pillow(grey, 256, 128))
    clips = torch.from_numpy(rng.integers(0, 256, (2, 3, 3, 50, 30), dtype=np.uint8))   # (B, S, 3, h, w)
    fast, plain = pil_bilinear_resize(clips, 64, 32), pil_bilinear_resize_torch(clips, 64, 32)
    assert fast.shape == plain.shape == (2, 3, 3, 64, 32)
    assert torch.equal(fast, plain)
    frame = clips[1, 2].permute(1, 2, 0).contiguous().numpy()
    assert np.array_equal(fast[1, 2].permute(1, 2, 0).numpy(), _pillow(frame, 64, 32))


def test_same_size_is_an_unchanged_copy():
    x = torch.arange(24, dtype=torch.uint8).view(2, 3, 4)
    for resize in (pil_bilinear_resize, pil_bilinear_resize_torch):
        y = resize(x, 3, 4)
        assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()


def test_taps_are_normalised_fixed_point():
    for n_in, n_out in [(384, 256), (64, 256), (1080, 256), (7, 3)]:
        first, weights = pil_bilinear_taps(n_in, n_out)
        rows, taps = np.nonzero(weights)
        assert first.min() >= 0 and (first[rows] + taps).max() < n_in  # weights only on source positions
        assert np.abs(weights.astype(np.int64).sum(1) - (1 << 22)).max() <= weights.shape[1]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match='uint8'):
        pil_bilinear_resize(torch.zeros(3, 4, 4), 2, 2)
    with pytest.raises(ValueError, match='positive'):
        pil_bilinear_taps(0, 4)
