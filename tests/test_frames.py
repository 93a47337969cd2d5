"""util.data.frames: frame decoding (libjpeg-turbo and Pillow give the same pixels, the fallbacks), the ImageNet
normalisation, and the device batches of --resize_on_device / --decode_on_device (tests/test_data.py checks
them through the loaders)."""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import random_image, reference_pipeline, reference_uint8

from models.preprocess import normalize_clip
from util.data import frames
from util.data.frames import DeviceBatch, load_clip, load_frame, read_encoded_clip, read_source_clip
from util.errors import DataError

H, W = 16, 8


# ---- decoding -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('decoder', ['auto', 'pil'])
@pytest.mark.parametrize('size', [(H, W), (32, 16), (8, 4), (24, 10)])
def test_load_frame_equals_torchvision_resize(jpegs, decoder, size):
    path = jpegs / 'f05.jpg'
    got = load_frame(str(path), *size, decoder=decoder)
    assert got.dtype == torch.uint8 and got.shape == (3, *size)
    assert torch.equal(got, reference_uint8(path, *size))


def jpeg_variants():
    rng = np.random.default_rng(3)
    for (h, w), subsampling, progressive in itertools.product([(16, 8), (23, 11), (5, 7)], [0, 1, 2],
                                                               [False, True]):
        yield random_image(rng, h, w), dict(subsampling=subsampling, progressive=progressive, quality=85)
    yield random_image(rng, 17, 9).convert('L'), dict(quality=90)


def test_libjpeg_decoder_equals_pillow(tmp_path):
    for i, (img, options) in enumerate(jpeg_variants()):
        path = tmp_path / f'v{i}.jpg'
        img.save(path, **options)
        for size in [(img.height, img.width), (H, W)]:
            fast = frames.read_frame(str(path), *size, decoder='auto')
            assert np.array_equal(fast, frames.read_frame(str(path), *size, decoder='pil')), (i, options, size)
            assert np.array_equal(fast, reference_uint8(path, *size).permute(1, 2, 0).numpy())


def test_choose_decoder(jpegs, tmp_path):
    assert frames.choose_decoder(str(jpegs / 'f00.jpg'), H, W) == 'auto'       # JPEG at the output size
    assert frames.choose_decoder(str(jpegs / 'f00.jpg'), 2 * H, 2 * W) == 'pil'  # resized anyway: Pillow
    random_image(np.random.default_rng(0), 8, 8).save(tmp_path / 'x.png')
    assert frames.choose_decoder(str(tmp_path / 'x.png'), 8, 8) == 'auto'       # decided per frame
    assert frames.choose_decoder(str(tmp_path / 'missing.jpg'), H, W) == 'auto'


def test_libjpeg_agrees(jpegs, tmp_path, monkeypatch):
    monkeypatch.setattr(frames, '_FALLBACKS_WARNED', set())
    assert frames.libjpeg_agrees(str(jpegs / 'f00.jpg'))
    random_image(np.random.default_rng(0), 8, 8).save(tmp_path / 'x.png')
    assert frames.libjpeg_agrees(str(tmp_path / 'x.png'))                   # not a JPEG: Pillow anyway
    monkeypatch.setattr(frames, 'decode_jpeg', lambda data, mode: torch.zeros(3, H, W, dtype=torch.uint8))
    with pytest.warns(UserWarning, match=r'different pixels for .*f00\.jpg'):
        assert not frames.libjpeg_agrees(str(jpegs / 'f00.jpg'))
    monkeypatch.setattr(frames, 'decode_jpeg', None)                       # no torchvision.io: nothing to compare
    assert frames.libjpeg_agrees(str(jpegs / 'f00.jpg'))


# -- the fast decoder's fallbacks: expected failures go to Pillow with one warning, others surface

def _fallback_warnings(record, text):
    return [w for w in record if text in str(w.message)]


def test_decode_corrupt_jpeg_falls_back_to_pillow_with_one_warning(jpegs, tmp_path, monkeypatch):
    monkeypatch.setattr(frames, '_FALLBACKS_WARNED', set())
    raw = (jpegs / 'f00.jpg').read_bytes()
    for i in range(2):  # truncated: libjpeg refuses, and so does Pillow, whose error names the file
        (tmp_path / f'cut{i}.jpg').write_bytes(raw[:len(raw) - 10 - i])
    with pytest.warns(UserWarning, match=r'torchvision cannot decode .*cut0\.jpg') as record:
        for i in range(2):
            with pytest.raises(DataError, match=rf'cannot read frame .*cut{i}\.jpg'):
                frames.read_frame(str(tmp_path / f'cut{i}.jpg'), H, W)
    assert len(_fallback_warnings(record, 'torchvision cannot decode')) == 1

    def refuse(*args, **kwargs):  # what torchvision raises for a JPEG it cannot decode
        raise RuntimeError('decode_jpeg: Image is incomplete or truncated')

    monkeypatch.setattr(frames, 'decode_jpeg', refuse)
    monkeypatch.setattr(frames, '_FALLBACKS_WARNED', set())
    with pytest.warns(UserWarning) as record:
        for i in range(3):
            path = str(jpegs / f'f{i:02d}.jpg')
            assert np.array_equal(frames.read_frame(path, H, W), frames.read_frame(path, H, W, decoder='pil'))
    assert len(_fallback_warnings(record, 'torchvision cannot decode')) == 1


