"""Build the database files (frame path lists and tracklet info arrays) from MARS and DukeMTMC-VideoReID.

The files are the exchange format with the original release, so for well-formed input they are byte for
byte what its `create_MARS_database.py` / `creat_DukeV_database.py` write:

MARS (``build_mars_database``)
    train_path.txt, test_path.txt   absolute frame paths, one per line (each line ends with a newline),
                                    identity directories sorted by name, frames sorted by name inside each
    train_info.npy, test_info.npy   the MARS-evaluation info arrays with start/end made 0-based; dtype,
                                    memory order (MATLAB files load column-major) and pid/cam as loaded
    query_IDX.npy                   query rows made 0-based; dtype and shape as loaded (uint16, (1, Q))

DukeV (``build_dukev_database``)
    train_path.txt, gallery_path.txt   as above, over <id>/<tracklet>/<frame>
    train_info.npy, gallery_info.npy   int64 rows [start, end, pid, cam], 0-based inclusive, one per
                                       tracklet directory; pid from the directory, cam from the frame names
    query_IDX.npy                      int64 (Q,): gallery rows of the query tracklets

Beyond the original, every info row is checked against the names of the frames it covers, bad input stops
with one ``DatabaseError`` line naming the path, and nothing is written until everything has been checked
(the files go to a temporary directory beside the output, which is then renamed).
"""

import os
import secrets
import shutil
from itertools import repeat

import numpy as np
import scipy.io
from tqdm import tqdm

from util.errors import DatabaseError

# The original's list: these extensions in lower or upper case.
IMAGE_EXTENSIONS = ('.jpg', '.JPG', '.jpeg', '.JPEG', '.png', '.PNG', '.ppm', '.PPM', '.bmp', '.BMP')
_IMAGE_HINT = 'frame images (.jpg .jpeg .png .ppm .bmp)'


def is_image_file(name):
    return name.endswith(IMAGE_EXTENSIONS)


# ----------------------------------------------------------------------------------------------------
# Directory listing
# ----------------------------------------------------------------------------------------------------

def _scandir(path, what):
    """(sorted names of the files, sorted names of the sub-directories) of a directory."""
    if not os.path.isdir(path):
        kind = 'is not a directory' if os.path.exists(path) else 'directory not found'
        raise DatabaseError(f'{path}: {kind} (expected {what})')
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except OSError as e:
        raise DatabaseError(f'{path}: cannot list directory ({e.strerror})') from None
    if not entries:
        raise DatabaseError(f'{path}: empty directory (expected {what})')
    # d_type from the directory listing: no stat per frame.
    files = [e.name for e in entries if not e.is_dir()]
    dirs = [e.name for e in entries if e.is_dir()] if len(files) < len(entries) else []
    return sorted(files), sorted(dirs)


def _list_subdirs(path, what):
    """Sorted names of the sub-directories of `path`, which must hold nothing else and not be empty."""
    files, dirs = _scandir(path, what)
    if files:
        raise DatabaseError(f'{os.path.join(path, files[0])}: not a directory (expected only {what} in {path})')
    return dirs


def _list_frames(path):
    """Sorted frame names of a frame directory, which must hold image files only and not be empty."""
    names, dirs = _scandir(path, _IMAGE_HINT)
    if dirs or not all(map(str.endswith, names, repeat(IMAGE_EXTENSIONS))):
        bad = dirs[0] if dirs else next(n for n in names if not n.endswith(IMAGE_EXTENSIONS))
        raise DatabaseError(f'{os.path.join(path, bad)}: not an image file (expected only {_IMAGE_HINT} '
                            f'in {path})')
    return names


class _FrameList:
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


def _progress(items, desc, enabled):
    return tqdm(items, desc=desc, unit='dir', disable=not enabled, leave=False, dynamic_ncols=True)


# ----------------------------------------------------------------------------------------------------
# Frame names
# ----------------------------------------------------------------------------------------------------

