"""Files of a training run: atomic writes, reading weight files, the run's lock, and the resume state.

``ckpt_best.pth`` holds only the model weights under the original release's key names, so the original code
can load it; ``ckpt_best.json`` beside it records the run configuration (model type, non-local placement,
clip length, frame size, classes) and the checksum of the weights it describes. ``last.pth`` holds
everything needed to continue a run exactly: model, run configuration, optimiser, scheduler, gradient
scaler, completed epochs, best rank-1, the loss lists pending for the next log entry, the size of the log
file, the random number generator states and the arguments of the run.
"""
import glob
import hashlib
import io
import json
import math
import os
import random
import socket
import tempfile

import numpy as np
import torch

from util.errors import BROKEN_DEPENDENCY, CheckpointError, OutputError

RESUME_FORMAT = 'ste-nvan-resume-v1'
CONFIG_FORMAT = 'ste-nvan-config-v1'
LOCK_NAME = '.lock'
# The files that make a --ckpt directory hold a run, and the other files a run writes there (results.json:
# where the run scripts have evaluate.py --results score it; --overwrite removes it with the run it scores).
RUN_FILES = ('last.pth', 'ckpt_best.pth')
RUN_OUTPUTS = RUN_FILES + ('ckpt_best.json', 'metrics.csv', 'training_curves.png', 'results.json')


# -- writing ---------------------------------------------------------------------------------------------------

def _umask():
    # os.umask is the portable way to read it (set and restore); the training process creates no files in
    # other threads meanwhile
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save(obj, path, write=None):
    """write(obj, file) to `path` (torch.save by default) so that readers see the old file or the complete
    new one, never a partial file.

    The object is written to a temporary file ``.<name>.*.tmp`` in the same directory (same file system, so
    the final os.replace is atomic), flushed and fsynced first; on any failure or interrupt the temporary
    file is removed (those of a killed process are removed by `remove_stale_temporaries`). The file gets the
    permissions of a plain open() under the current umask. A file-system fault (no space, read-only, a file
    where a directory should be) is an OutputError naming the path.
    """
    write = torch.save if write is None else write
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=directory)
        with os.fdopen(fd, 'wb') as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600
            sink = _Sink(f)
            write(obj, sink)
            if sink.failed is not None:  # a writer that swallowed it
                raise sink.failed
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as err:
        # torch.save reports a failed write as RuntimeError('... unexpected pos ...') chained from the OSError
        cause = _os_error(err)
        if cause is None:
            raise
        raise OutputError(f'cannot write {path}: {cause.strerror or cause}') from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    _fsync_dir(directory)


class _Sink:
    """The temporary file as a writer sees it. After a write fails (a full disk) later writes, seeks and
    flushes do nothing, so that a writer's own clean-up (np.savez's ZipFile closing again in __del__, after
    the file is closed) prints no second traceback; the first error is raised, and kept in `failed`."""

    def __init__(self, file):
        self._file, self.failed = file, None

    def write(self, data):
        if self.failed is not None:
            return len(data)
        try:
            return self._file.write(data)
        except OSError as err:
            self.failed = err
            raise

    def seek(self, *args):
        return 0 if self.failed is not None else self._file.seek(*args)

    def tell(self):
        return 0 if self.failed is not None else self._file.tell()

    def flush(self):
        if self.failed is None:
            self._file.flush()

    def __getattr__(self, name):
        return getattr(self._file, name)


