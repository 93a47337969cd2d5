"""What the dataset builders share: directory scanning, frame names, numeric frame order, .mat split files,
and the write that replaces a database directory as a whole.

Every error is one ``DataError`` line naming the path and what was expected. Builders work inside
``replacing_directory``: the new database is written beside the old one, which it replaces only when complete.
"""

import errno
import glob
import json
import os
import re
import secrets
import shutil
import sys
from contextlib import contextmanager
from itertools import repeat

import numpy as np
import scipy.io
from tqdm import tqdm

from util.errors import BROKEN_DEPENDENCY, DataError

# The original's list: these extensions in lower or upper case.
IMAGE_EXTENSIONS = ('.jpg', '.JPG', '.jpeg', '.JPEG', '.png', '.PNG', '.ppm', '.PPM', '.bmp', '.BMP')
IMAGE_HINT = 'frame images (.jpg .jpeg .png .ppm .bmp)'


def is_image_file(name):
    return name.endswith(IMAGE_EXTENSIONS)


# Files an operating system's file browser leaves in a folder of pictures.
SYSTEM_FILES = frozenset({'Thumbs.db', 'ehthumbs.db', 'desktop.ini', 'Desktop.ini'})


def is_hidden(name):
    """.DS_Store, AppleDouble ._0001.png and the like, which archives made on a Mac carry, and Windows'
    Thumbs.db / desktop.ini: skipped by every builder, never counted as frames."""
    return name.startswith('.') or name in SYSTEM_FILES


# ----------------------------------------------------------------------------------------------------
# Directory listing
# ----------------------------------------------------------------------------------------------------

def scandir(path, what, skip_hidden=False):
    """(sorted names of the files, sorted names of the sub-directories) of a directory, which must exist and
    hold something (hidden entries do not count with skip_hidden)."""
    if not os.path.isdir(path):
        kind = 'is not a directory' if os.path.exists(path) else 'directory not found'
        raise DataError(f'{path}: {kind} (expected {what})')
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except OSError as e:
        raise DataError(f'{path}: cannot list directory ({e.strerror})') from None
    if skip_hidden:
        entries = [e for e in entries if not is_hidden(e.name)]
    if not entries:
        raise DataError(f'{path}: empty directory (expected {what})')
    # d_type from the directory listing: no stat per frame (a symbolic link is followed, a loop is an error).
    try:
        files = [e.name for e in entries if not e.is_dir()]
        dirs = [e.name for e in entries if e.is_dir()] if len(files) < len(entries) else []
    except OSError as e:
        raise DataError(f'{e.filename or path}: cannot read it ({e.strerror or e}; expected {what} in '
                        f'{path})') from None
    return sorted(files), sorted(dirs)


def list_subdirs(path, what, skip_hidden=False):
    """Sorted names of the sub-directories of `path`, which must hold nothing else and not be empty."""
    files, dirs = scandir(path, what, skip_hidden)
    if files:
        raise DataError(f'{os.path.join(path, files[0])}: not a directory (expected only {what} in {path})')
    return dirs


def list_frames(path, skip_hidden=False, strict=True, what=IMAGE_HINT):
    """Sorted names of the frame images of a directory: the one frame lister of the project.

    strict (a benchmark's frame directories): anything but image files is an error. Otherwise (the crop folder
    of a tracker or of your own tool) other files and sub-directories are passed over. Either way the directory
    must hold at least one image. `what` says in an error what the directory should hold."""
    names, dirs = scandir(path, what, skip_hidden)
    if strict:
        if dirs or not all(map(str.endswith, names, repeat(IMAGE_EXTENSIONS))):
            bad = dirs[0] if dirs else next(n for n in names if not n.endswith(IMAGE_EXTENSIONS))
            raise DataError(f'{os.path.join(path, bad)}: not an image file (expected only {IMAGE_HINT} '
                            f'in {path})')
        return names
    images = [n for n in names if n.endswith(IMAGE_EXTENSIONS)]
    if not images:
        raise DataError(f'{path}: no images among its {len(names) + len(dirs)} entries (expected {what})')
    return images


