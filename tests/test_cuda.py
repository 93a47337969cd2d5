"""What only a CUDA device can show: normalisation on the GPU, nvJPEG decoding, the fused attention kernels,
the exact resize on the GPU, and the scripts with --device cuda (bf16 / fp16 with channels_last,
--decode_on_device, --compile). NCCL
needs two GPUs (one process per device), so torchrun on one GPU creates no process group and is not here. Skipped
where torch sees no CUDA device; `bash benchmarks/gpu_check.sh` runs them on a GPU."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from models.non_local import attend
from models.preprocess import normalize_clip
from util.data.loaders import make_test_loader, read_database
from util.data.resize import pil_bilinear_resize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 64, 32


@pytest.fixture(scope='module')
def db(tiny_mars):
    return tiny_mars(seed=2, num_train_ids=4, num_test_ids=4, height=H, width=W, max_len=12, num_junk=2,
                     num_distractors=2) / 'db'


def test_normalisation_on_the_gpu_equals_the_cpu():
    clips = torch.randint(0, 256, (2, 4, 3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    gpu = normalize_clip(clips.pin_memory(), device='cuda').cpu()
    assert gpu.dtype == torch.float32
    assert (gpu - normalize_clip(clips)).abs().max().item() <= 1e-6


def test_fused_attention_matches_the_explicit_reference():
    gen = torch.Generator(device='cuda').manual_seed(0)
    q, k, v = (torch.randn(4, 512, 64, device='cuda', generator=gen) * 0.1 for _ in range(3))
    reference = attend(q.double(), k.double(), v.double(), 'explicit')
    for dtype, tol in ((torch.float32, 1e-3), (torch.bfloat16, 2e-2)):
        out = attend(q.to(dtype), k.to(dtype), v.to(dtype), 'sdpa').double()
        assert ((out - reference).norm() / reference.norm()).item() < tol, dtype


@pytest.mark.parametrize('size', [(H, W), (2 * H, 2 * W), (H // 2 + 3, W // 2 - 1)])
def test_resize_on_the_gpu_equals_pillow(db, size):
    """--resize_on_device: frames decoded on the CPU, pinned, resized on the GPU with Pillow's integer
    arithmetic: byte for byte the CPU pipeline's clips. Also the resize alone on random images."""
    data = read_database(db / 'test_path.txt', db / 'test_info.npy')
    device_side = make_test_loader(data, 4, 8, 1, *size, pin_memory=True, decoder='resize_on_device')
    for (a, _, _), (b, _, _) in zip(device_side, make_test_loader(data, 4, 8, 0, *size, decoder='pil')):
        clips = a.decode('cuda')
        assert clips.device.type == 'cuda' and torch.equal(clips.cpu(), b)
    images = torch.randint(0, 256, (5, 3, 97, 41), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for target in [(256, 128), (30, 11)]:
        assert torch.equal(pil_bilinear_resize(images.cuda(), *target).cpu(), pil_bilinear_resize(images, *target))


def encoded_batches(db, height, width):
    data = read_database(db / 'test_path.txt', db / 'test_info.npy')
    return [batch for batch, _, _ in make_test_loader(data, 4, 8, 0, height, width, decoder='device')]


@pytest.mark.parametrize('size', [(H, W), (2 * H, 2 * W)])
def test_gpu_decoding_is_close_to_the_cpu_decoder(db, size):
    """nvJPEG and libjpeg-turbo are different decoders (IDCT, chroma upsampling): close, not equal."""
    diffs = []
    for batch in encoded_batches(db, *size):
        gpu, cpu = batch.decode('cuda'), batch.decode('cpu')
        assert gpu.device.type == 'cuda' and gpu.dtype == torch.uint8 and gpu.shape == cpu.shape
        diffs.append((gpu.cpu().int() - cpu.int()).abs().flatten())
    diff = torch.cat(diffs).float()
    psnr = 10 * torch.log10(255 ** 2 / diff.square().mean())
    print(f'nvJPEG vs libjpeg-turbo at {size}: max {diff.max():.0f}, mean {diff.mean():.3f} grey levels, '
          f'PSNR {psnr:.1f} dB')
    assert diff.mean() < 4


def test_gpu_decoding_under_load_equals_decoding_at_rest(db):
    """Decoding right after GPU work that frees memory (as a training step does) gives the same bytes as
    decoding on an idle device: nothing overwrites the decoder's outputs (pytorch/vision#9606)."""
    batches = encoded_batches(db, H, W)
    at_rest = [b.decode('cuda').cpu() for b in batches]
    torch.cuda.synchronize()
    for _ in range(3):
        for batch, expected in zip(batches, at_rest):
            busy = torch.randn(2048, 2048, device='cuda')
            for _ in range(8):
                busy = busy @ busy / 2048  # long queue that reads, then frees, the caching allocator's blocks
            del busy
            assert torch.equal(batch.decode('cuda').cpu(), expected)


# ---------------------------------------------------------------- the scripts on a GPU

def db_args(d, test_only=False):
    test = ['--test_txt', d / 'test_path.txt', '--test_info', d / 'test_info.npy', '--query_info', d / 'query_IDX.npy']
    return test if test_only else ['--train_txt', d / 'train_path.txt', '--train_info', d / 'train_info.npy'] + test


SMALL = ['--S', '4', '--height', H, '--width', W, '--num_workers', '2', '--batch_size', '8']
TRAIN = SMALL + ['--class_per_batch', '2', '--track_per_class', '2', '--n_epochs', '2', '--eval_every', '1',
                 '--pretrained', 'none', '--lr', '1e-4']
NL = ['--model_type', 'resnet50_NL', '--non_layers', '0', '2', '3', '0', '--temporal', 'Done', '--track_id_loss']
STE = ['--model_type', 'resnet50_NL_stripe_hr', '--non_layers', '0', '2', '3', '0', '--stripes', '4', '4', '2', '2',
       '--temporal', 'Done', '--track_id_loss']


def run(*argv, launcher=(sys.executable,)):
    proc = subprocess.run([*launcher, *map(str, argv)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f'{argv[0]} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}')
    return proc.stdout


def logged_scores(ckpt):
    log = (ckpt / 'loss.txt').read_text()
    scores = re.findall(r'^epoch \d+, rank-1 (\S+) , mAP (\S+)$', log, re.M)
    assert len(scores) == 2, log
    return [tuple(map(float, s)) for s in scores]


@pytest.mark.parametrize('model, flags', [(NL, ['--amp', 'bf16', '--channels_last', '--decode_on_device']),
                                          (STE, ['--amp', 'fp16', '--channels_last'])],
                         ids=['NVAN-bf16-cl-nvjpeg', 'STE-NVAN-fp16-cl'])
def test_train_then_evaluate_on_the_gpu(db, tmp_path, model, flags):
    ckpt = tmp_path / 'ckpt'
    run('train_NL.py', *db_args(db), *TRAIN, *model, *flags, '--device', 'cuda', '--ckpt', ckpt)
    (rank1, mAP), = logged_scores(ckpt)[-1:]
    assert 0 <= rank1 <= 1 and 0 <= mAP <= 1

    state = torch.load(ckpt / 'ckpt_best.pth')  # the original's format: a plain state dict
    assert state and all(t.device.type == 'cpu' and t.is_contiguous() for t in state.values())

    features = {}
    for device in ('cuda', 'cpu'):
        features[device] = tmp_path / f'{device}.npz'
        run('evaluate.py', *db_args(db, test_only=True), *SMALL, *model, '--device', device,
            '--load_ckpt', ckpt / 'ckpt_best.pth', '--save_features', features[device])
    a, b = (np.load(features[d])['features'].astype(np.float64) for d in ('cuda', 'cpu'))
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.999  # TF32 convolutions on the GPU, full float32 on the CPU


def test_compile_on_the_gpu(db, tmp_path):
    ckpt = tmp_path / 'ckpt'
    run('train_NL.py', *db_args(db), *TRAIN, *NL, '--device', 'cuda', '--amp', 'bf16', '--channels_last',
        '--compile', '--ckpt', ckpt)
    assert len(logged_scores(ckpt)) == 2
