"""Camera footage -> tracklet crops: a video (or a folder of frames) and a tracker's MOTChallenge output.

A scene folder holds, per camera, a video ``c1.mp4`` (any container / codec FFmpeg reads through PyAV) or a
folder of frames ``c1/img1/000001.jpg`` (the MOTChallenge layout), and the tracker's output ``c1.txt``;
optionally the ground truth ``gt/c1.txt`` with global identities. Tracks are MOTChallenge text lines
``frame,id,x,y,w,h,conf,...`` (frame 1-based, x, y the box's top-left corner in pixels; extra columns are
kept but not used). A camera's name is the file stem, its number the digits in the name.

A crop is the box clipped to the frame: x0 = floor(x), y0 = floor(y), x1 = floor(x + w), y1 = floor(y + h),
each clamped to the picture; a box whose clipped area is empty is skipped. The picture is the decoder's RGB
frame (FFmpeg's default conversion, PyAV ``to_ndarray(format='rgb24')``). Each kept track becomes the folder
``<out>/<camera>_t<id:05d>/`` of crops ``f<frame:06d>.<ext>``, listed in ``<out>/tracklets.csv``.

The video is read in one streaming pass: the memory held is the crops of the current frame, whatever the
video's length. A tracklet's folder is written under a temporary name and renamed when its last crop is
written, so a folder of the final name is always complete.
"""
import csv
import io
import math
import os
import re
import secrets
import shutil

import numpy as np

from util.data.datasets.common import is_image_file, list_frames, replacing_directory
from util.errors import BROKEN_DEPENDENCY, DataError, OutputError

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.mov', '.m4v', '.webm', '.mpg', '.mpeg', '.ts', '.h264')
MANIFEST = 'tracklets.csv'
MANIFEST_FIELDS = ('camera', 'track_id', 'folder', 'first_frame', 'last_frame', 'num_crops', 'mean_height', 'fps')
TRACKLET_DIR = re.compile(r'^(?P<camera>.+)_t(?P<track>\d+)$')
CROP_NAME = re.compile(r'^f(?P<frame>\d+)\.[A-Za-z]+$')


def camera_number(name):
    """The camera number of a camera name: the digits in it ('c3' -> 3, 'S01_c012' -> 1012)."""
    digits = ''.join(re.findall(r'\d', str(name)))
    if not digits:
        raise DataError(f'camera {name!r}: its name has no digits (expected a name such as c1, whose number '
                        f'identifies the camera)')
    return int(digits)


def check_output_folder(out, overwrite, inputs=(), flag='--out'):
    """Refuse an output folder that exists (without overwrite), is not a folder, or is or holds one of the
    inputs (replacing it would delete them)."""
    out = os.path.realpath(out)
    for path in inputs:
        if path is None:
            continue
        path = os.path.realpath(path)
        if path == out or path.startswith(out.rstrip(os.sep) + os.sep):
            raise OutputError(f'{flag} {out}: holds the input {path}; write the output elsewhere')
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f'{flag} {out}: exists and is not a directory')
    if os.path.exists(out) and not overwrite:
        raise OutputError(f'{flag} {out}: exists (give --overwrite to replace it)')


def tracklet_folder_name(camera, track_id):
    return f'{camera}_t{int(track_id):05d}'


# -- tracks ---------------------------------------------------------------------------------------------------

class Tracks:
    """The rows of one MOTChallenge file: frame, id (N,) int64, boxes (N, 4) float64 x, y, w, h, and the
    text fields of every row (to write the rows back with other ids); in file order."""

    def __init__(self, path, frame, ids, boxes, fields):
        self.path, self.frame, self.ids, self.boxes, self.fields = path, frame, ids, boxes, fields

    def __len__(self):
        return len(self.frame)


