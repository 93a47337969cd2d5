"""Helpers several test files share (fixtures live in conftest.py).

``reference_pipeline`` and ``reference_uint8`` are independent oracles: the original's per-frame torchvision
transform, written out again here so that the project's fast decoding paths are checked against a second
statement of the original's transform rather than against themselves.
"""
import errno
import os
import runpy
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from models import build_model, original_state_dict
from util.evaluation.features_file import FeaturesFile

# The tiny MARS of the `mars_tracks` fixture and the evaluation flags that read it.
MARS_HEIGHT, MARS_WIDTH, MARS_S = 32, 16, 4
CLIP = ['--S', str(MARS_S), '--height', str(MARS_HEIGHT), '--width', str(MARS_WIDTH), '--num_workers', '0',
        '--device', 'cpu', '--batch_size', '5']
MODEL = ['--model_type', 'resnet50_s1', '--temporal', 'mean']


def random_image(rng, h, w):
    """A smooth random picture (JPEG-friendly), with some noise so every pixel differs."""
    small = Image.fromarray(rng.integers(0, 256, (4, 3, 3), dtype=np.uint8))
    base = np.asarray(small.resize((w, h), Image.BICUBIC)).astype(int)
    return Image.fromarray(np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8))


def reference_pipeline(path, height, width):
    """The original per-frame transform."""
    transform = T.Compose([T.Resize((height, width)), T.ToTensor(),
                           T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    return transform(Image.open(path))


def reference_uint8(path, height, width):
    """The original's resized frame before ToTensor: uint8 (3, height, width)."""
    return T.PILToTensor()(T.Resize((height, width))(Image.open(path).convert('RGB')))


def read_png(path):
    """The RGB pixels of a written picture, which must not be blank."""
    img = np.asarray(Image.open(path).convert('RGB'))
    assert img.std() > 0, f'{path} is blank'
    return img


def random_checkpoint(path, model_type='resnet50_s1', num_class=3, seed=0, height=MARS_HEIGHT, **kw):
    """A random-init model with non-trivial BatchNorm statistics, saved as the original's state dict."""
    torch.manual_seed(seed)
    model = build_model(model_type, num_class, pretrained='none', height=height, **kw)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(original_state_dict(model), path)
    return path


def save_features(path, features, labels, cams, query_idx, gallery_idx=None, test_sampling='chunks'):
    """Write a features file (util.evaluation.features_file) from its arrays."""
    FeaturesFile(features, labels, cams, query_idx, gallery_idx, test_sampling=test_sampling).write(path)


def run_as_main(target, *argv, capsys, module=False):
    """`python target argv...` (or `python -m target` with module=True) in this process: the file runs as
    __main__ (runpy) with sys.argv set, so its `if __name__ == '__main__'` line turns the outcome into the exit
    status the process would have; no second interpreter importing torch. Returns (exit status, stdout,
    stderr)."""
    saved = sys.argv
    sys.argv = [target, *map(str, argv)]
    capsys.readouterr()
    try:
        if module:
            runpy.run_module(target, run_name='__main__')
        else:
            runpy.run_path(target, run_name='__main__')
        code = 0
    except SystemExit as stop:
        code = 0 if stop.code is None else stop.code
    finally:
        sys.argv = saved
    out, err = capsys.readouterr()
    return code, out, err


class FullDisk:
    """A file that takes `room` bytes, then fails every write with ENOSPC, as a full disk does."""

    def __init__(self, file, room):
        self.file, self.room = file, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