class FrameList:
    """Frames of one split in database order, grouped by the directory that holds them."""

    def __init__(self):
        self.dirs = []      # absolute directory of each group
        self.counts = []    # frames per group
        self.names = []     # every frame name, in order
        self._text = []     # path-list text, one chunk per group

    def add(self, abs_dir, names):
        prefix = abs_dir + os.sep
        # One join per directory instead of an abspath per frame: listdir names are never '.' or '..',
        # so abspath(join(root, id, name)) == abspath(root)/id/name.
        self._text.append(prefix + ('\n' + prefix).join(names) + '\n')
        self.dirs.append(abs_dir)
        self.counts.append(len(names))
        self.names.extend(names)

    def __len__(self):
        return len(self.names)

    def group(self, i):
        return int(np.searchsorted(np.cumsum(self.counts), i, side='right'))

    def path(self, i):
        return os.path.join(self.dirs[self.group(i)], self.names[i])

    def path_text(self):
        # np.savetxt(fmt='%s', delimiter='\n') writes every path followed by a newline; the encoding is the
        # file system's, so every listed path opens again (ASCII paths are identical either way).
        return os.fsencode(''.join(self._text))


def progress(items, desc, enabled, unit='dir'):
    return tqdm(items, desc=desc, unit=unit, disable=not enabled, leave=False, dynamic_ncols=True)


# ----------------------------------------------------------------------------------------------------
# Frame names (vectorised over all frames of a split)
# ----------------------------------------------------------------------------------------------------

def codes(names, width):
    """(N, width) int32 code points of the first `width` characters of each name (0 past the end)."""
    if not names:
        return np.zeros((0, width), np.int32)
    # Assigning to a fixed-width unicode array truncates: a C-speed way to cut every name at once.
    return np.array(names, dtype=f'U{width}').view(np.uint32).reshape(len(names), width).astype(np.int32)


def is_digit(c):
    return (c >= ord('0')) & (c <= ord('9'))


def number(c):
    """Decimal value of digit columns (N, k) -> (N,)."""
    weights = 10 ** np.arange(c.shape[1] - 1, -1, -1)
    return (c - ord('0')) @ weights


def has(c, col, char):
    return c[:, col] == ord(char)


def field_numbers(names, fields, sep='_'):
    """Integer values of `sep`-separated fields of each name without its extension, and whether they are ones.

    fields: an index into ``stem.split(sep)`` or a tuple of them, negative counting from the end
    (``cam1_person001_00317.png``, field -1: 317). Returns int64 values (0 where not a number) and a bool
    mask, each (N,) for one field or (N, len(fields)).

    Names of one length with their separators and extension dot in the same columns (zero-padded fields, the
    usual case) are parsed column-wise as arrays; the others one by one.
    """
    single = not isinstance(fields, (tuple, list))
    fields = (fields,) if single else tuple(fields)
    values, ok = np.zeros((len(names), len(fields)), np.int64), np.zeros((len(names), len(fields)), bool)
    lengths = np.fromiter(map(len, names), np.int64, len(names))
    groups = np.unique(lengths) if len(names) and lengths.min() != lengths.max() else lengths[:1]
    rest = []
    for length in groups:
        rows = np.flatnonzero(lengths == length) if len(groups) > 1 else np.arange(len(names))
        c = _same_length_codes(names if len(groups) == 1 else [names[i] for i in rows.tolist()], int(length))
        # 1 at separators, 2 at dots: the names parse alike where these agree with the first name's.
        marks = _MARKS[sep][c] if c.dtype == np.uint8 else (c == ord(sep)) + 2 * (c == ord('.'))
        same = (marks == marks[0]).all(1)
        for j, field in enumerate(fields):
            layout = _field_columns(names[rows[0]], field, sep)
            if layout is None:
                continue
            digits = c[:, layout[0]:layout[1]]
            good = same & is_digit(digits).all(1) & (0 < layout[1] - layout[0] <= 18)
            value = np.zeros(len(rows), np.int64)
            for k in range(digits.shape[1]):  # Horner's rule, one column at a time
                value = value * 10 + (digits[:, k].astype(np.int64) - ord('0'))
            ok[rows, j] = good
            values[rows, j] = np.where(good, value, 0)
        rest.extend(rows[~same].tolist())
    for i in rest:
        name = names[i]
        parts = (name.rpartition('.')[0] if '.' in name else name).split(sep)
        for j, field in enumerate(fields):
            text = parts[field] if -len(parts) <= field < len(parts) else ''
            ok[i, j] = text.isascii() and text.isdigit() and len(text) <= 18
            values[i, j] = int(text) if ok[i, j] else 0
    return (values[:, 0], ok[:, 0]) if single else (values, ok)