def read_tracks(path, what='tracks file'):
    """Parse a MOTChallenge text file; a malformed line is a DataError naming the file and line number."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f'{what} {path}: no such file')
    frames, ids, boxes, fields = [], [], [], []
    try:
        with open(path, encoding='utf-8') as f:
            for number, line in enumerate(f, 1):
                text = line.strip()
                if not text:
                    continue
                parts = [p.strip() for p in text.split(',')]
                if len(parts) < 6:
                    raise DataError(f'{path}:{number}: {len(parts)} fields, expected frame,id,x,y,w,h[,conf,...] '
                                    f'(MOTChallenge): {text[:80]!r}')
                try:
                    frame, track = float(parts[0]), float(parts[1])
                    box = [float(p) for p in parts[2:6]]
                except ValueError:
                    raise DataError(f'{path}:{number}: not numbers, expected frame,id,x,y,w,h[,conf,...] '
                                    f'(MOTChallenge): {text[:80]!r}') from None
                if frame != int(frame) or track != int(track) or frame < 1:
                    raise DataError(f'{path}:{number}: frame and id must be integers, frames from 1: '
                                    f'{text[:80]!r}')
                if not all(map(math.isfinite, box)) or box[2] < 0 or box[3] < 0:
                    raise DataError(f'{path}:{number}: box x,y,w,h must be finite with w, h >= 0: {text[:80]!r}')
                frames.append(int(frame))
                ids.append(int(track))
                boxes.append(box)
                fields.append(parts)
    except UnicodeDecodeError as err:
        raise DataError(f'{what} {path}: not a text file ({err.reason})') from None
    return Tracks(path, np.array(frames, dtype=np.int64), np.array(ids, dtype=np.int64),
                  np.array(boxes, dtype=np.float64).reshape(-1, 4), fields)


def clip_boxes(boxes, height, width):
    """Integer crop rectangles (N, 4) x0, y0, x1, y1 of x, y, w, h boxes clipped to a height x width frame,
    and the mask of the non-empty ones."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0 = np.clip(np.floor(boxes[:, 0]), 0, width)
    y0 = np.clip(np.floor(boxes[:, 1]), 0, height)
    x1 = np.clip(np.floor(boxes[:, 0] + boxes[:, 2]), 0, width)
    y1 = np.clip(np.floor(boxes[:, 1] + boxes[:, 3]), 0, height)
    rect = np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)
    return rect, (rect[:, 2] > rect[:, 0]) & (rect[:, 3] > rect[:, 1])


# -- a scene folder -------------------------------------------------------------------------------------------

def find_video(folder, camera):
    """The video of a camera in a scene folder: c1.<video ext>, or a folder of frames c1/img1 or c1/."""
    for ext in VIDEO_EXTENSIONS:
        path = os.path.join(folder, camera + ext)
        if os.path.isfile(path):
            return path
    for sub in (os.path.join(camera, 'img1'), camera):
        path = os.path.join(folder, sub)
        if os.path.isdir(path) and any(map(is_image_file, os.listdir(path))):
            return path
    return None


def scene_cameras(scene):
    """The cameras of a scene folder in name order: [(name, video, tracks file, gt file or None)]."""
    scene = os.fspath(scene)
    if not os.path.isdir(scene):
        raise DataError(f'--scene {scene}: no such directory (expected a folder of c1.mp4 + c1.txt per camera)')
    names = sorted((n[:-4] for n in os.listdir(scene) if n.endswith('.txt')
                    and os.path.isfile(os.path.join(scene, n))), key=_natural)
    if not names:
        raise DataError(f'--scene {scene}: no tracker files <camera>.txt (expected c1.mp4 + c1.txt per camera)')
    cameras, numbers = [], {}
    for name in names:
        video = find_video(scene, name)
        if video is None:
            raise DataError(f'--scene {scene}: camera {name} has tracks {name}.txt but no video ({name}.mp4 or '
                            f'another video file, or a folder of frames {name}/img1/)')
        number = camera_number(name)
        if number in numbers:
            raise DataError(f'--scene {scene}: cameras {numbers[number]} and {name} have the same number {number}')
        numbers[number] = name
        gt = os.path.join(scene, 'gt', name + '.txt')
        cameras.append((name, video, os.path.join(scene, name + '.txt'), gt if os.path.isfile(gt) else None))
    return cameras


def _natural(name):
    return [int(p) if p.isdigit() else p for p in re.split(r'(\d+)', name)]


# -- reading frames -------------------------------------------------------------------------------------------

def _import_av():
    try:
        import av
    except ImportError as err:
        raise DataError(f'reading videos needs PyAV (pip install av, pinned in requirements.txt): {err}') from None
    return av