def _codes(names, width):
    """(N, width) int32 code points of the first `width` characters of each name (0 past the end)."""
    if not names:
        return np.zeros((0, width), np.int32)
    # Assigning to a fixed-width unicode array truncates: a C-speed way to cut every name at once.
    return np.array(names, dtype=f'U{width}').view(np.uint32).reshape(len(names), width).astype(np.int32)


def _is_digit(c):
    return (c >= ord('0')) & (c <= ord('9'))


def _number(c):
    """Decimal value of digit columns (N, k) -> (N,)."""
    weights = 10 ** np.arange(c.shape[1] - 1, -1, -1)
    return (c - ord('0')) @ weights


def _has(c, col, char):
    return c[:, col] == ord(char)


def parse_mars_names(names):
    """pid, cam and a well-formedness mask of MARS frame names `<pid:4>C<cam>T<tracklet:4>F<frame>...`.

    pid '00-1' (junk) reads as -1. Vectorised over all frames: (N,) int64, (N,) int64, (N,) bool.
    """
    c = _codes(names, 12)
    junk = _has(c, 0, '0') & _has(c, 1, '0') & _has(c, 2, '-') & _has(c, 3, '1')
    pid_ok = _is_digit(c[:, 0:4]).all(1) | junk
    ok = (pid_ok & _has(c, 4, 'C') & _is_digit(c[:, 5]) & _has(c, 6, 'T')
          & _is_digit(c[:, 7:11]).all(1) & _has(c, 11, 'F'))
    pid = np.where(junk, -1, _number(np.clip(c[:, 0:4], ord('0'), ord('9'))))
    cam = c[:, 5] - ord('0')
    return pid, cam, ok


def parse_dukev_names(names):
    """pid, cam and a well-formedness mask of DukeV frame names, either style.

    New: `0001_C6_F0099_X30823.jpg`; old copies: `0001C6F0099X30823.jpg`. (N,) int64, (N,) int64, (N,) bool.
    """
    c = _codes(names, 15)
    new = (_is_digit(c[:, 0:4]).all(1) & _has(c, 4, '_') & _has(c, 5, 'C') & _is_digit(c[:, 6])
           & _has(c, 7, '_') & _has(c, 8, 'F') & _is_digit(c[:, 9:13]).all(1) & _has(c, 13, '_')
           & _has(c, 14, 'X'))
    old = (_is_digit(c[:, 0:4]).all(1) & _has(c, 4, 'C') & _is_digit(c[:, 5]) & _has(c, 6, 'F')
           & _is_digit(c[:, 7:11]).all(1) & _has(c, 11, 'X'))
    pid = _number(np.clip(c[:, 0:4], ord('0'), ord('9')))
    cam = np.where(new, c[:, 6], c[:, 5]) - ord('0')
    return pid, cam, new | old


# ----------------------------------------------------------------------------------------------------
# MARS
# ----------------------------------------------------------------------------------------------------

def _load_mat(path, key, what):
    if not os.path.isfile(path):
        raise DatabaseError(f'{path}: file not found (expected {what} with variable {key!r})')
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for a damaged file
        raise DatabaseError(f'{path}: cannot read it as a MATLAB .mat file ({e})') from None
    if key not in mat:
        found = ', '.join(sorted(k for k in mat if not k.startswith('__'))) or 'none'
        raise DatabaseError(f'{path}: no variable {key!r} (found: {found}); expected {what}')
    value = mat[key]
    if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)) \
            or value.size == 0:
        raise DatabaseError(f'{path}: variable {key!r} is a {value.dtype} array of shape {value.shape}; '
                            f'expected {what}')
    if np.issubdtype(value.dtype, np.floating) and not np.array_equal(value, np.round(value)):
        raise DatabaseError(f'{path}: variable {key!r} holds non-integer values; expected {what}')
    return value


def _load_info(path, key):
    what = 'a (N, 4) array of tracklet rows [start, end, pid, cam]'
    info = _load_mat(path, key, what)
    if info.ndim != 2 or info.shape[1] != 4:
        raise DatabaseError(f'{path}: variable {key!r} has shape {info.shape}; expected {what}')
    return info