class _MarkTables(dict):
    """sep -> (256,) lookup giving 1 for the separator, 2 for the dot and 0 otherwise, for ASCII codes."""

    def __missing__(self, sep):
        table = np.zeros(256, np.uint8)
        table[ord(sep)], table[ord('.')] = 1, 2
        self[sep] = table
        return table


_MARKS = _MarkTables()


def _same_length_codes(names, length):
    """(N, length) code points of names that all have `length` characters: one join and one encode, much
    cheaper per name than building a fixed-width numpy string array."""
    text = ''.join(names)
    if text.isascii():
        return np.frombuffer(text.encode('ascii'), np.uint8).reshape(len(names), length)
    return np.frombuffer(text.encode('utf-32-le'), np.uint32).reshape(len(names), length)


def _field_columns(name, field, sep):
    """[lo, hi) columns of the field in a name, or None if it has no such field."""
    stem = name.rpartition('.')[0] if '.' in name else name
    cuts = [-1] + [k for k, ch in enumerate(stem) if ch == sep] + [len(stem)]
    k = field if field >= 0 else len(cuts) - 1 + field
    if not 0 <= k < len(cuts) - 1:
        return None
    return cuts[k] + 1, cuts[k + 1]


def frame_order(numbers, counts):
    """Permutation putting the frames of each group (consecutive runs of `counts`) in frame-number order, or
    None when they already are (the usual case).

    Stable: frames with equal numbers keep their listing order.
    """
    descending = np.diff(numbers) < 0
    descending[np.cumsum(counts)[:-1] - 1] = False  # a new group may start lower
    if not descending.any():
        return None
    return np.lexsort((numbers, np.repeat(np.arange(len(counts)), counts)))


def check_unique_frames(numbers, counts, path):
    """Refuse two frames with one frame number in a sequence (``_00311`` and ``_311``, ``F0001`` twice): the
    order between them, and so the clips, would be arbitrary. numbers: (N,) in frame order, groups of
    `counts`; path(i): the path of frame i, for the message."""
    same = np.diff(numbers) == 0
    same[np.cumsum(counts)[:-1] - 1] = False  # across two sequences
    if same.any():
        i = int(np.argmax(same))
        raise DataError(f'{path(i)} and {path(i + 1)}: two frames with frame number {numbers[i]} in one sequence '
                        f'(expected one file per frame)')


def info_rows(counts, pids, cams):
    """int64 (T, 4) rows [start, end, pid, cam], 0-based inclusive, of consecutive sequences."""
    counts = np.asarray(counts, np.int64)
    end = np.cumsum(counts) - 1
    return np.stack([end - counts + 1, end, np.asarray(pids, np.int64), np.asarray(cams, np.int64)], axis=1)


# ----------------------------------------------------------------------------------------------------
# Two-camera sets with ten train/test splits (iLIDS-VID, PRID2011)
# ----------------------------------------------------------------------------------------------------

def person_number(name, where):
    """pid of a person directory: the number its name ends with (person042, person_0042 -> 42)."""
    match = re.fullmatch(r'\D*(\d+)', name)
    if match is None:
        raise DataError(f'{os.path.join(where, name)}: person directory name does not end with a number '
                        f'(expected e.g. person001 or person_0001)')
    return int(match.group(1))


def list_persons(cam_dir, what):
    return list_subdirs(cam_dir, what, skip_hidden=True)