class VideoSource:
    """A video file (PyAV, one streaming pass) or a folder of frames; ``frames(wanted)`` yields (frame number
    from 1, RGB uint8 (H, W, 3)) for the frame numbers in ``wanted`` (a set; None: every frame), in order."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise DataError(f'video {self.path}: no such file or folder')
        self.is_folder = os.path.isdir(self.path)
        self.fps = float('nan')
        self.num_frames = None
        if self.is_folder:
            names = list_frames(self.path, skip_hidden=True, strict=False)
            numbered = []
            for n in names:
                digits = re.findall(r'\d+', os.path.splitext(n)[0])
                if not digits:
                    raise DataError(f'frames folder {self.path}: {n} has no frame number in its name '
                                    f'(expected 000001.jpg ...)')
                numbered.append((int(digits[-1]), n))
            self.files = sorted(numbered)
            self.num_frames = len(self.files)
            self.fps = _seqinfo_rate(self.path)
            from PIL import Image
            first = os.path.join(self.path, self.files[0][1])
            try:
                with Image.open(first) as im:
                    self.width, self.height = im.size
            except BROKEN_DEPENDENCY:
                raise
            except Exception as err:
                raise DataError(f'frame {first}: cannot be read ({_one_line(err)})') from None
        else:
            av = _import_av()
            try:
                with av.open(self.path) as container:
                    if not container.streams.video:
                        raise DataError(f'video {self.path}: no video stream')
                    stream = container.streams.video[0]
                    rate = stream.average_rate or stream.guessed_rate
                    self.fps = float(rate) if rate else float('nan')
                    self.num_frames = stream.frames or None
                    self.width, self.height = stream.codec_context.width, stream.codec_context.height
                    if not self.width or not self.height:
                        raise DataError(f'video {self.path}: no frame size in its stream header')
            except DataError:
                raise
            except BROKEN_DEPENDENCY:
                raise
            except Exception as err:
                raise DataError(f'video {self.path}: cannot be opened ({_one_line(err)})') from None

    def frames(self, wanted=None, progress=None):
        if self.is_folder:
            yield from self._folder_frames(wanted, progress)
        else:
            yield from self._video_frames(wanted, progress)

    def _folder_frames(self, wanted, progress):
        from PIL import Image
        for number, name in self.files:
            if progress is not None:
                progress.update(1)
            if wanted is not None and number not in wanted:
                continue
            path = os.path.join(self.path, name)
            try:
                with Image.open(path) as im:
                    picture = np.asarray(im.convert('RGB'))
            except BROKEN_DEPENDENCY:
                raise
            except Exception as err:
                raise DataError(f'frame {path}: cannot be read ({_one_line(err)})') from None
            yield number, picture

    def _video_frames(self, wanted, progress):
        av = _import_av()
        number = 0
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = 'AUTO'
                for frame in container.decode(stream):
                    number += 1
                    if progress is not None:
                        progress.update(1)
                    if wanted is not None and number not in wanted:
                        continue
                    yield number, frame.to_ndarray(format='rgb24')
        except (DataError, *BROKEN_DEPENDENCY):
            raise
        except Exception as err:  # av.error.* of a damaged or unsupported file
            raise DataError(f'video {self.path}: cannot be decoded at frame {number + 1} ({_one_line(err)})') \
                from None
        if number == 0:
            raise DataError(f'video {self.path}: no frame could be decoded')


def _seqinfo_rate(folder):
    """frameRate of a MOTChallenge seqinfo.ini beside or above a frames folder, else NaN."""
    for ini in (os.path.join(folder, 'seqinfo.ini'), os.path.join(os.path.dirname(folder), 'seqinfo.ini')):
        if os.path.isfile(ini):
            with open(ini, encoding='utf-8', errors='replace') as f:
                for line in f:
                    key, _, value = line.partition('=')
                    if key.strip().lower() == 'framerate':
                        try:
                            return float(value)
                        except ValueError:
                            pass
    return float('nan')


def _one_line(err):
    return ' '.join(str(err).split()) or type(err).__name__


# -- tracklets of one camera ----------------------------------------------------------------------------------

def select_tracklets(tracks, height, width, min_frames=1, min_height=0.0, every=1, max_frames=0):
    """The crops to write: {track id: (frames (n,), rects (n, 4) x0 y0 x1 y1)}, frames increasing.

    Boxes are clipped to the frame (empty ones skipped); a track id that comes back after a gap stays one
    tracklet. A tracklet is dropped when it has fewer than ``min_frames`` non-empty boxes or their mean
    clipped height is below ``min_height``; of the others, every ``every``-th box is kept (from the first),
    then at most ``max_frames`` evenly spaced ones (0: all). Two rows of one id in one frame: the first."""
    rects, ok = clip_boxes(tracks.boxes, height, width)
    out = {}
    index = np.flatnonzero(ok)
    order = index[np.lexsort((index, tracks.frame[index], tracks.ids[index]))]   # by id, frame, file order
    ids, frames = tracks.ids[order], tracks.frame[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (ids[1:] != ids[:-1]) | (frames[1:] != frames[:-1])             # drop duplicate (id, frame)
    order, ids, frames = order[first], ids[first], frames[first]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, dtype=np.int64)
    for lo, hi in zip(starts, np.r_[starts[1:], len(ids)].astype(np.int64)):
        rows = order[lo:hi]
        r = rects[rows]
        if len(rows) < min_frames or (r[:, 3] - r[:, 1]).mean() < min_height:
            continue
        keep = np.arange(0, len(rows), max(1, int(every)))
        if max_frames and len(keep) > max_frames:
            keep = keep[np.unique(np.round(np.linspace(0, len(keep) - 1, int(max_frames))).astype(np.int64))]
        out[int(ids[lo])] = (frames[lo:hi][keep], r[keep])
    return out


def _encode(picture, ext, quality):
    from PIL import Image
    buf = io.BytesIO()
    image = Image.fromarray(picture)
    if ext == 'png':
        image.save(buf, format='PNG', compress_level=1)
    else:
        image.save(buf, format='JPEG', quality=quality)
    return buf.getvalue()


def write_camera_tracklets(video, tracks, camera, out_dir, ext='jpg', quality=95, min_frames=1, min_height=0.0,
                           every=1, max_frames=0, progress=False):
    """Write the crops of one camera's tracks under out_dir (an existing folder); return its manifest rows.

    video: a path (video file or frames folder) or a VideoSource; tracks: a path or Tracks. One streaming pass
    over the video; each tracklet folder is written as ``.<name>.partial-<token>`` and renamed when its last
    crop is written; on failure the partial folders are removed."""
    source = video if isinstance(video, VideoSource) else VideoSource(video)
    tracks = tracks if isinstance(tracks, Tracks) else read_tracks(tracks)
    number = camera_number(camera)
    shape = (source.height, source.width)
    selection = select_tracklets(tracks, shape[0], shape[1], min_frames, min_height, every, max_frames)
    pending = {}            # frame -> [(track id, rect)]
    remaining, written = {}, {}
    for tid, (frames, rects) in selection.items():
        remaining[tid] = len(frames)
        written[tid] = []
        for f, r in zip(frames.tolist(), rects.tolist()):
            pending.setdefault(f, []).append((tid, r))
    wanted = set(pending)
    last_wanted = max(wanted) if wanted else 0
    partial = {}            # track id -> temporary folder
    token = secrets.token_hex(4)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=source.num_frames, desc=f'camera {camera}', unit='frame', leave=True)
    pictures = source.frames(wanted, bar) if wanted else iter(())
    try:
        for frame_number, picture in pictures:
            if picture.shape[:2] != shape:
                raise DataError(f'video {source.path}: frame {frame_number} is {picture.shape[1]}x'
                                f'{picture.shape[0]}, expected {shape[1]}x{shape[0]}')
            for tid, (x0, y0, x1, y1) in pending.pop(frame_number, ()):
                folder = partial.get(tid)
                if folder is None:
                    folder = os.path.join(out_dir, f'.{tracklet_folder_name(camera, tid)}.partial-{token}')
                    os.mkdir(folder)
                    partial[tid] = folder
                with open(os.path.join(folder, f'f{frame_number:06d}.{ext}'), 'wb') as f:
                    f.write(_encode(picture[y0:y1, x0:x1], ext, quality))
                written[tid].append(frame_number)
                remaining[tid] -= 1
                if remaining[tid] == 0:
                    os.rename(folder, os.path.join(out_dir, tracklet_folder_name(camera, tid)))
                    del partial[tid]
            if frame_number >= last_wanted:
                break
        # crops of frames the video does not have (the tracker file runs past its end): the others are kept
        for tid, folder in list(partial.items()):
            os.rename(folder, os.path.join(out_dir, tracklet_folder_name(camera, tid)))
            del partial[tid]
    except OSError as err:
        raise OutputError(f'{out_dir}: cannot write crops ({err.strerror or err})') from None
    finally:
        if hasattr(pictures, 'close'):  # closes the video file when the loop stopped early
            pictures.close()
        if bar is not None:
            bar.close()
        for folder in partial.values():
            shutil.rmtree(folder, ignore_errors=True)
    rows = []
    missing = sum(len(v) for v in pending.values())
    for tid in sorted(selection):
        frames = written[tid]
        if not frames:
            continue
        rects = selection[tid][1]
        rows.append(dict(camera=camera, track_id=tid, folder=tracklet_folder_name(camera, tid),
                         first_frame=frames[0], last_frame=frames[-1], num_crops=len(frames),
                         mean_height=round(float((rects[:, 3] - rects[:, 1]).mean()), 2),
                         fps=round(source.fps, 4) if math.isfinite(source.fps) else ''))
    return rows, dict(camera=camera, number=number, tracks=len(np.unique(tracks.ids)), tracklets=len(rows),
                      crops=sum(r['num_crops'] for r in rows), beyond_end=missing)


def write_manifest(path, rows):
    """tracklets.csv (MANIFEST_FIELDS), written atomically."""
    from util.io import atomic_save
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_FIELDS, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    atomic_save(text.getvalue().encode(), path, write=lambda data, f: f.write(data))


def read_manifest(path):
    """{folder name: row dict with int track_id, first_frame, last_frame} of a tracklets.csv."""
    out = {}
    try:
        with open(path, newline='', encoding='utf-8') as f:
            for number, row in enumerate(csv.DictReader(f), 2):
                try:
                    out[row['folder']] = dict(camera=row['camera'], track_id=int(row['track_id']),
                                              first_frame=int(row['first_frame']), last_frame=int(row['last_frame']))
                except (KeyError, TypeError, ValueError):
                    raise DataError(f'{path}:{number}: expected the columns {",".join(MANIFEST_FIELDS)}') from None
    except UnicodeDecodeError as err:
        raise DataError(f'{path}: not a text file ({err.reason})') from None
    return out


def tracklet_meta(tracklets):
    """Camera number, camera name, track id and first / last frame of each tracklet folder, from the
    tracklets.csv beside it or else its name ``<camera>_t<id>`` and crop names ``f<frame>.<ext>``: a dict of
    (N,) arrays cams, camera_names, track_ids, first_frame, last_frame, or None when a folder follows neither
    (tracklets that do not come from tracklets_from_video.py)."""
    manifests = {}
    cams, names, ids, first, last = [], [], [], [], []
    for folder in tracklets:
        folder = os.path.abspath(os.fspath(folder))
        parent, base = os.path.split(folder)
        if parent not in manifests:
            csv_path = os.path.join(parent, MANIFEST)
            manifests[parent] = read_manifest(csv_path) if os.path.isfile(csv_path) else {}
        row = manifests[parent].get(base)
        if row is None:
            match = TRACKLET_DIR.match(base)
            frames = [int(m.group('frame')) for m in map(CROP_NAME.match, os.listdir(folder)) if m]
            if match is None or not frames:
                return None
            row = dict(camera=match.group('camera'), track_id=int(match.group('track')), first_frame=min(frames),
                       last_frame=max(frames))
        try:
            number = camera_number(row['camera'])
        except DataError:
            return None
        cams.append(number)
        names.append(row['camera'])
        ids.append(row['track_id'])
        first.append(row['first_frame'])
        last.append(row['last_frame'])
    as64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    return dict(cams=as64(cams), camera_names=np.asarray(names, dtype=str), track_ids=as64(ids),
                first_frame=as64(first), last_frame=as64(last))


def make_tracklets(cameras, out, overwrite=False, ext='jpg', quality=95, min_frames=1, min_height=0.0, every=1,
                   max_frames=0, progress=True):
    """Write the crops of cameras [(name, video, tracks file)] into the folder `out`; returns the per-camera
    summaries. The folder is built beside `out` under a temporary name and swapped in when complete."""
    out = os.path.abspath(out)
    check_output_folder(out, overwrite, [p for c in cameras for p in c[1:3]])
    # every input is checked before any decoding
    checked = [(name, VideoSource(video), read_tracks(tracks)) for name, video, tracks in cameras]
    rows, summaries = [], []
    with replacing_directory(out, what='the crops', keep_others=False) as tmp:
        for name, source, tracks in checked:
            camera_rows, summary = write_camera_tracklets(
                source, tracks, name, tmp, ext=ext, quality=quality, min_frames=min_frames, min_height=min_height,
                every=every, max_frames=max_frames, progress=progress)
            rows.extend(camera_rows)
            summaries.append(summary)
        write_manifest(os.path.join(tmp, MANIFEST), rows)
    return summaries
