"""Files of the user's, written and read safely: atomic writes (readers see the old file or the complete new
one), durable appends, output paths checked before any work, and ``torch.load`` of a user's weight file
(``weights_only=True``, every tensor checked to be finite). The models package uses only this module and the
error classes of util.errors, so it can be lifted into another project with these two files.
"""
import glob
import os
import tempfile

import torch

from util.errors import BROKEN_DEPENDENCY, CheckpointError, OutputError

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