def read_sequence(seq_dir, frame_field, example):
    """Image names of one sequence directory in frame-number order (hidden files skipped)."""
    names = list_frames(seq_dir, skip_hidden=True)
    numbers, ok = field_numbers(names, frame_field)
    if not ok.all():
        bad = names[int(np.argmin(ok))]
        raise DataError(f'{os.path.join(seq_dir, bad)}: frame name does not parse (expected a frame number '
                        f'in it, e.g. {example})')
    order = np.argsort(numbers, kind='stable')
    check_unique_frames(numbers[order], [len(names)], lambda i: os.path.join(seq_dir, names[order[i]]))
    return [names[i] for i in order]


def check_split_names(splits, known, split_file):
    """Every split: disjoint non-empty train and test lists of person directories that exist in both
    cameras (`known`: name -> None, or the directory where it is missing)."""
    for k, split in enumerate(splits):
        train, test = split['train'], split['test']
        if not train or not test:
            raise DataError(f'{split_file}: split {k} has an empty train or test list (expected persons in '
                            f'both)')
        for name in train + test:
            if name not in known:
                raise DataError(f'{split_file}: split {k} names person {name!r}, which is not a person '
                                f'directory of the data')
            if known[name] is not None:
                raise DataError(f'{known[name]}: directory not found, but {split_file} (split {k}) needs '
                                f'person {name} in both cameras')
        for part, names in (('train', train), ('test', test)):
            if len(set(names)) != len(names):
                twice = next(n for k2, n in enumerate(names) if n in names[:k2])
                raise DataError(f'{split_file}: split {k} names person {twice!r} twice in its {part} list '
                                f'(expected each person once)')
        both = set(train) & set(test)
        if both:
            raise DataError(f'{split_file}: split {k} has person {sorted(both)[0]!r} in both train and test '
                            f'(expected disjoint lists)')


def two_camera_database(splits, sequences, pids):
    """Database files of every split: {'split_<k>/<file>': content}.

    sequences[name] = ((dir of camera 1, frame names), (dir of camera 2, frame names)); pids[name] = pid.
    Train: both cameras of each training person. Test: the camera-1 sequence of each test person (the
    queries, rows 0..n-1), then their camera-2 sequences (the gallery, rows n..2n-1).
    """
    files = {}
    for k, split in enumerate(splits):
        train = [(name, cam) for name in split['train'] for cam in (1, 2)]
        test = [(name, cam) for cam in (1, 2) for name in split['test']]
        for part, seqs in (('train', train), ('test', test)):
            frames = FrameList()
            for name, cam in seqs:
                frames.add(*sequences[name][cam - 1])
            files[f'split_{k}/{part}_path.txt'] = frames.path_text()
            files[f'split_{k}/{part}_info.npy'] = info_rows(frames.counts, [pids[n] for n, _ in seqs],
                                                            [c for _, c in seqs])
        n = len(split['test'])
        files[f'split_{k}/query_IDX.npy'] = np.arange(n, dtype=np.int64)
        files[f'split_{k}/gallery_IDX.npy'] = np.arange(n, 2 * n, dtype=np.int64)
    # torchreid's splits file (json.dump with indent 4), so the splits can be cross-checked there.
    files['splits.json'] = json.dumps(splits, indent=4, separators=(',', ': ')).encode()
    return files


def splits_from_ls_set(ls_set, names):
    """The Wang et al. ECCV 2014 rule: row k's first half are the test persons, the rest the training ones.
    ls_set: 0-based (10, N) indices into `names`. Lists in index order, as torchreid writes them."""
    half = ls_set.shape[1] // 2
    return [{'train': [names[i] for i in sorted(row[half:])], 'test': [names[i] for i in sorted(row[:half])]}
            for row in ls_set.tolist()]


def read_json(path, what):
    """The value of a user's JSON file; a missing or unreadable one is one DataError naming `what` it should be."""
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f'{path}: file not found (expected {what})') from None
    except (OSError, ValueError) as e:
        raise DataError(f'{path}: cannot read it as JSON ({e}); expected {what}') from None