def _row_text(info_file, info, r):
    return f'{info_file} row {r + 1} [start, end, pid, cam] = {info[r].tolist()}'


def check_mars_info(info, frames, info_file, split):
    """Check 1-based MARS info rows against the frames of a split; DatabaseError names the first bad row.

    The rows must tile the frame list in order (first starts at 1, each starts right after the previous
    ends, the last ends at the last frame) and every frame name must carry the row's pid and camera.
    """
    info = info.astype(np.int64)
    start, end = info[:, 0], info[:, 1]
    n = len(frames)
    bad = np.flatnonzero(start > end)
    if bad.size:
        raise DatabaseError(f'{_row_text(info_file, info, bad[0])}: start is after end')
    if start[0] != 1:
        raise DatabaseError(f'{_row_text(info_file, info, 0)}: the first row must start at frame 1 '
                            f'(rows tile the {n} frames of {split} in order)')
    bad = np.flatnonzero(start[1:] != end[:-1] + 1)
    if bad.size:
        r = bad[0]
        what = 'a gap before' if start[r + 1] > end[r] + 1 else 'an overlap with'
        raise DatabaseError(f'{info_file} rows {r + 1}-{r + 2}: row {r + 2} starts at frame {start[r + 1]} '
                            f'but row {r + 1} ends at frame {end[r]} ({what} row {r + 2}; rows must tile '
                            f'the {n} frames of {split} in order)')
    if end[-1] != n:
        raise DatabaseError(f'{_row_text(info_file, info, len(info) - 1)}: the last row must end at frame '
                            f'{n}, the number of frames in {split}')

    pid, cam, ok = parse_mars_names(frames.names)
    if not ok.all():
        i = int(np.argmin(ok))
        raise DatabaseError(f'{frames.path(i)}: not a MARS frame name (expected '
                            f'<pid:4>C<cam>T<tracklet:4>F<frame>, e.g. 0001C1T0001F001.jpg)')
    # The identity directory holds its own frames only.
    dir_prefix = _codes([os.path.basename(d) for d in frames.dirs], 4)
    wrong_dir = (np.repeat(dir_prefix, frames.counts, axis=0) != _codes(frames.names, 4)).any(1)
    if wrong_dir.any():
        i = int(np.argmax(wrong_dir))
        raise DatabaseError(f'{frames.path(i)}: frame of another identity (its name does not start with the '
                            f'name of its directory)')
    lengths = end - start + 1
    mismatch = (np.repeat(info[:, 2], lengths) != pid) | (np.repeat(info[:, 3], lengths) != cam)
    if mismatch.any():
        i = int(np.argmax(mismatch))
        r = int(np.searchsorted(end, i + 1))
        raise DatabaseError(f'{_row_text(info_file, info, r)} covers frame {i + 1} {frames.path(i)}, '
                            f'whose name says pid {pid[i]}, camera {cam[i]}')


def check_query_idx(query_idx, num_rows, query_file, info_file):
    """1-based query rows must index the test info rows."""
    q = query_idx.reshape(-1).astype(np.int64)
    bad = np.flatnonzero((q < 1) | (q > num_rows))
    if bad.size:
        k = bad[0]
        raise DatabaseError(f'{query_file}: entry {k + 1} is {q[k]}, but {info_file} has {num_rows} rows '
                            f'(expected 1-based row numbers 1..{num_rows})')


def scan_mars_split(split_dir, progress=True):
    """List the frames of bbox_train or bbox_test: identity directories, then image files, both sorted."""
    ids = _list_subdirs(split_dir, 'one directory per identity, e.g. 0001, 00-1')
    frames = _FrameList()
    root = os.path.abspath(split_dir)
    for name in _progress(ids, f'scanning {os.path.basename(root)}', progress):
        d = os.path.join(root, name)
        frames.add(d, _list_frames(d))
    return frames