def test_decode_with_a_broken_torchvision_is_not_hidden(jpegs, monkeypatch):
    def missing_operator(*args, **kwargs):  # torchvision whose image extension did not load
        raise AttributeError("'_OpNamespace' 'image' object has no attribute 'decode_jpeg'")

    monkeypatch.setattr(frames, 'decode_jpeg', missing_operator)
    with pytest.raises(AttributeError, match='no attribute'):
        frames.read_frame(str(jpegs / 'f00.jpg'), H, W)


def test_decode_without_torchvision_io_warns_and_uses_pillow():
    code = ("import sys, warnings; sys.modules['torchvision.io'] = None; warnings.simplefilter('always')\n"
            "import util.data.frames as f; print(f.decode_jpeg)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, '-c', code], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == 'None', proc.stderr
    assert 'torchvision.io cannot be imported' in proc.stderr and 'decoded with Pillow' in proc.stderr


def test_decoders_agree_warns_once_and_lets_unexpected_errors_through(jpegs, monkeypatch):
    monkeypatch.setattr(frames, '_FALLBACKS_WARNED', set())
    path = str(jpegs / 'f00.jpg')
    pixels = frames.read_frame(path, H, W, decoder='pil')
    assert frames._decoders_agree(path, pixels)
    with pytest.warns(UserWarning, match=r'different pixels for .*f00\.jpg') as record:
        assert not frames._decoders_agree(path, 255 - pixels)
        assert not frames._decoders_agree(str(jpegs / 'f01.jpg'), pixels)
    assert len(_fallback_warnings(record, 'different pixels')) == 1
    (jpegs / 'not_an_image.jpg').write_bytes(b'\xff\xd8\xff' + bytes(20))
    assert frames._decoders_agree(str(jpegs / 'not_an_image.jpg'), pixels)  # Pillow cannot read it: no verdict

    def broken_open(*args, **kwargs):
        raise ImportError('cannot import name _imaging')

    monkeypatch.setattr(frames.Image, 'open', broken_open)
    with pytest.raises(ImportError):
        frames._decoders_agree(path, pixels)


def test_other_formats_go_through_pillow(tmp_path):
    rng = np.random.default_rng(4)
    img = random_image(rng, 12, 6).convert('P')
    img.save(tmp_path / 'p.png')
    (tmp_path / 'png_named.jpg').write_bytes((tmp_path / 'p.png').read_bytes())
    for name in ['p.png', 'png_named.jpg']:
        assert torch.equal(load_frame(str(tmp_path / name), H, W), reference_uint8(tmp_path / 'p.png', H, W))


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_normalize_clip_equals_totensor_normalize(jpegs, dtype):
    paths = [str(jpegs / f'f{i:02d}.jpg') for i in (0, 4, 9)]
    for size in [(H, W), (32, 16)]:
        clip = load_clip(paths, *size)                                        # (3, 3, H, W) uint8
        reference = torch.stack([reference_pipeline(p, *size) for p in paths])
        got = normalize_clip(clip.unsqueeze(0), dtype=dtype)[0]
        assert got.dtype == dtype
        if dtype == torch.float32:
            assert (got - reference).abs().max().item() < 1e-6
        else:
            assert torch.equal(got, reference.to(dtype))


# ---- device batches -----------------------------------------------------------------------------------

@pytest.mark.parametrize('read', [read_encoded_clip, read_source_clip])
def test_device_batch_decodes_to_the_worker_clips(jpegs, read):
    """Each distinct file travels once; decode('cpu') gives load_clip's clips, resized and flipped."""
    rows = [[str(jpegs / f'f{i:02d}.jpg') for i in row] for row in ([0, 1, 1], [2, 5, 7])]
    batch = DeviceBatch([read(rows[0], 32, 16), read(rows[1], 32, 16, flip=True)])
    assert len(batch) == 2 and len(batch.offsets) - 1 == 5 and batch.frames.tolist() == [[0, 1, 1], [2, 3, 4]]
    expected = torch.stack([load_clip(rows[0], 32, 16), load_clip(rows[1], 32, 16, flip=True)])
    assert torch.equal(batch.decode('cpu'), expected)


def test_gpu_decoding_drains_the_stream_first(jpegs, monkeypatch):
    """nvJPEG may write its outputs before work queued on the caller's stream has finished with that memory:
    the stream is synchronised before the decoder is called (the CUDA calls are recorded, not run)."""
    calls = []

    class Stream:
        def synchronize(self):
            calls.append('synchronize')

    def fake_decode(files, mode, device):
        calls.append(('decode', str(device), len(files)))
        return [torch.zeros(3, H, W, dtype=torch.uint8) for _ in files]

    monkeypatch.setattr(torch.cuda, 'current_stream', lambda device=None: Stream())
    monkeypatch.setattr(frames, 'decode_jpeg', fake_decode)
    paths = [str(jpegs / f'f{i:02d}.jpg') for i in (0, 1, 2, 5)]
    batch = DeviceBatch([read_encoded_clip(paths[:2], H, W), read_encoded_clip(paths[2:], H, W)])  # 4 files
    batch._decode_files(torch.device('cuda', 0))
    assert calls == ['synchronize', ('decode', 'cuda:0', 4)]
    calls.clear()
    batch._decode_files(torch.device('cpu'))
    assert calls == [('decode', 'cpu', 4)]