def load_split_json(path):
    """torchreid's splits file: a list of 10 {"train": [person dir names], "test": [...]}."""
    what = 'a list of 10 {"train": [person directory names], "test": [...]} (torchreid\'s format)'
    splits = read_json(path, what)
    if not isinstance(splits, list) or len(splits) != 10:
        got = f'a list of {len(splits)}' if isinstance(splits, list) else f'a {type(splits).__name__}'
        raise DataError(f'{path}: holds {got}; expected {what}')
    for k, split in enumerate(splits):
        if not isinstance(split, dict) or sorted(split) != ['test', 'train']:
            keys = sorted(split) if isinstance(split, dict) else type(split).__name__
            raise DataError(f'{path}: split {k} has keys {keys}; expected {what}')
        for part in ('train', 'test'):
            if not isinstance(split[part], list) or not all(isinstance(n, str) for n in split[part]):
                raise DataError(f'{path}: split {k} {part!r} is not a list of names; expected {what}')
    return splits


# ----------------------------------------------------------------------------------------------------
# .mat files
# ----------------------------------------------------------------------------------------------------

def load_mat(path, key, what):
    """A numeric variable of a MATLAB file, v5 (scipy) or v7.3 (HDF5, read with h5py, shape as MATLAB's)."""
    if not os.path.isfile(path):
        raise DataError(f'{path}: file not found (expected {what} with variable {key!r})')
    try:
        mat = scipy.io.loadmat(path)
    except BROKEN_DEPENDENCY:
        raise
    except PermissionError:
        raise DataError(f'{path}: permission denied (expected {what} with variable {key!r})') from None
    except Exception as e:  # scipy raises several types for a damaged file (one line); v7.3 files are HDF5
        mat = _load_hdf5_mat(path, e)
    if key not in mat:
        found = ', '.join(sorted(k for k in mat if not k.startswith('__'))) or 'none'
        raise DataError(f'{path}: no variable {key!r} (found: {found}); expected {what}')
    value = mat[key]
    if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)) \
            or value.size == 0:
        raise DataError(f'{path}: variable {key!r} is a {value.dtype} array of shape {value.shape}; '
                        f'expected {what}')
    if np.issubdtype(value.dtype, np.floating) and not np.array_equal(value, np.round(value)):
        raise DataError(f'{path}: variable {key!r} holds non-integer values; expected {what}')
    return value


def _load_hdf5_mat(path, scipy_error):
    import h5py
    if not h5py.is_hdf5(path):
        raise DataError(f'{path}: cannot read it as a MATLAB .mat file ({scipy_error})') from None
    try:
        with h5py.File(path, 'r') as f:
            # h5py sees MATLAB's column-major arrays transposed; an empty dataset has no array: a 0-size one.
            return {k: (np.zeros(0) if f[k].shape is None else np.asarray(f[k]).T)
                    for k in f if isinstance(f[k], h5py.Dataset)}
    except PermissionError:
        raise DataError(f'{path}: permission denied (expected a readable MATLAB .mat file)') from None
    except OSError as e:
        if os.path.isfile(path) and not os.access(path, os.R_OK):
            raise DataError(f'{path}: permission denied (expected a readable MATLAB .mat file)') from None
        raise DataError(f'{path}: cannot read it as a MATLAB .mat file ({e})') from None


def load_ls_set(path, num_persons, names_what):
    """``ls_set`` of a train/test split file: (10, num_persons) 1-based person indices, each row a
    permutation. Returns int64 0-based indices; errors name the file and what was expected."""
    what = f'a (10, {num_persons}) array of 1-based indices into {names_what}'
    ls_set = load_mat(path, 'ls_set', what)
    if ls_set.shape != (10, num_persons):
        raise DataError(f"{path}: variable 'ls_set' has shape {ls_set.shape}; expected {what}")
    ls_set = ls_set.astype(np.int64)
    bad = np.argwhere((ls_set < 1) | (ls_set > num_persons))
    if bad.size:
        r, k = bad[0]
        raise DataError(f"{path}: ls_set[{r}, {k}] is {ls_set[r, k]}; expected {what} (1..{num_persons})")
    for r, row in enumerate(ls_set):
        if len(np.unique(row)) != num_persons:
            raise DataError(f'{path}: ls_set row {r} names a person twice; expected {what}, each row a '
                            f'permutation')
    return ls_set - 1


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------

