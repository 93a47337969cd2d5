"""Files of a training run: atomic writes, reading weight files, the run's lock, and the resume state.

``ckpt_best.pth`` holds only the model weights under the original release's key names, so the original code
can load it; ``ckpt_best.json`` beside it records the run configuration (model type, non-local placement,
clip length, frame size, classes) and the checksum of the weights it describes. ``last.pth`` holds
everything needed to continue a run exactly: model, run configuration, optimiser, scheduler, gradient
scaler, completed epochs, best rank-1, the loss lists pending for the next log entry, the size of the log
file, the random number generator states and the arguments of the run.
"""
import math
import os
import random
import socket

import numpy as np
import torch

from util.errors import CheckpointError, OutputError
from util.io import atomic_save, load_torch_file, write_text

RESUME_FORMAT = 'ste-nvan-resume-v1'
LOCK_NAME = '.lock'
# The files that make a --ckpt directory hold a run, and the other files a run writes there (results.json:
# where the run scripts have evaluate.py --results score it; --overwrite removes it with the run it scores).
RUN_FILES = ('last.pth', 'ckpt_best.pth')
RUN_OUTPUTS = RUN_FILES + ('ckpt_best.json', 'metrics.csv', 'training_curves.png', 'results.json')


# -- the run's ownership of its --ckpt directory ---------------------------------------------------------------

class RunLock:
    """Exclusive use of a --ckpt directory by one training process, for the whole run.

    An flock on the directory itself: the kernel releases it when the process ends, however it ends, so a
    killed run never blocks the next one. The holder's pid and host are written to ``.lock`` for the message
    a second process gives, and the file is removed on release. On a file system without flock (some
    network mounts) the pid in ``.lock`` is checked instead.
    """

    def __init__(self, directory):
        self.directory = os.path.abspath(os.fspath(directory))
        self.path = os.path.join(self.directory, LOCK_NAME)
        self.fd = None

    def acquire(self):
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError as err:
            raise OutputError(f'--ckpt {self.directory}: cannot open it ({err.strerror or err})') from None
        try:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f'--ckpt {self.directory} is in use by another training run ({self._holder()}); '
                              'wait for it to finish or pass another --ckpt') from None
        except (ImportError, OSError):  # no flock here: trust a live pid in the lock file
            holder = self._live_holder()
            if holder:
                os.close(fd)
                raise OutputError(f'--ckpt {self.directory} is in use by another training run ({holder}); '
                                  'wait for it to finish or pass another --ckpt') from None
        try:
            write_text(self.path, f'{os.getpid()} {socket.gethostname()}\n')
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def _read(self):
        try:
            with open(self.path) as f:
                pid, host = (f.read().split() + ['', ''])[:2]
            return int(pid), host
        except (OSError, ValueError):
            return None, None

    def _holder(self):
        pid, host = self._read()
        return f'pid {pid} on {host}' if pid else 'pid unknown'

    def _live_holder(self):
        pid, host = self._read()
        if not pid or pid == os.getpid():
            return None
        if host != socket.gethostname():
            return f'pid {pid} on {host}'  # cannot check another machine's processes
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f'pid {pid} on {host}'

    def release(self):
        if self.fd is None:
            return
        try:
            if self._read()[0] == os.getpid():
                os.remove(self.path)
        except OSError:
            pass
        os.close(self.fd)  # releases the flock
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def existing_run_files(directory):
    """The files of RUN_FILES present in `directory` (a previous run's)."""
    return [name for name in RUN_FILES if os.path.exists(os.path.join(directory, name))]


# -- random number generators ----------------------------------------------------------------------------------

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


# -- last.pth ----------------------------------------------------------------------------------------------------

def save_resume_state(path, *, model_state, config, optimizer, scheduler, scaler, epoch, best_rank1, pending,
                      log_size, flags):
    """Write last.pth atomically. `model_state` is the original-format state dict and `config` the run
    configuration (models.load_checkpoint checks it); `epoch` counts completed epochs; `pending` holds the
    per-epoch loss strings not yet written to the log; `log_size` is the log file's size in bytes once this
    epoch's lines are in it (a resumed run cuts off what an interrupted epoch wrote after that); `flags` the
    run's command-line flags, name -> value (stored as 'args')."""
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
        'log_size': log_size,
        'rng': rng_state(),
        'args': dict(flags),
    }, path)


def resolve_resume_path(path):
    """--resume accepts last.pth itself or the --ckpt directory holding it."""
    if os.path.isdir(path):
        path = os.path.join(path, 'last.pth')
    if not os.path.isfile(path):
        if os.path.isfile(os.path.join(os.path.dirname(path), 'ckpt_best.pth')):
            raise CheckpointError(f'--resume {path}: no such file: the run in {os.path.dirname(path)} stopped '
                                  'before it saved its first last.pth, so it cannot be continued; start it again '
                                  'there with --overwrite (or from its weights: --load_ckpt ckpt_best.pth)')
        raise CheckpointError(f'--resume {path}: no such file (expected the last.pth a training run writes)')
    return path


def load_resume_state(path):
    """Read a last.pth written by save_resume_state (tensors on the CPU, every one finite)."""
    path = resolve_resume_path(path)
    state = load_torch_file(path, '--resume')
    if not isinstance(state, dict) or state.get('format') != RESUME_FORMAT:
        raise CheckpointError(f'--resume {path}: not a resume state (a last.pth written by this project is '
                              'expected; use --load_ckpt for weights only)')
    return state


# Arguments that may change between an interrupted run and its continuation without changing its results.
_FREE_TO_CHANGE = {'resume', 'n_epochs', 'num_workers', 'device', 'eval_every', 'resume_validation',
                   'batch_size', 'log_path', 'ckpt', 'compile', 'load_ckpt', 'resize_on_device', 'overwrite',
                   'tensorboard'}


def changed_args(saved, current, defaults=None):
    """Names and (saved, current) values of the flags (dicts name -> value) that differ from the resumed
    run's. `defaults` maps a flag to the value that None stands for (--non_layers omitted = 0 2 3 0); flags
    that one of the two runs does not have are ignored."""
    defaults = defaults or {}

    def value(v, k):
        v = defaults.get(k) if v is None else v
        return list(v) if isinstance(v, tuple) else v

    return {k: (saved[k], current[k]) for k in sorted(saved)
            if k not in _FREE_TO_CHANGE and k in current and not _same(value(saved[k], k), value(current[k], k))}


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