def build_mars_database(data_dir, info_dir, output_dir, progress=True):
    """Write MARS_database files for `data_dir` (bbox_train, bbox_test) and `info_dir` (MARS-evaluation)."""
    info_files = {k: os.path.join(info_dir, f) for k, f in
                  [('train', 'tracks_train_info.mat'), ('test', 'tracks_test_info.mat'), ('query', 'query_IDX.mat')]}
    split_dirs = {s: os.path.join(data_dir, f'bbox_{s}') for s in ('train', 'test')}
    # Cheap checks first, so that a typo does not cost a full scan.
    if not os.path.isdir(data_dir):
        raise DatabaseError(f'{data_dir}: directory not found (expected the MARS directory holding '
                            f'bbox_train and bbox_test)')
    if not os.path.isdir(info_dir):
        raise DatabaseError(f'{info_dir}: directory not found (expected MARS-evaluation/info holding '
                            f'tracks_train_info.mat, tracks_test_info.mat and query_IDX.mat)')
    for s, d in split_dirs.items():
        if not os.path.isdir(d):
            raise DatabaseError(f'{d}: directory not found (expected the MARS {s} frames, one directory '
                                f'per identity)')

    train_info = _load_info(info_files['train'], 'track_train_info')
    test_info = _load_info(info_files['test'], 'track_test_info')
    query_idx = _load_mat(info_files['query'], 'query_IDX', 'a (1, Q) array of 1-based test info rows')
    check_query_idx(query_idx, len(test_info), info_files['query'], info_files['test'])

    out = {}
    for split, info in (('train', train_info), ('test', test_info)):
        frames = scan_mars_split(split_dirs[split], progress)
        check_mars_info(info, frames, info_files[split], split_dirs[split])
        # In place, as the original: dtype and (column-major) memory order stay as loaded.
        info[:, 0:2] -= 1
        out[f'{split}_path.txt'] = frames.path_text()
        out[f'{split}_info.npy'] = info
    out['query_IDX.npy'] = query_idx - 1
    write_database(output_dir, out)


# ----------------------------------------------------------------------------------------------------
# DukeMTMC-VideoReID
# ----------------------------------------------------------------------------------------------------

def scan_dukev_split(split_dir, progress=True):
    """List <id>/<tracklet>/<frame> of a DukeV split; returns (frames, keys, info int64 (T, 4)).

    keys[t] = (id directory, tracklet directory) of row t.
    """
    frames = _FrameList()
    keys, pids = [], []
    root = os.path.abspath(split_dir)
    for pid_name in _progress(_list_subdirs(split_dir, 'one directory per identity, e.g. 0001'),
                              f'scanning {os.path.basename(root)}', progress):
        id_dir = os.path.join(root, pid_name)
        if not pid_name.isdigit():
            raise DatabaseError(f'{id_dir}: identity directory name is not a number (expected e.g. 0001)')
        for track in _list_subdirs(id_dir, 'one directory per tracklet, e.g. 0001'):
            d = os.path.join(id_dir, track)
            frames.add(d, _list_frames(d))
            keys.append((pid_name, track))
            pids.append(int(pid_name))

    counts = np.asarray(frames.counts, np.int64)
    end = np.cumsum(counts) - 1
    start = end - counts + 1
    pid, cam, ok = parse_dukev_names(frames.names)
    if not ok.all():
        i = int(np.argmin(ok))
        raise DatabaseError(f'{frames.path(i)}: not a DukeV frame name (expected <pid:4>_C<cam>_F<frame:4>_X<n> '
                            f'or <pid:4>C<cam>F<frame:4>X<n>, e.g. 0001_C6_F0099_X30823.jpg)')
    bad = pid != np.repeat(np.asarray(pids, np.int64), counts)
    if bad.any():
        i = int(np.argmax(bad))
        id_dir = os.path.dirname(frames.dirs[frames.group(i)])
        raise DatabaseError(f'{frames.path(i)}: the name says pid {pid[i]} but the frame is in identity '
                            f'directory {id_dir}')
    # A tracklet comes from one camera: every frame must agree with the first.
    bad = cam != np.repeat(cam[start], counts)
    if bad.any():
        i = int(np.argmax(bad))
        t = int(np.searchsorted(end, i))
        raise DatabaseError(f'{frames.path(i)}: camera {cam[i]} differs from camera {cam[start[t]]} of the '
                            f'first frame of its tracklet {frames.path(int(start[t]))}')
    info = np.stack([start, end, np.asarray(pids, np.int64), cam[end]], axis=1)
    return frames, keys, info