@contextmanager
def replacing_directory(target, what='the database', keep_others=True, inputs=()):
    """Yield a new empty directory beside `target` to write into; on success it replaces `target` whole.

    Until the final swap `target` is untouched, so a failure at any point leaves the old directory complete
    (the new one is removed). The swap is two renames on one file system, the second undone if it fails.
    With keep_others, entries of the old directory that the new one does not have (a user's own files) are
    moved over afterwards; every step is checked to be permitted before the first rename. A `target` that
    is a symbolic link is written through: the directory it points to is replaced, the link stays.

    Refused before any work: a `target` that is the current directory or one of its ancestors, or that
    holds or lies inside one of `inputs` (the directories read). A swap that a killed process left half
    done is finished or undone first, and its temporary directories removed. OSError becomes one DataError.
    """
    given = os.fspath(target)
    target = os.path.realpath(given)  # through a symbolic link, to the directory it names
    if os.path.exists(target) and not os.path.isdir(target):
        raise DataError(f'{given}: exists and is not a directory (expected an output directory)')
    _refuse_overlap(given, target, inputs)
    parent, base = os.path.split(target)
    try:
        recover_swap(target, keep_others)
        _check_swap_permitted(target, keep_others)
        os.makedirs(parent, exist_ok=True)
        # the pid in the name: a later build leaves alone what a running one has there
        new = os.path.join(parent, f'.{base}.partial-{os.getpid()}-{secrets.token_hex(4)}')
        os.mkdir(new)  # honours the umask, as mkdir -p does
    except OSError as e:
        raise DataError(f'{given}: cannot write {what} ({e.strerror or e})') from None
    try:
        yield new
        _check_swap_permitted(target, keep_others, new)
        with _signals_held():  # Ctrl-C or SIGTERM waits for the swap to finish; kill -9: recover_swap
            _swap(new, target, keep_others)
    except OSError as e:
        shutil.rmtree(new, ignore_errors=True)
        where = os.path.realpath(os.fspath(e.filename)) if e.filename else None
        if where is not None and not _inside(where, target) and not _inside(where, new) \
                and os.path.dirname(where) != parent:  # an input's fault, not the output's
            raise DataError(f'{e.filename}: cannot read it ({e.strerror or e})') from None
        raise DataError(f'{given}: cannot write {what} ({e.strerror or e})') from None
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise


def _inside(path, directory):
    """Whether `path` is `directory` or lies below it (both real, absolute)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _refuse_overlap(given, target, inputs):
    """The swap renames `target` away: never the shell's current directory, an input, or a folder of one."""
    cwd = os.path.realpath(os.getcwd())
    if _inside(cwd, target):
        raise DataError(f'{given}: is the current directory or one of its parents, which the database would '
                        f'replace as a whole (expected a directory of its own, e.g. ./database)')
    for path in inputs:
        real = os.path.realpath(os.fspath(path))
        if _inside(real, target) or _inside(target, real):
            raise DataError(f'{given}: holds or lies inside the input directory {os.fspath(path)}, which the '
                            f'database would replace or mix with (expected a directory outside it)')


def _swap_leftovers(target, kind):
    """The `kind` directories ('partial', 'old', 'trash') of swaps of `target` whose process is gone."""
    parent, base = os.path.split(target)
    if not os.path.isdir(parent):
        return []
    found = sorted(glob.glob(os.path.join(glob.escape(parent), f'.{glob.escape(base)}.{kind}-*')))
    return [path for path in found if not _running(path.rsplit(f'.{kind}-', 1)[1].split('-')[0])]