def _os_error(err):
    """`err` itself, or the OSError it was raised from, or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def write_text(path, text, append=False):
    """Write (or append) text durably; a file-system fault is an OutputError naming the path."""
    path = os.fspath(path)
    if not append:
        atomic_save(text, path, write=lambda t, f: f.write(t.encode()))
        return
    try:
        with open(path, 'a') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise OutputError(f'cannot write {path}: {err.strerror or err}') from None


def remove_stale_temporaries(directory, names):
    """Remove the temporary files that atomic_save of `names` left in `directory` when its process was
    killed (and check_writable's probes); returns the removed paths. Call it holding the directory's lock."""
    patterns = [f'.{glob.escape(name)}.*.tmp' for name in names] + ['.write-test.*']
    stale = sorted({p for pattern in patterns for p in glob.glob(os.path.join(glob.escape(directory), pattern))})
    for path in stale:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise OutputError(f'cannot remove the stale temporary file {path}: {err.strerror or err}') from None
    return stale


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


# -- reading weight files ----------------------------------------------------------------------------------------

def load_torch_file(path, what='checkpoint'):
    """torch.load(weights_only=True) of a user's file onto the CPU, every floating-point tensor checked to be
    finite. `what` names the file's role in the one-line CheckpointError of a missing, unreadable, foreign
    or non-finite file (e.g. 'checkpoint', '--resume', "pretrained")."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'{what} {path}: no such file')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except BROKEN_DEPENDENCY:
        raise
    except Exception as err:  # noqa: BLE001 - any unpickling failure of a user's file is one line
        raise CheckpointError(f'{what} {path}: cannot be read as a PyTorch file ({_load_failure(path, err)})') \
            from None
    bad = _first_non_finite(obj)
    if bad is not None:
        name, count, total, others = bad
        more = f' (and {others} more tensors)' if others else ''
        raise CheckpointError(f'{what} {path}: tensor {name} holds {count} NaN or infinite values of {total}'
                              f'{more}; the run that wrote it diverged, use an earlier checkpoint')
    return obj


def _load_failure(path, err):
    """The reason torch.load failed, in a few words instead of torch's paragraphs of weights_only advice."""
    with open(path, 'rb') as f:
        head = f.read(8)
    if not head:
        return 'the file is empty'
    if head[:4] != b'PK\x03\x04' and head[:1] != b'\x80':  # torch.save: a zip archive or a legacy pickle
        return (f'not a PyTorch file: it starts with bytes {head.hex(" ")}, where torch.save writes a zip '
                f'archive (50 4b 03 04) or a pickle (80)')
    text = str(err)
    if 'Unsupported global' in text:
        name = text.split('GLOBAL', 1)[1].split()[0] if 'GLOBAL' in text else 'a Python class'
        return f'it holds pickled Python objects ({name}), not only tensors: save model.state_dict() instead'
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f'{type(err).__name__}: {lines[0] if lines else "unreadable"}'


def _tensors(obj, prefix=''):
    """(dotted name, tensor) of every tensor in nested dicts / lists / tuples."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f'{prefix}.{k}' if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f'{prefix}.{i}' if prefix else str(i))


def _first_non_finite(obj):
    """(name, non-finite count, size, number of other non-finite tensors) of the first tensor with NaN or
    infinite values, or None."""
    found = []
    for name, t in _tensors(obj):
        if (t.is_floating_point() or t.is_complex()) and t.device.type != 'meta':
            finite = torch.isfinite(t)
            if not bool(finite.all()):
                found.append((name, int((~finite).sum()), t.numel()))
    if not found:
        return None
    return (*found[0], len(found) - 1)


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


# -- the run configuration beside ckpt_best.pth --------------------------------------------------------------

def config_path(weights_path):
    """ckpt_best.pth -> ckpt_best.json."""
    return os.path.splitext(os.fspath(weights_path))[0] + '.json'


def save_best_weights(path, state, config):
    """Write the weights (a state dict) to `path` and the run configuration with the file's checksum to
    config_path(path), both atomically. The weights file stays a plain state dict (the original code loads
    it); the checksum lets a reader tell whether the .json describes the .pth beside it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    atomic_save(data, path, write=lambda d, f: f.write(d))
    record = {'format': CONFIG_FORMAT, **config, 'weights': os.path.basename(os.fspath(path)),
              'weights_sha256': hashlib.sha256(data).hexdigest()}
    write_text(config_path(path), json.dumps(record, indent=1) + '\n')


def read_weights_config(path):
    """(run configuration or None, note or None) from the .json beside a weights file. The note says why a
    .json that is there was not used (unreadable, or it describes other weights)."""
    side = config_path(path)
    if not os.path.isfile(side):
        return None, None
    try:
        with open(side) as f:
            record = json.load(f)
        if not isinstance(record, dict) or record.get('format') != CONFIG_FORMAT:
            raise ValueError('not a run configuration of this project')
    except (OSError, ValueError) as err:
        return None, f'note: {side} is not readable ({err}); the configuration of {path} is not checked'
    with open(path, 'rb') as f:
        digest = hashlib.file_digest(f, 'sha256').hexdigest()
    if digest != record.get('weights_sha256'):
        return None, (f'note: {side} describes other weights than {path} (checksum differs); the '
                      'configuration is not checked')
    return {k: v for k, v in record.items() if k not in ('format', 'weights', 'weights_sha256')}, None


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
                      log_size, args):
    """Write last.pth atomically. `model_state` is the original-format state dict and `config` the run
    configuration (models.load_checkpoint checks it); `epoch` counts completed epochs; `pending` holds the
    per-epoch loss strings not yet written to the log; `log_size` is the log file's size in bytes once this
    epoch's lines are in it (a resumed run cuts off what an interrupted epoch wrote after that)."""
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
        'args': dict(vars(args)),
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
                   'batch_size', 'log_path', 'ckpt', 'compile', 'load_ckpt', 'resize_on_device', 'overwrite'}


def changed_args(saved, args, defaults=None):
    """Names and (saved, current) values of the arguments that differ from the resumed run's. `defaults`
    maps an argument to the value that None stands for (--non_layers omitted = 0 2 3 0); arguments this
    version no longer has are ignored."""
    current, defaults = vars(args), defaults or {}

    def value(v, k):
        v = defaults.get(k) if v is None else v
        return list(v) if isinstance(v, tuple) else v

    return {k: (saved[k], current[k]) for k in sorted(saved)
            if k not in _FREE_TO_CHANGE and k in current and not _same(value(saved[k], k), value(current[k], k))}


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
