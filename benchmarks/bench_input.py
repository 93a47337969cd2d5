"""Input pipeline throughput per DataLoader worker: ours against the original per-frame PIL pipeline.

Writes synthetic JPEG frames (smooth random pictures with sensor-like noise, about the file size of MARS
frames) into a temporary directory, groups them into tracklets of S frames, and times one pass of the
evaluation loader (every frame decoded once) in a single process with one thread, as one worker runs:

* original: per frame PIL open -> Resize((H, W)) -> ToTensor -> Normalize, float clips stacked and
  concatenated (what utils.Video_test_Dataset and its collate did);
* ours (pil): util.data.loaders.TestClipDataset with Pillow decoding, uint8 clips collated;
* ours (auto): the same with libjpeg-turbo through torchvision (the default);
* the "+ normalize" column adds models.preprocess.normalize_clip on the CPU, one op per batch (in training it
  runs on the GPU instead);
* resize (--resize_on_device): what the worker does (decode each frame at its own size and pack the
  frames), and, on the next row, that plus the exact resize and normalisation of the batch on the CPU;
* device (--decode_on_device): what the worker does (read the JPEG files and pack them), and, on the next
  row, that plus decoding, resizing and normalising the batch on the CPU;
* with --device cuda, rows for the resize (and for nvJPEG decoding) plus normalisation on the GPU
  (wall-clock frames/s of the GPU, the batches' frames prepared beforehand) and their largest differences.

Throughput is frames per CPU-second of the process (one thread, so what one worker delivers). Passes
alternate between pipelines and the best of --repeats is reported. The script also checks that the
normalised batches equal the original pipeline's.

    python benchmarks/bench_input.py [--frames 2000] [--sizes 256x128 128x64] [--repeats 3] [--device cuda]
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from benchmarks.machine import cpu_name, sync  # benchmarks/machine.py, which also makes models/ and util/ importable
from models.preprocess import normalize_clip
from util.data.frames import DeviceBatch
from util.data.loaders import Database, make_test_loader


def write_frames(directory, n, height, width, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (16, 8, 3), dtype=np.uint8))
        base = np.asarray(small.resize((width, height), Image.BICUBIC)).astype(np.int16)
        noisy = np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)
        path = os.path.join(directory, f'{i:05d}.jpg')
        Image.fromarray(noisy).save(path, quality=90)
        paths.append(path)
    return paths


class OriginalStyleDataset(Dataset):
    """The original evaluation dataset's per-clip work: a float transform per frame, then a stack."""

    def __init__(self, paths, S, height, width):
        self.paths, self.S = paths, S
        self.transform = T.Compose([T.Resize((height, width)), T.ToTensor(),
                                    T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])

    def __len__(self):
        return len(self.paths) // self.S

    def __getitem__(self, i):
        frames = [self.transform(Image.open(p)) for p in self.paths[i * self.S:(i + 1) * self.S]]
        return torch.stack(frames, dim=0), torch.ones(1, dtype=torch.int32), torch.ones(1, dtype=torch.int32)


def original_collate(batch):
    clips, labels, cams = zip(*batch)
    return torch.cat(clips, dim=0), torch.cat(labels, dim=0), torch.cat(cams, dim=0)


def one_pass(loader, normalize=False, device=None):
    """CPU seconds of one pass (a worker is CPU-bound, and CPU time is robust on a shared machine). With a
    device: wall-clock seconds of decoding and normalising there, the batches' files read beforehand."""
    if device is not None:
        batches = [batch[0] for batch in loader]
        sync(device)
        start = time.perf_counter()
        out = [normalize_clip(clips.decode(device)) for clips in batches]
        sync(device)
        return time.perf_counter() - start, [x.cpu() for x in out]
    start = time.process_time()
    out = []
    for batch in loader:
        clips = batch[0]
        if isinstance(clips, DeviceBatch):
            if not normalize:  # the worker's share only: the files read and packed
                out.append(clips)
                continue
            clips = clips.decode('cpu')
        out.append(normalize_clip(clips) if normalize else clips)
    return time.process_time() - start, out