def _running(pid_text):
    """Whether another live process has this pid (names without one are an older version's: not running)."""
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def recover_swap(target, keep_others=True, log=None):
    """Finish or undo a swap of `target` that a killed process left half done, and remove its temporary
    directories; returns what was done, one sentence each (also given to `log`, stderr by default).

    Killed between the two renames, `target` is missing and ``.<base>.old-*`` holds the old directory
    whole: it is put back. Killed after them, the new directory is in place and the user's files not yet
    moved are in ``.<base>.old-*``: they are moved now (with keep_others). ``.<base>.partial-*`` (an
    unfinished new directory) and ``.<base>.trash-*`` (a finished swap's old files) are removed.
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    done = []
    for old in _swap_leftovers(target, 'old'):
        if not os.path.lexists(target):
            os.rename(old, target)
            done.append(f'note: {target}: an interrupted rebuild had moved it to {old}; restored it')
        else:
            moved = _move_missing(old, target) if keep_others else 0
            _discard(old)
            done.append(f'note: {target}: finished an interrupted rebuild, moving {moved} file(s) of yours '
                        f'back from {old}')
    for kind in ('partial', 'trash'):
        for path in _swap_leftovers(target, kind):
            try:
                shutil.rmtree(path)
            except OSError as e:  # nothing of yours is in there: only space is lost
                done.append(f'note: could not remove {path}, left by an interrupted run ({e.strerror or e})')
                continue
            if kind == 'partial':
                done.append(f'note: removed {path}, left by an interrupted run')
    for line in done:
        log(line)
    return done


def _user_entries(old, new):
    """Names in `old` that `new` does not have (a user's own files); `new` None: every name."""
    names = sorted(os.listdir(old))
    return names if new is None else [n for n in names if not os.path.lexists(os.path.join(new, n))]


def _check_swap_permitted(target, keep_others, new=None):
    """Raise PermissionError before the first rename when a later step of the swap would be refused: the
    renames need the parent writable; moving the user's files needs the old directory writable (and each
    moved sub-directory, whose '..' changes)."""
    parent = os.path.dirname(target)
    while not os.path.isdir(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)  # the directory where the missing ones will be made
    blocked = None
    if not os.access(parent, os.W_OK | os.X_OK):
        blocked = parent
    elif os.path.isdir(target) and keep_others:
        names = _user_entries(target, new)
        if names and not os.access(target, os.W_OK | os.X_OK):
            blocked = target
        else:
            blocked = next((os.path.join(target, n) for n in names
                            if os.path.isdir(os.path.join(target, n)) and not os.path.islink(os.path.join(target, n))
                            and not os.access(os.path.join(target, n), os.W_OK | os.X_OK)), None)
    if blocked is not None:
        raise PermissionError(errno.EACCES, f'{blocked} is not writable, so the files there could not be moved '
                                            f'or removed when the new database replaces it; nothing was changed')


def _move_missing(old, target):
    """Move the entries of `old` that `target` lacks into `target`; returns how many."""
    names = _user_entries(old, target)
    for name in names:
        os.rename(os.path.join(old, name), os.path.join(target, name))
    return len(names)


def _discard(old):
    """Remove what is left of an old directory: renamed to .trash-* first, so a kill during the removal
    leaves nothing that looks like an unfinished swap."""
    parent, base = os.path.split(old)
    trash = os.path.join(parent, base.replace('.old-', '.trash-', 1))
    os.rename(old, trash)
    try:
        shutil.rmtree(trash)
    except OSError as e:  # the new directory is in place with every file of yours: only space is lost
        print(f'note: could not remove {trash} ({e.strerror or e}), the replaced files; delete it when you can',
              file=sys.stderr)


@contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM (delivered on exit) where the platform allows it."""
    import signal
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _swap(new, target, keep_others):
    if not os.path.lexists(target):
        os.rename(new, target)
        return
    parent, base = os.path.split(target)
    old = os.path.join(parent, f'.{base}.old-{os.path.basename(new).split(".partial-", 1)[1]}')
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    if keep_others:
        _move_missing(old, target)
    _discard(old)


def write_files(root, files):
    """Write {relative path: bytes | ndarray (np.save)} under `root` (a directory of replacing_directory)."""
    for name, content in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            if isinstance(content, np.ndarray):
                np.save(f, content)
            else:
                f.write(content)