def _query_keys(query_dir):
    keys = []
    for pid_name in _list_subdirs(query_dir, 'one directory per identity, e.g. 0001'):
        tracks = _list_subdirs(os.path.join(query_dir, pid_name), 'one directory per tracklet, e.g. 0001')
        keys.extend((pid_name, t) for t in tracks)
    return keys


def build_dukev_database(data_dir, output_dir, progress=True):
    """Write DukeV_database files for `data_dir` holding train, query and gallery."""
    if not os.path.isdir(data_dir):
        raise DatabaseError(f'{data_dir}: directory not found (expected the DukeMTMC-VideoReID directory '
                            f'holding train, query and gallery)')
    split_dirs = {s: os.path.join(data_dir, s) for s in ('train', 'query', 'gallery')}
    for s, d in split_dirs.items():
        if not os.path.isdir(d):
            raise DatabaseError(f'{d}: directory not found (expected the DukeV {s} split, '
                                f'<id>/<tracklet>/<frames>)')

    query_keys = _query_keys(split_dirs['query'])
    out = {}
    frames, _, info = scan_dukev_split(split_dirs['train'], progress)
    out['train_path.txt'] = frames.path_text()
    out['train_info.npy'] = info
    frames, gallery_keys, info = scan_dukev_split(split_dirs['gallery'], progress)
    out['gallery_path.txt'] = frames.path_text()
    out['gallery_info.npy'] = info

    # Match by (identity, tracklet) directory names, not by position in the sorted lists.
    row_of = {key: r for r, key in enumerate(gallery_keys)}
    missing = [key for key in query_keys if key not in row_of]
    if missing:
        q = os.path.join(split_dirs['query'], *missing[0])
        raise DatabaseError(f'{q}: query tracklet not found in gallery (expected '
                            f'{os.path.join(split_dirs["gallery"], *missing[0])}; {len(missing)} query '
                            f'tracklet(s) missing)')
    out['query_IDX.npy'] = np.asarray([row_of[key] for key in query_keys], dtype=np.int64)
    write_database(output_dir, out)


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------

def write_database(output_dir, files):
    """Write {name: bytes | ndarray} into `output_dir` without ever leaving a partial database.

    Everything is written into a temporary directory beside `output_dir` first. A new output directory is
    then a single rename; into an existing one each file is moved with os.replace (atomic per file), so that
    other files a user keeps there are left alone.
    """
    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise DatabaseError(f'{output_dir}: exists and is not a directory (expected an output directory)')
    parent = os.path.dirname(output_dir)
    tmp = os.path.join(parent, f'.{os.path.basename(output_dir)}.partial-{secrets.token_hex(4)}')
    try:
        os.makedirs(parent, exist_ok=True)
        os.mkdir(tmp)  # honours the umask, as mkdir -p does
        try:
            for name, content in files.items():
                with open(os.path.join(tmp, name), 'wb') as f:
                    if isinstance(content, np.ndarray):
                        np.save(f, content)
                    else:
                        f.write(content)
            if not os.path.exists(output_dir):
                os.rename(tmp, output_dir)
            else:
                for name in files:
                    os.replace(os.path.join(tmp, name), os.path.join(output_dir, name))
                os.rmdir(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as e:
        raise DatabaseError(f'{output_dir}: cannot write the database ({e.strerror or e})') from None