def run_size(paths, S, batch_size, height, width, repeats, device='cpu'):
    n_clip = len(paths) // S
    info = np.stack([np.arange(n_clip) * S, np.arange(n_clip) * S + S - 1,
                     np.ones(n_clip, int), np.ones(n_clip, int)], axis=1)
    db = Database(paths[:n_clip * S], info)
    loaders = {
        'original': (DataLoader(OriginalStyleDataset(paths, S, height, width), batch_size=batch_size,
                                collate_fn=original_collate), False),
        'ours (pil)': (make_test_loader(db, S, batch_size, 0, height, width, decoder='pil'), False),
        'ours (auto)': (make_test_loader(db, S, batch_size, 0, height, width, decoder='auto'), False),
        'ours (pil) + normalize': (make_test_loader(db, S, batch_size, 0, height, width, decoder='pil'), True),
        'ours (auto) + normalize': (make_test_loader(db, S, batch_size, 0, height, width), True),
        'resize: worker decodes': (make_test_loader(db, S, batch_size, 0, height, width,
                                                    decoder='resize_on_device'), False),
        'resize: + CPU resize, norm.': (make_test_loader(db, S, batch_size, 0, height, width,
                                                         decoder='resize_on_device'), True),
        'device: worker reads': (make_test_loader(db, S, batch_size, 0, height, width, decoder='device'), False),
        'device: + CPU decode, norm.': (make_test_loader(db, S, batch_size, 0, height, width, decoder='device'),
                                        True),
    }
    if device != 'cpu':  # frames per second of the GPU's work, not per CPU-second
        loaders['resize: GPU resize, norm.'] = (make_test_loader(db, S, batch_size, 0, height, width,
                                                                 decoder='resize_on_device'), device)
        loaders['device: GPU decode, norm.'] = (make_test_loader(db, S, batch_size, 0, height, width,
                                                                 decoder='device'), device)
    best = {name: float('inf') for name in loaders}
    outputs = {}
    for round_ in range(repeats + 1):  # round 0 warms the page cache and is not counted
        for name, (loader, normalize) in loaders.items():
            if isinstance(normalize, str):
                seconds, outputs[name] = one_pass(loader, True, device=normalize)
            else:
                seconds, outputs[name] = one_pass(loader, normalize)
            if round_:
                best[name] = min(best[name], seconds)
    reference = torch.cat(outputs['original'])                                  # (N*S, 3, H, W)
    diff = {name: (torch.cat(outputs[name]).flatten(0, 1) - reference).abs().max().item()
            for name, (_, normalize) in loaders.items() if normalize}
    frames = n_clip * S
    return {name: frames / best[name] for name in loaders}, diff


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=2000)
    parser.add_argument('--sizes', nargs='+', default=['256x128', '128x64'],
                        help='source frame sizes HxW (resized to --height x --width)')
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--S', type=int, default=8)
    parser.add_argument('--batch_size', type=int, default=8, help='clips per batch')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'),
                        help='cuda: also time --resize_on_device and --decode_on_device (nvJPEG) on the GPU '
                             '(GPU frames/s) and their differences')
    args = parser.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device')
    torch.set_num_threads(1)  # a DataLoader worker runs with one thread

    print(f'input pipeline, one process, 1 thread; {cpu_name()}, '
          f'{os.cpu_count()} cores, torch {torch.__version__}')
    print(f'{args.frames} JPEG frames per size, S={args.S}, batches of {args.batch_size} clips, '
          f'output {args.height}x{args.width}, best of {args.repeats} passes, frames per CPU-second\n')
    header = f'{"source":>8} | {"pipeline":<28} | {"frames/s":>9} | {"vs original":>11}'
    print(header)
    print('-' * len(header))
    for size in args.sizes:
        h, w = (int(v) for v in size.lower().split('x'))
        with tempfile.TemporaryDirectory() as directory:
            paths = write_frames(directory, args.frames, h, w)
            rates, max_diff = run_size(paths, args.S, args.batch_size, args.height, args.width, args.repeats,
                                       args.device)
        for name, rate in rates.items():
            print(f'{size:>8} | {name:<28} | {rate:9.0f} | {rate / rates["original"]:10.2f}x')
        ours = max(v for k, v in max_diff.items() if k.startswith('ours'))
        others = ', '.join(f'{k} {v:.1e}' for k, v in max_diff.items() if not k.startswith('ours'))
        print(f'{"":>8} | max |normalised - original|: ours {ours:.1e}, {others}')


if __name__ == '__main__':
    main()
