"""Atomic checkpoint writing and the resume state (last.pth).

``ckpt_best.pth`` holds only the model weights under the original release's key names, so the original code
can load it. ``last.pth`` holds everything needed to continue a run exactly: model, optimiser, scheduler,
gradient scaler, completed epochs, best rank-1, the loss lists pending for the next log entry, the random
number generator states and the arguments of the run.
"""
import os
import random
import tempfile

import numpy as np
import torch

from util.errors import CheckpointError, OutputError

RESUME_FORMAT = 'ste-nvan-resume-v1'


def atomic_save(obj, path, write=torch.save):
    """write(obj, file) to `path` (torch.save by default) so that readers see the old file or the complete
    new one, never a partial file.

    The object is written to a temporary file in the same directory (same file system, so the final
    os.replace is atomic), flushed and fsynced first; on any failure the temporary file is removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


def check_writable(path, flag, directory=False):
    """Refuse an output path that cannot be written, before any work is done: one ReIDError line naming
    `flag` and the reason. `path` is a file to be created (its directory must be writable) or, with
    directory=True, a directory. Missing directories are created; no other file is left behind."""
    path = os.path.abspath(os.fspath(path))
    if directory:
        if os.path.exists(path) and not os.path.isdir(path):
            raise OutputError(f'{flag} {path}: exists and is not a directory')
        target = path
    else:
        if os.path.isdir(path):
            raise OutputError(f'{flag} {path}: is a directory, expected a file name')
        target = os.path.dirname(path)
    missing = target
    while not os.path.exists(missing):
        missing = os.path.dirname(missing)
    if not os.path.isdir(missing):
        raise OutputError(f'{flag} {path}: {missing} is a file, not a directory')
    if not os.access(missing, os.W_OK | os.X_OK):
        raise OutputError(f'{flag} {path}: {missing} is not writable')
    try:
        os.makedirs(target, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix='.write-test.', dir=target)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise OutputError(f'{flag} {path}: cannot write there ({err.strerror or err})') from None


def _fsync_dir(directory):
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rng_state():
    """The python, numpy and torch (CPU and CUDA) generator states, as plain types and tensors only, so that
    last.pth loads with torch.load(weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {'python': random.getstate(), 'numpy': (name, keys.tolist(), pos, has_gauss, cached),
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state['cuda'])


def save_resume_state(path, *, model_state, config, optimizer, scheduler, scaler, epoch, best_rank1, pending,
                      args):
    """Write last.pth atomically. `model_state` is the original-format state dict and `config` the model's
    configuration (models.load_checkpoint checks it); `epoch` counts completed epochs; `pending` holds the
    per-epoch loss strings not yet written to the log."""
    atomic_save({
        'format': RESUME_FORMAT,
        'model': model_state,
        'config': dict(config),
        'optimizer': optimizer.state_dict(),
        'scheduler': scheduler.state_dict() if scheduler is not None else None,
        'scaler': scaler.state_dict() if scaler is not None else None,
        'epoch': epoch,
        'best_rank1': best_rank1,
        'pending': pending,
        'rng': rng_state(),
        'args': dict(vars(args)),
    }, path)


def resolve_resume_path(path):
    """--resume accepts last.pth itself or the --ckpt directory holding it."""
    if os.path.isdir(path):
        path = os.path.join(path, 'last.pth')
    if not os.path.isfile(path):
        raise CheckpointError(f'--resume {path}: no such file (expected the last.pth a training run writes)')
    return path


def load_resume_state(path):
    """Read a last.pth written by save_resume_state (tensors on the CPU)."""
    path = resolve_resume_path(path)
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which and why, in one line
        raise CheckpointError(f'--resume {path}: cannot read it ({type(err).__name__}: {err})') from None
    if not isinstance(state, dict) or state.get('format') != RESUME_FORMAT:
        raise CheckpointError(f'--resume {path}: not a resume state (a last.pth written by this project is '
                              'expected; use --load_ckpt for weights only)')
    return state


# Arguments that may change between an interrupted run and its continuation without changing its results.
_FREE_TO_CHANGE = {'resume', 'n_epochs', 'num_workers', 'device', 'eval_every', 'resume_validation',
                   'batch_size', 'log_path', 'ckpt', 'compile', 'load_ckpt', 'resize_on_device'}


def changed_args(saved, args):
    """Names and (saved, current) values of the arguments that differ from the resumed run's."""
    current = vars(args)
    return {k: (saved[k], current.get(k)) for k in sorted(saved)
            if k not in _FREE_TO_CHANGE and saved[k] != current.get(k)}
