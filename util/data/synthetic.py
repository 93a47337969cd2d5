"""Synthetic video re-ID datasets in the official MARS, DukeMTMC-VideoReID, iLIDS-VID, PRID2011, LS-VID, MEVID and
CCVID layouts.

Without the real data (or to test the pipeline in seconds) this draws walking people as JPEG frames:

* identity: skin and hair, upper clothing colour with a second colour and a pattern (stripes, checks,
  a chest block, ...), lower clothing colour and style (trousers, shorts, skirt), shoes, an optional bag,
  body height, width and waist line. Colours come from a small palette plus jitter, so some identities
  look alike and colour alone does not separate everyone.
* camera: a textured background (wall, floor), a colour cast and brightness, person scale and position,
  blur and sensor noise. The same identity looks different from camera to camera.
* frame: leg and arm swing, a small bob, detector-box jitter (position and scale), the background
  shifting as the box follows the person, and per-tracklet walking direction (horizontal mirror).

MARS extras: junk (pid -1, directory ``00-1``: fragments of people) and distractor (pid 0: background
only) tracklets in the test split, and the MARS-evaluation info directory. Every query has a gallery
match of its identity in another camera. Tracklets have 2 to more than 64 frames, some fewer than 8.
iLIDS-VID, PRID2011 and LS-VID: the official trees with their split files (``ls_set`` .mat files, torchreid's
splits_prid2011.json, an HDF5 ``info_test.mat``) and the traps of the real data: PRID2011 persons 1-200 with
sequences shorter than 27 frames and one-camera persons beyond 200, frame numbers whose text order is not
their numeric order, and ``.DS_Store`` files. Everything is drawn from one seed: the same seed writes
byte-identical files.

MEVID and CCVID (``make_mevid``, ``make_ccvid``): every identity wears several outfits: an outfit changes the
clothing colours, pattern, lower garment and bag; skin, hair, body height, width, waist line and the walking
rhythm (gait) stay the identity's own. Their traps: a MEVID info row covering no frame, a MEVID name file whose
tracklet order is not the directories' sorted order, CCVID ``session3`` cameras (+12), the same clothes label
text worn by different people (different clothes ids), and stray non-image files in frame directories.

    python -m util.synthetic mars --out data/synthetic_mars
    python -m util.synthetic dukev --out data/synthetic_dukev --old_names
    python -m util.synthetic ilidsvid --out data/iLIDS-VID      (also prid2011, lsvid, mevid, ccvid)
"""

import dataclasses
import io
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.io
from PIL import Image
from scipy.ndimage import gaussian_filter

from util.data.datasets.common import replacing_directory
from util.errors import ReIDError

MARKER = 'synthetic.json'  # written in the dataset root; marks a directory this module may replace

_SKIN = np.array([[255, 224, 196], [234, 192, 134], [198, 134, 66], [141, 85, 36], [255, 205, 148]]) / 255
_HAIR = np.array([[20, 20, 20], [60, 40, 20], [110, 80, 40], [200, 170, 100], [120, 120, 120]]) / 255
_CLOTH = np.array([
    [200, 30, 30], [120, 20, 30], [240, 130, 20], [230, 210, 40], [40, 160, 60], [20, 80, 40],
    [30, 150, 150], [120, 180, 230], [30, 70, 190], [20, 30, 80], [120, 50, 160], [230, 130, 180],
    [235, 235, 235], [130, 130, 130], [25, 25, 25], [110, 70, 40], [210, 190, 150],
]) / 255
_PATTERNS = ('solid', 'hstripes', 'vstripes', 'checks', 'block', 'diagonal', 'two-tone')
_LOWER = ('trousers', 'shorts', 'skirt')


@dataclass
class Person:
    skin: np.ndarray
    hair: np.ndarray
    upper: np.ndarray
    upper2: np.ndarray
    lower: np.ndarray
    shoes: np.ndarray
    bag_colour: np.ndarray
    pattern: int
    period: float      # stripe / check period in body-height units
    lower_style: int
    sleeve: float      # sleeve length (body units); skin below it
    long_hair: bool
    bag: int           # 0 none, 1 backpack, 2 handbag
    height: float      # relative body height
    width: float       # relative body width
    waist: float       # waist line, fraction of body height
    gait: float = None  # steps per frame (radians); None: drawn per tracklet


@dataclass
class Camera:
    background: np.ndarray  # (Hb, Wb, 3) float texture, wraps horizontally
    gain: np.ndarray        # (3,) colour cast times brightness
    offset: np.ndarray      # (3,) additive light
    scale: float            # person height / frame height
    shift: float            # vertical offset of the person, fraction of frame height
    blur: float             # Gaussian sigma in pixels
    noise: float            # sensor noise std


@dataclass
class Track:
    pid: int
    cam: int
    number: int           # tracklet number (MARS: within pid and camera; DukeV: within pid)
    length: int
    kind: str = 'person'  # 'person', 'junk' or 'distractor'
    person: Person = None


def _colour(rng, palette, jitter=0.06):
    return np.clip(palette[rng.integers(len(palette))] + rng.normal(0, jitter, 3), 0, 1)


def random_person(rng):
    upper = _colour(rng, _CLOTH)
    upper2 = _colour(rng, _CLOTH)
    if np.abs(upper - upper2).sum() < 0.5:  # a pattern must be visible
        upper2 = 1 - upper2
    return Person(
        skin=_colour(rng, _SKIN, 0.03), hair=_colour(rng, _HAIR, 0.03), upper=upper, upper2=upper2,
        lower=_colour(rng, _CLOTH), shoes=_colour(rng, _CLOTH[[12, 13, 14, 15]], 0.03),
        bag_colour=_colour(rng, _CLOTH), pattern=int(rng.integers(len(_PATTERNS))),
        period=float(rng.uniform(0.05, 0.1)), lower_style=int(rng.choice(3, p=[0.6, 0.2, 0.2])),
        sleeve=float(rng.choice([0.1, 0.3])), long_hair=bool(rng.random() < 0.3),
        bag=int(rng.choice(3, p=[0.6, 0.25, 0.15])), height=float(rng.uniform(0.88, 1.0)),
        width=float(rng.uniform(0.8, 1.2)), waist=float(rng.uniform(0.48, 0.58)))


def random_camera(rng, height, width):
    hb, wb = height, 4 * width
    wall, floor = _colour(rng, _CLOTH, 0.1) * 0.6 + 0.2, _colour(rng, _CLOTH, 0.1) * 0.5 + 0.2
    horizon = rng.uniform(0.55, 0.8) * hb
    ramp = np.clip((np.arange(hb)[:, None] - horizon) / (0.05 * hb), 0, 1)[:, :, None]  # (hb, 1, 1)
    bg = np.broadcast_to((1 - ramp) * wall + ramp * floor, (hb, wb, 3)).copy()
    # Smooth blotches plus vertical structure (doors, pillars); periodic along x for wrapping crops.
    bg += 0.25 * (gaussian_filter(rng.random((hb, wb, 3)), sigma=(height / 16, width / 8, 0),
                                  mode='wrap') - 0.5)
    period = rng.integers(width // 2, 2 * width)
    bars = (np.arange(wb) % period) < rng.uniform(0.1, 0.4) * period
    bg[:, bars] *= rng.uniform(0.7, 1.3)
    brightness = rng.uniform(0.65, 1.25)
    return Camera(background=np.clip(bg, 0, 1).astype(np.float32),
                  gain=brightness * (1 + rng.normal(0, 0.12, 3)),
                  offset=rng.normal(0, 0.04, 3), scale=float(rng.uniform(0.72, 0.95)),
                  shift=float(rng.normal(0, 0.03)), blur=float(rng.uniform(0.0, 1.0)),
                  noise=float(rng.uniform(0.01, 0.04)))


# Body parts of the label map drawn by draw_person; 0 is background.
SKIN, HAIR, UPPER, UPPER2, LOWER, SHOES, BAG = range(1, 8)


def part_colours(p):
    """(8, 3) colour of each part label of person p (row 0, background, unused)."""
    return np.stack([np.zeros(3), p.skin, p.hair, p.upper, p.upper2, p.lower, p.shoes, p.bag_colour])


def _pattern_mask(p, u, v, top, bottom):
    k = _PATTERNS[p.pattern]
    if k == 'hstripes':
        return np.floor(v / p.period) % 2 == 1
    if k == 'vstripes':
        return np.floor(u / p.period) % 2 == 1
    if k == 'checks':
        return (np.floor(u / p.period) + np.floor(v / p.period)) % 2 == 1
    if k == 'block':
        return (np.abs(u) < 0.05) & (v > top + 0.06) & (v < top + 0.16)
    if k == 'diagonal':
        return np.floor((u + v) / (1.4 * p.period)) % 2 == 1
    if k == 'two-tone':
        return v > (top + bottom) / 2
    return np.zeros(u.shape, bool)


def draw_person(p, u, v, phase):
    """Part labels (n, H, W) uint8 of person p at body coordinates u, v (n, H, W): v = 0 head top, 1 feet.

    Parts are drawn back to front: legs, torso, bag, arms, hair, head.
    """
    labels = np.zeros(u.shape, np.uint8)
    w, waist, top = p.width, p.waist, 0.155
    leg_t = np.clip((v - waist) * (1 / (1 - waist)), 0, 1)
    swing = (0.07 * np.sin(phase)[:, None, None]).astype(u.dtype) * leg_t
    leg_hw = 0.036 * w
    legs = (v >= waist) & (v <= 0.98) & ((np.abs(u + 0.04 * w - swing) < leg_hw)
                                         | (np.abs(u - 0.04 * w + swing) < leg_hw))
    style = _LOWER[p.lower_style]
    labels[legs] = LOWER if style == 'trousers' else SKIN
    if style == 'shorts':
        labels[legs & (v < waist + 0.17)] = LOWER
    elif style == 'skirt':
        labels[(v >= waist) & (v < waist + 0.22) & (np.abs(u) < 0.085 * w + 0.35 * (v - waist))] = LOWER
    labels[legs & (v > 0.945)] = SHOES

    tv = (v - top) * (1 / (waist - top))
    torso = (tv >= 0) & (tv <= 1.02) & (np.abs(u) < w * (0.115 - 0.02 * np.clip(tv, 0, 1)))
    labels[torso] = UPPER
    labels[torso & _pattern_mask(p, u, v, top, waist)] = UPPER2
    if p.bag == 1:    # backpack seen from the side
        labels[(u > 0.1 * w) & (u < 0.1 * w + 0.06) & (v > 0.18) & (v < 0.42)] = BAG
    elif p.bag == 2:  # handbag at the hip
        labels[(u < -0.13 * w) & (u > -0.13 * w - 0.07) & (v > waist - 0.03) & (v < waist + 0.09)] = BAG

    arm_swing = (0.25 * np.sin(phase)[:, None, None]).astype(u.dtype) * np.clip(v - 0.16, 0, None)
    for side in (-1, 1):
        au = side * u - 0.112 * w + side * arm_swing
        arm = (au >= 0) & (au < 0.035) & (v >= 0.16) & (v <= waist + 0.06)
        labels[arm] = SKIN
        labels[arm & (v < 0.16 + p.sleeve)] = UPPER

    if p.long_hair:
        labels[(np.abs(u) < 0.06) & (v > 0.02) & (v < 0.24)] = HAIR
    head = ((v - 0.08) * (1 / 0.07)) ** 2 + (u * (1 / 0.048)) ** 2 < 1
    labels[head] = SKIN
    labels[head & (v < 0.055)] = HAIR
    return labels


def render_track(rng, track, camera, height, width):
    """Frames of one tracklet: uint8 (n, H, W, 3)."""
    n = track.length
    f = np.arange(n)
    phase0, rate = rng.uniform(0, 2 * np.pi), rng.uniform(0.35, 0.8)
    if track.person is not None and track.person.gait is not None:  # an identity's own walk (clothes sets)
        rate = track.person.gait
    phase = phase0 + rate * f
    light = (camera.gain * (1 + rng.normal(0, 0.04, 3))).astype(np.float32)  # changes a little per tracklet
    # Detector box: jittered scale and position around the walking person.
    s = camera.scale * height * (1 + 0.03 * rng.standard_normal(n))
    cx = width / 2 + 0.05 * width * rng.standard_normal(n)
    top = (height - s) / 2 + (camera.shift + 0.02 * rng.standard_normal(n)) * height
    if track.kind == 'junk':  # a badly cropped fragment of someone
        s = s * rng.uniform(1.6, 2.6)
        top = top - rng.uniform(0.0, 0.6) * s
        cx = cx + rng.choice([-1, 1]) * rng.uniform(0.15, 0.4) * width
    person = track.person if track.kind != 'junk' else random_person(rng)
    if person is not None:  # shorter people stand on the same ground line
        top = top + (1 - person.height) * s
        s = s * person.height
    top = top - 0.012 * s * np.abs(np.sin(phase))  # bob

    # Background follows the box: crop a wrapping texture at a walking offset.
    hb, wb, _ = camera.background.shape
    ox = rng.integers(wb) + np.round(rng.uniform(-1.5, 1.5) * f + 1.5 * rng.standard_normal(n)).astype(int)
    rows = np.arange(height) % hb
    cols = (ox[:, None] + np.arange(width)) % wb
    img = camera.background[rows[None, :, None], cols[:, None, :]]  # (n, H, W, 3)

    if person is not None:
        y = np.arange(height, dtype=np.float32)[None, :, None] + 0.5
        x = np.arange(width, dtype=np.float32)[None, None, :] + 0.5
        inv_s = (1 / s[:, None, None]).astype(np.float32)
        v = (y - top[:, None, None].astype(np.float32)) * inv_s
        u = (x - cx[:, None, None].astype(np.float32)) * inv_s * rng.choice([-1, 1])  # walking direction
        u, v = np.broadcast_arrays(u, v)  # (n, H, W) each
        labels = draw_person(person, u, v, phase)
        img = np.where(labels[..., None] > 0, part_colours(person).astype(np.float32)[labels], img)

    img = img * light + camera.offset.astype(np.float32)
    if camera.blur > 0.2:
        img = gaussian_filter(img, sigma=(0, camera.blur, camera.blur, 0))
    img += camera.noise * rng.standard_normal(img.shape, dtype=np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _lengths(rng, n, min_len, max_len):
    """Log-uniform tracklet lengths; a split with enough tracklets gets one shorter than 8 and one over 64."""
    lengths = np.floor(np.exp(rng.uniform(np.log(min_len), np.log(max_len + 1), n))).astype(int)
    lengths = np.clip(lengths, min_len, max_len)
    if n >= 2:
        i, j = rng.choice(n, 2, replace=False)
        if min_len < 8:
            lengths[i] = rng.integers(min_len, min(8, max_len + 1))
        if max_len > 64:
            lengths[j] = rng.integers(65, max_len + 1)
    return lengths


def _identity_tracks(rng, pids, num_cams, cams_per_id, tracks_per_cam, number_per_cam):
    """Tracks of the given identities: each seen by cams_per_id cameras, tracks_per_cam tracklets each."""
    tracks = []
    for pid in pids:
        person = random_person(rng)
        n_cams = rng.integers(cams_per_id[0], min(cams_per_id[1], num_cams) + 1)
        number = 0
        for cam in np.sort(rng.choice(num_cams, n_cams, replace=False)) + 1:
            for t in range(rng.integers(tracks_per_cam[0], tracks_per_cam[1] + 1)):
                number = t + 1 if number_per_cam else number + 1
                tracks.append(Track(int(pid), int(cam), number, 0, 'person', person))
    return tracks


def _extra_tracks(rng, n, pid, kind, num_cams):
    counts = {}
    tracks = []
    for cam in np.sort(rng.integers(1, num_cams + 1, n)):
        counts[cam] = counts.get(cam, 0) + 1
        tracks.append(Track(pid, int(cam), counts[cam], 0, kind))
    return tracks


def _draw_pids(rng, sizes):
    """Disjoint, non-contiguous identity numbers for several groups (as in the real sets)."""
    pool = rng.permutation(np.arange(1, 2 * sum(sizes) + 1))
    out, k = [], 0
    for n in sizes:
        out.append(np.sort(pool[k:k + n]))
        k += n
    return out


def _save_jpeg(path, frame, quality):
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format='JPEG', quality=quality)
    with open(path, 'wb') as f:
        f.write(buf.getvalue())


def _write_mat(path, key, value):
    buf = io.BytesIO()
    scipy.io.savemat(buf, {key: value})
    data = bytearray(buf.getvalue())
    # The 116-byte text header carries a creation time; a fixed one keeps the files reproducible.
    data[:116] = b'MATLAB 5.0 MAT-file, written by util.data.synthetic'.ljust(116, b' ')
    with open(path, 'wb') as f:
        f.write(bytes(data))


@contextmanager
def output_directory(out_dir):
    """Write into a new directory that replaces `out_dir` as a whole at the end (nothing half-written)."""
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ReIDError(f'{out_dir}: exists and is not a directory (expected a directory for the '
                            f'synthetic dataset)')
        if os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, MARKER)):
            raise ReIDError(f'{out_dir}: directory is not empty and was not written by util.data.synthetic '
                            f'(expected a new or empty directory, or an earlier synthetic dataset)')
    with replacing_directory(out_dir, what='the dataset', keep_others=False) as root:
        yield root


def _write_config(root, config):
    with open(os.path.join(root, MARKER), 'w') as f:
        json.dump(config, f, indent=1, sort_keys=True)
        f.write('\n')


def _check_sizes(height, width, min_len, max_len, num_train_ids, num_test_ids, num_cams, cams_per_id,
                 frame_digits, max_cams=9):
    if height < 8 or width < 4:
        raise ReIDError(f'--height {height} --width {width}: frames must be at least 8x4 pixels')
    if not 1 <= min_len <= max_len < 10 ** frame_digits:
        raise ReIDError(f'--min_len {min_len} --max_len {max_len}: expected 1 <= min_len <= max_len '
                        f'< {10 ** frame_digits}')
    if not (1 <= num_train_ids and 1 <= num_test_ids and num_train_ids + num_test_ids <= 4000):
        raise ReIDError(f'--num_train_ids {num_train_ids} --num_test_ids {num_test_ids}: expected at least 1 '
                        f'each and 4000 in all (identities have 4-digit numbers)')
    if not 2 <= cams_per_id[0] <= min(cams_per_id[1], num_cams) or num_cams > max_cams:
        raise ReIDError(f'--num_cams {num_cams}: expected 2..{max_cams} cameras, each identity seen by at least 2')


def _check_count(flag, value, low, high):
    if not low <= value <= high:
        raise ReIDError(f'{flag} {value}: expected {low}..{high}')


def _render_all(seed, tag, tracks, cameras, height, width, min_len, max_len):
    """Assign lengths and render every track with its own generator (independent of rendering order)."""
    rng = np.random.default_rng([seed, tag])
    for t, n in zip(tracks, _lengths(rng, len(tracks), min_len, max_len)):
        t.length = int(n)
    for k, t in enumerate(tracks):
        yield t, render_track(np.random.default_rng([seed, tag, k]), t, cameras[t.cam - 1], height, width)


def make_mars(out_dir, seed=0, num_train_ids=40, num_test_ids=40, num_cams=6, height=64, width=32,
              min_len=2, max_len=80, num_junk=12, num_distractors=12, cams_per_id=(2, 4),
              tracks_per_cam=(1, 2), quality=90):
    """Write a synthetic MARS: bbox_train/, bbox_test/ and MARS-evaluation/info/. Returns a summary dict."""
    _check_sizes(height, width, min_len, max_len, num_train_ids, num_test_ids, num_cams, cams_per_id, 3)
    _check_count('--num_junk', num_junk, 0, 999)
    _check_count('--num_distractors', num_distractors, 0, 999)
    _check_count('--max_tracks_per_cam', tracks_per_cam[1], max(1, tracks_per_cam[0]), 99)
    config = dict(dataset='mars', seed=seed, num_train_ids=num_train_ids, num_test_ids=num_test_ids,
                  num_cams=num_cams, height=height, width=width, min_len=min_len, max_len=max_len,
                  num_junk=num_junk, num_distractors=num_distractors, cams_per_id=list(cams_per_id),
                  tracks_per_cam=list(tracks_per_cam), quality=quality)
    rng = np.random.default_rng(seed)
    cameras = [random_camera(rng, height, width) for _ in range(num_cams)]
    train_pids, test_pids = _draw_pids(rng, [num_train_ids, num_test_ids])
    splits = {
        'train': _identity_tracks(rng, train_pids, num_cams, cams_per_id, tracks_per_cam, True),
        'test': (_identity_tracks(rng, test_pids, num_cams, cams_per_id, tracks_per_cam, True)
                 + _extra_tracks(rng, num_junk, -1, 'junk', num_cams)
                 + _extra_tracks(rng, num_distractors, 0, 'distractor', num_cams)),
    }
    summary = {}
    with output_directory(out_dir) as root:
        info_dir = os.path.join(root, 'MARS-evaluation', 'info')
        os.makedirs(info_dir)
        for tag, (split, tracks) in enumerate(splits.items()):
            # Database order: identity directories by name ('00-1' < '0000' < '0001'), then file names.
            tracks.sort(key=lambda t: (_mars_pid(t.pid), t.cam, t.number))
            names, rows = [], []
            for t, frames in _render_all(seed, tag, tracks, cameras, height, width, min_len, max_len):
                d = os.path.join(root, f'bbox_{split}', _mars_pid(t.pid))
                os.makedirs(d, exist_ok=True)
                rows.append([len(names) + 1, len(names) + len(frames), t.pid, t.cam])
                for i, frame in enumerate(frames):
                    name = f'{_mars_pid(t.pid)}C{t.cam}T{t.number:04d}F{i + 1:03d}.jpg'
                    _save_jpeg(os.path.join(d, name), frame, quality)
                    names.append(name)
            with open(os.path.join(info_dir, f'{split}_name.txt'), 'w') as f:
                f.write(''.join(n + '\n' for n in names))
            _write_mat(os.path.join(info_dir, f'tracks_{split}_info.mat'), f'track_{split}_info',
                       np.array(rows, dtype=np.int32))
            summary[split] = dict(tracklets=len(tracks), frames=len(names))
        query = _mars_queries(rng, splits['test'])
        _write_mat(os.path.join(info_dir, 'query_IDX.mat'), 'query_IDX',
                   (query + 1).astype(np.uint16)[None, :])
        summary['queries'] = len(query)
        _write_config(root, config)
    return summary


def _mars_pid(pid):
    return '00-1' if pid == -1 else f'{pid:04d}'


def _mars_queries(rng, tracks):
    """0-based rows: one tracklet per (identity, camera) of every real test identity, ascending."""
    groups = {}
    for r, t in enumerate(tracks):
        if t.pid > 0:
            groups.setdefault((t.pid, t.cam), []).append(r)
    return np.sort(np.array([rng.choice(rows) for _, rows in sorted(groups.items())], dtype=np.int64))


def make_dukev(out_dir, seed=0, num_train_ids=40, num_test_ids=40, num_distractor_ids=10, num_cams=8,
               height=64, width=32, min_len=2, max_len=80, cams_per_id=(2, 4), tracks_per_cam=(1, 2),
               old_names=False, quality=90):
    """Write a synthetic DukeMTMC-VideoReID: train/, query/, gallery/. Returns a summary dict.

    Frame names are `0001_C6_F0001_X30823.jpg`, or `0001C6F0001X30823.jpg` with old_names; the pixels do not
    depend on the naming.
    """
    _check_sizes(height, width, min_len, max_len, num_train_ids, num_test_ids, num_cams, cams_per_id, 4)
    _check_count('--num_distractor_ids', num_distractor_ids, 0, 999)
    _check_count('--max_tracks_per_cam', tracks_per_cam[1], max(1, tracks_per_cam[0]), 99)
    config = dict(dataset='dukev', seed=seed, num_train_ids=num_train_ids, num_test_ids=num_test_ids,
                  num_distractor_ids=num_distractor_ids, num_cams=num_cams, height=height, width=width,
                  min_len=min_len, max_len=max_len, cams_per_id=list(cams_per_id),
                  tracks_per_cam=list(tracks_per_cam), old_names=old_names, quality=quality)
    rng = np.random.default_rng(seed)
    cameras = [random_camera(rng, height, width) for _ in range(num_cams)]
    train_pids, test_pids, extra_pids = _draw_pids(rng, [num_train_ids, num_test_ids, num_distractor_ids])
    train = _identity_tracks(rng, train_pids, num_cams, cams_per_id, tracks_per_cam, False)
    gallery = _identity_tracks(rng, test_pids, num_cams, cams_per_id, tracks_per_cam, False)
    # Gallery-only identities, seen by a single camera.
    gallery += _identity_tracks(rng, extra_pids, num_cams, (1, 1), (1, 1), False)
    gallery.sort(key=lambda t: (t.pid, t.number))
    by_pid = {}
    for t in gallery:
        by_pid.setdefault(t.pid, []).append(t)
    query = [by_pid[p][rng.integers(len(by_pid[p]))] for p in test_pids]
    query_ids = {id(t) for t in query}

    summary = {}
    with output_directory(out_dir) as root:
        for tag, (split, tracks) in enumerate((('train', train), ('gallery', gallery))):
            frames_total = 0
            for t, frames in _render_all(seed, tag, tracks, cameras, height, width, min_len, max_len):
                x0 = int(rng.integers(1000, 90000))  # frame number in the camera's video
                dirs = [os.path.join(root, split, f'{t.pid:04d}', f'{t.number:04d}')]
                if split == 'gallery' and id(t) in query_ids:
                    dirs.append(os.path.join(root, 'query', f'{t.pid:04d}', f'{t.number:04d}'))
                for d in dirs:
                    os.makedirs(d)
                    for i, frame in enumerate(frames):
                        sep = '' if old_names else '_'
                        name = sep.join([f'{t.pid:04d}', f'C{t.cam}', f'F{i + 1:04d}', f'X{x0 + i:05d}.jpg'])
                        _save_jpeg(os.path.join(d, name), frame, quality)
                frames_total += len(frames)
            summary[split] = dict(tracklets=len(tracks), frames=frames_total)
        summary['queries'] = len(query)
        _write_config(root, config)
    return summary


def _save_png(path, frame):
    Image.fromarray(frame).save(path, format='PNG')


def _permutation_rows(rng, n):
    """ls_set of a split file: (10, n) float64 1-based permutations, as MATLAB writes them."""
    return np.stack([rng.permutation(n) + 1 for _ in range(10)]).astype(np.float64)


def make_ilidsvid(out_dir, seed=0, num_persons=6, height=128, width=64, min_len=2, max_len=8):
    """Write a synthetic iLIDS-VID: i-LIDS-VID/sequences/cam{1,2}/person<nnn>/ PNG frames and the split file.

    Traps of the real data: one sequence's frame numbers are written without zero padding and cross 999 ->
    1000 (text order differs from frame order), and .DS_Store files lie beside the person directories and in
    one sequence.
    """
    _check_count('--num_persons', num_persons, 2, 999)
    _check_sizes(height, width, min_len, max_len, 1, 1, 2, (2, 2), 4)
    config = dict(dataset='ilidsvid', seed=seed, num_persons=num_persons, height=height, width=width,
                  min_len=min_len, max_len=max_len)
    rng = np.random.default_rng(seed)
    cameras = [random_camera(rng, height, width) for _ in range(2)]
    tracks = [Track(p + 1, cam, 1, 0, 'person', person)
              for p, person in enumerate(random_person(rng) for _ in range(num_persons)) for cam in (1, 2)]
    summary = dict(persons=num_persons, frames=0)
    with output_directory(out_dir) as root:
        seq_root = os.path.join(root, 'i-LIDS-VID', 'sequences')
        for t, frames in _render_all(seed, 0, tracks, cameras, height, width, min_len, max_len):
            person = f'person{t.pid:03d}'
            d = os.path.join(seq_root, f'cam{t.cam}', person)
            os.makedirs(d)
            if t.pid == 2 and t.cam == 1:  # unpadded numbers across 999 -> 1000
                numbers = [str(1000 - len(frames) // 2 + i) for i in range(len(frames))]
            else:
                first = int(rng.integers(1, 900))
                numbers = [f'{first + i:05d}' for i in range(len(frames))]
            for number, frame in zip(numbers, frames):
                _save_png(os.path.join(d, f'cam{t.cam}_{person}_{number}.png'), frame)
            summary['frames'] += len(frames)
        for d in (os.path.join(seq_root, 'cam1'), os.path.join(seq_root, 'cam2', 'person001')):
            with open(os.path.join(d, '.DS_Store'), 'wb') as f:
                f.write(b'\0\0\0\1Bud1')
        split_dir = os.path.join(root, 'train-test people splits')
        os.makedirs(split_dir)
        _write_mat(os.path.join(split_dir, 'train_test_splits_ilidsvid.mat'), 'ls_set',
                   _permutation_rows(rng, num_persons))
        _write_config(root, config)
    return summary


def make_prid2011(out_dir, seed=0, num_shared=6, num_short=2, num_cam_a_only=2, num_cam_b_only=3, height=128,
                  width=64, min_len=27, max_len=30):
    """Write a synthetic PRID2011 multi_shot tree (PNG frames) with both split files.

    As the real set: person_0001 .. person_<num_shared> (at most 200) are in both cameras, `num_short` of them
    with a sequence shorter than 27 frames in one camera; persons from person_0201 on are seen by one camera
    only (cam_a's and cam_b's person_0201 are different people). The split files index the persons with at
    least 27 frames in both cameras: ``train_test_splits_prid.mat`` (ls_set) and torchreid's
    ``splits_prid2011.json``. Traps: one sequence with unpadded frame numbers (1.png .. 27.png), a .DS_Store.
    """
    _check_count('--num_shared', num_shared, 2, 200)
    _check_count('--num_short', num_short, 0, num_shared - 2)
    _check_count('--num_cam_a_only', num_cam_a_only, 0, 799)
    _check_count('--num_cam_b_only', num_cam_b_only, 0, 799)
    _check_sizes(height, width, 27, max(min_len, max_len), 1, 1, 2, (2, 2), 4)
    config = dict(dataset='prid2011', seed=seed, num_shared=num_shared, num_short=num_short,
                  num_cam_a_only=num_cam_a_only, num_cam_b_only=num_cam_b_only, height=height, width=width,
                  min_len=min_len, max_len=max_len)
    rng = np.random.default_rng(seed)
    cameras = [random_camera(rng, height, width) for _ in range(2)]
    tracks = [Track(p + 1, cam, 1, 0, 'person', person)
              for p, person in enumerate(random_person(rng) for _ in range(num_shared)) for cam in (1, 2)]
    tracks += [Track(201 + p, 1, 1, 0, 'person', random_person(rng)) for p in range(num_cam_a_only)]
    tracks += [Track(201 + p, 2, 1, 0, 'person', random_person(rng)) for p in range(num_cam_b_only)]
    short = {(int(p) + 1, int(rng.integers(1, 3))) for p in rng.choice(num_shared, num_short, replace=False)}
    summary = dict(persons=num_shared, frames=0)
    with output_directory(out_dir) as root:
        cam_root = os.path.join(root, 'prid_2011', 'multi_shot')
        for t, frames in _render_all(seed, 0, tracks, cameras, height, width, min_len, max_len):
            if (t.pid, t.cam) in short:
                frames = frames[:int(rng.integers(min(5, min_len), 27))]
            d = os.path.join(cam_root, 'cam_a' if t.cam == 1 else 'cam_b', f'person_{t.pid:04d}')
            os.makedirs(d)
            unpadded = t.pid == 1 and t.cam == 2
            for i, frame in enumerate(frames):
                _save_png(os.path.join(d, f'{i + 1}.png' if unpadded else f'{i + 1:04d}.png'), frame)
            summary['frames'] += len(frames)
        with open(os.path.join(cam_root, 'cam_a', '.DS_Store'), 'wb') as f:
            f.write(b'\0\0\0\1Bud1')
        eligible = [f'person_{p:04d}' for p in range(1, num_shared + 1)
                    if (p, 1) not in short and (p, 2) not in short]
        ls_set = _permutation_rows(rng, len(eligible))
        _write_mat(os.path.join(root, 'train_test_splits_prid.mat'), 'ls_set', ls_set)
        half = len(eligible) // 2
        splits = [{'train': [eligible[int(i) - 1] for i in sorted(row[half:])],
                   'test': [eligible[int(i) - 1] for i in sorted(row[:half])]} for row in ls_set]
        with open(os.path.join(root, 'splits_prid2011.json'), 'w') as f:
            json.dump(splits, f, indent=4, separators=(',', ': '))
        summary['standard_persons'] = len(eligible)
        _write_config(root, config)
    return summary


def _write_hdf5_mat(path, key, value):
    """A MATLAB v7.3 file (HDF5 with MATLAB's 512-byte header) holding one double array."""
    import h5py
    with h5py.File(path, 'w', userblock_size=512) as f:
        f.create_dataset(key, data=np.asarray(value, np.float64), track_times=False)
    with open(path, 'r+b') as f:
        # Text, subsystem offset, version 0x0200 and the little-endian mark 'IM', as MATLAB writes them.
        f.write(b'MATLAB 7.3 MAT-file, written by util.data.synthetic, HDF5 schema 1.00 .'.ljust(116, b' ')
                + b' ' * 8 + b'\x00\x02IM')


def make_lsvid(out_dir, seed=0, num_train_ids=4, num_test_ids=4, num_cams=15, height=64, width=32, min_len=2,
               max_len=12, cams_per_id=(2, 3), quality=90):
    """Write a synthetic LS-VID: tracklet_{train,test}/<pid>/<tracklet>_<frame>_<cam>_<n>.jpg, the
    list_sequence files and the HDF5 test/data/info_test.mat (one query per test identity).

    Traps: one sequence's frame numbers cross 99 -> 100 without padding, and a .DS_Store in a tracklet
    directory. Returns a summary dict.
    """
    _check_sizes(height, width, min_len, max_len, num_train_ids, num_test_ids, num_cams, cams_per_id, 3, 99)
    config = dict(dataset='lsvid', seed=seed, num_train_ids=num_train_ids, num_test_ids=num_test_ids,
                  num_cams=num_cams, height=height, width=width, min_len=min_len, max_len=max_len,
                  cams_per_id=list(cams_per_id), quality=quality)
    rng = np.random.default_rng(seed)
    cameras = [random_camera(rng, height, width) for _ in range(num_cams)]
    train_pids, test_pids = _draw_pids(rng, [num_train_ids, num_test_ids])
    splits = {'train': _identity_tracks(rng, train_pids, num_cams, cams_per_id, (1, 1), False),
              'test': _identity_tracks(rng, test_pids, num_cams, cams_per_id, (1, 1), False)}
    summary, number = {}, 0
    with output_directory(out_dir) as root:
        os.makedirs(os.path.join(root, 'list_sequence'))
        for tag, (split, tracks) in enumerate(splits.items()):
            lines, frames_total = [], 0
            for k, (t, frames) in enumerate(_render_all(seed, tag, tracks, cameras, height, width, min_len,
                                                        max_len)):
                number += 1
                rel = f'tracklet_{split}/{t.pid:04d}/{number:05d}_'
                d = os.path.join(root, os.path.dirname(rel))
                os.makedirs(d, exist_ok=True)
                first = 100 - len(frames) // 2 if (tag, k) == (0, 1) else 1  # unpadded across 99 -> 100
                for i, frame in enumerate(frames):
                    f_no = str(first + i) if first > 1 else f'{first + i:03d}'
                    _save_jpeg(os.path.join(root, f'{rel}{f_no}_{t.cam:02d}_{int(rng.integers(10000)):04d}.jpg'),
                               frame, quality)
                lines.append(f'{rel} {t.pid}\n')
                frames_total += len(frames)
            with open(os.path.join(root, 'list_sequence', f'list_seq_{split}.txt'), 'w') as f:
                f.write(''.join(lines))
            summary[split] = dict(tracklets=len(tracks), frames=frames_total)
        with open(os.path.join(root, 'tracklet_train', f'{splits["train"][0].pid:04d}', '.DS_Store'), 'wb') as f:
            f.write(b'\0\0\0\1Bud1')
        test = splits['test']
        first_of = {}
        for r, t in enumerate(test):
            first_of.setdefault(t.pid, r)
        query = np.array(sorted(first_of.values())) + 1
        os.makedirs(os.path.join(root, 'test', 'data'))
        _write_hdf5_mat(os.path.join(root, 'test', 'data', 'info_test.mat'), 'query', query[None, :])
        summary['queries'] = len(query)
        _write_config(root, config)
    return summary


# ---------------------------------------------------------------------------------------------------------
# Clothes-changing sets: MEVID and CCVID

# MEVA camera numbers as MEVID names them; the first five are the indoor ones of MEVID's location split.
MEVID_CAMERAS = (329, 330, 507, 508, 509, 300, 328, 336, 339, 424, 436, 505, 506, 638, 639)
STRAY = 'Thumbs.db'


def outfit(rng, person):
    """The same body and gait in other clothes."""
    upper, upper2 = _colour(rng, _CLOTH), _colour(rng, _CLOTH)
    if np.abs(upper - upper2).sum() < 0.5:
        upper2 = 1 - upper2
    return dataclasses.replace(person, upper=upper, upper2=upper2, lower=_colour(rng, _CLOTH),
                               pattern=int(rng.integers(len(_PATTERNS))), lower_style=int(rng.integers(len(_LOWER))),
                               bag=int(rng.choice(3, p=[0.6, 0.25, 0.15])), bag_colour=_colour(rng, _CLOTH))


def wardrobe(rng, n_outfits):
    """An identity's outfits: n_outfits Persons sharing body shape and gait."""
    body = dataclasses.replace(random_person(rng), gait=float(rng.uniform(0.35, 0.8)))
    return [body] + [outfit(rng, body) for _ in range(n_outfits - 1)]


def _check(height, width, min_len, max_len, num_train_ids, num_test_ids, num_outfits, num_cams, max_cams):
    if height < 8 or width < 4:
        raise ReIDError(f'--height {height} --width {width}: frames must be at least 8x4 pixels')
    if not 1 <= min_len <= max_len <= 9999:
        raise ReIDError(f'--min_len {min_len} --max_len {max_len}: expected 1 <= min_len <= max_len <= 9999')
    _check_count('--num_train_ids', num_train_ids, 2, 999)
    _check_count('--num_test_ids', num_test_ids, 2, 999)
    _check_count('--num_outfits', num_outfits, 2, 9)
    _check_count('--num_cams', num_cams, 3, max_cams)


# ---------------------------------------------------------------------------------------------------------
# MEVID


def _mevid_tracks(rng, pids, num_cams, num_outfits):
    """(Track, outfit number) of each identity: every outfit seen by 2 cameras, one tracklet each."""
    out = []
    for pid in pids:
        for o, person in enumerate(wardrobe(rng, num_outfits), 1):
            for cam in np.sort(rng.choice(num_cams, 2, replace=False)):
                out.append((Track(int(pid), int(cam) + 1, 0, 0, 'person', person), o))
    for t, (track, _) in enumerate(out):
        track.number = t % 7 + 1  # tracklet numbers repeat across identities, as in the real names
    return out


def make_mevid(out_dir, seed=0, num_train_ids=6, num_test_ids=6, num_outfits=3, num_cams=6, height=64, width=32,
               min_len=4, max_len=40, quality=90):
    """Write a synthetic MEVID: bbox_train/, bbox_test/, the name, track info and query_IDX.txt files and the
    MEVID repository's test_track_scale.txt. Returns a summary dict."""
    _check(height, width, min_len, max_len, num_train_ids, num_test_ids, num_outfits, num_cams, 12)
    config = dict(dataset='mevid', seed=seed, num_train_ids=num_train_ids, num_test_ids=num_test_ids,
                  num_outfits=num_outfits, num_cams=num_cams, height=height, width=width, min_len=min_len,
                  max_len=max_len, quality=quality)
    rng = np.random.default_rng(seed)
    cameras = [random_camera(rng, height, width) for _ in range(num_cams)]
    # indoor and outdoor cameras both: the location protocols need both
    numbers = [MEVID_CAMERAS[i] for i in sorted(rng.choice(5, 2, replace=False))] + \
        [MEVID_CAMERAS[i] for i in sorted(rng.choice(np.arange(5, len(MEVID_CAMERAS)), num_cams - 2, replace=False))]
    train_pids, test_pids = _draw_pids(rng, [num_train_ids, num_test_ids])
    summary = {}
    with output_directory(out_dir) as root:
        for tag, (split, pids) in enumerate((('train', train_pids), ('test', test_pids))):
            tracks = _mevid_tracks(rng, pids, num_cams, num_outfits)
            outfits = [o for _, o in tracks]
            blocks = []
            for k, (t, frames) in enumerate(_render_all(seed, tag, [t for t, _ in tracks], cameras, height, width,
                                                        min_len, max_len)):
                d = os.path.join(root, f'bbox_{split}', f'{t.pid:04d}')
                os.makedirs(d, exist_ok=True)
                key = f'{t.pid:04d}O{outfits[k]:03d}C{numbers[t.cam - 1]:03d}T{t.number:03d}'
                first = int(rng.integers(0, 500))  # frame numbers of the video, not from 0
                names = [f'{key}F{first + i:05d}.jpg' for i in range(len(frames))]
                for name, frame in zip(names, frames):
                    _save_jpeg(os.path.join(d, name), frame, quality)
                blocks.append((names, [t.pid, outfits[k], numbers[t.cam - 1]], t.cam))
            with open(os.path.join(d, STRAY), 'wb') as f:
                f.write(b'\0stray')
            # the name file lists tracklets in its own order (not the directories' sorted order)
            order = rng.permutation(len(blocks))
            names, rows, scale_lines = [], [], []
            for b in order:
                block, (pid, o, cam), cam_index = blocks[b]
                rows.append([len(names), len(names) + len(block) - 1, pid, o, cam])
                scale_lines.append(f'{block[len(block) // 2]} {"l" if cameras[cam_index - 1].scale > 0.83 else "m"}')
                names.extend(block)
            if split == 'test':  # a row that covers no frame (start after end), which the loader skips
                at = int(rng.integers(1, len(rows)))
                pid, o, cam = rows[at][2:]
                rows.insert(at, [rows[at][0], rows[at][0] - 1, pid, o, cam])
                queries = _mevid_queries(rng, rows)
                with open(os.path.join(root, 'query_IDX.txt'), 'w') as f:
                    f.write(''.join(f'{q}\n' for q in queries))
                with open(os.path.join(root, 'test_track_scale.txt'), 'w') as f:
                    f.write(''.join(line + '\n' for line in scale_lines))
                summary['queries'] = len(queries)
            with open(os.path.join(root, f'{split}_name.txt'), 'w') as f:
                f.write(''.join(n + '\n' for n in names))
            with open(os.path.join(root, f'track_{split}_info.txt'), 'w') as f:
                f.write(''.join(' '.join(str(v) for v in r) + '\n' for r in rows))
            summary[split] = dict(tracklets=len(blocks), frames=len(names))
        _write_config(root, config)
    return summary


def _mevid_queries(rng, rows):
    """One query row per (pid, outfit), among rows that cover frames, ascending."""
    groups = {}
    for r, (start, end, pid, o, _) in enumerate(rows):
        if start <= end:
            groups.setdefault((pid, o), []).append(r)
    return sorted(int(rng.choice(g)) for _, g in sorted(groups.items()))


# ---------------------------------------------------------------------------------------------------------
# CCVID


def make_ccvid(out_dir, seed=0, num_train_ids=6, num_test_ids=6, num_outfits=3, num_cams=4, height=64, width=32,
               min_len=4, max_len=40, quality=90):
    """Write a synthetic CCVID: session1..3/<pid>_<nn>/<frame>.jpg and train.txt, query.txt, gallery.txt.

    Identity k wears outfit j in session j (session3 cameras are numbered on from 12), two tracklets per session
    in different cameras; clothes labels are texts such as ``u2_l1`` that different people share. Query: one
    tracklet per (test identity, session); gallery: the others. Returns a summary dict."""
    _check(height, width, min_len, max_len, num_train_ids, num_test_ids, num_outfits, num_cams, 12)
    if num_outfits > 3:
        raise ReIDError(f'--num_outfits {num_outfits}: CCVID has 3 sessions, one outfit each (expected 2..3)')
    config = dict(dataset='ccvid', seed=seed, num_train_ids=num_train_ids, num_test_ids=num_test_ids,
                  num_outfits=num_outfits, num_cams=num_cams, height=height, width=width, min_len=min_len,
                  max_len=max_len, quality=quality)
    rng = np.random.default_rng(seed)
    cameras = [random_camera(rng, height, width) for _ in range(num_cams)]
    train_pids, test_pids = _draw_pids(rng, [num_train_ids, num_test_ids])
    lists = {'train': [], 'query': [], 'gallery': []}
    summary = {}
    with output_directory(out_dir) as root:
        for tag, (split, pids) in enumerate((('train', train_pids), ('test', test_pids))):
            tracks, lines = [], []
            for pid in pids:
                for s, person in enumerate(wardrobe(rng, num_outfits), 1):
                    label = f'u{rng.integers(1, 3)}_l{rng.integers(1, 3)}'  # a text other people wear too
                    for cam in np.sort(rng.choice(num_cams, 2, replace=False)) + 1:
                        tracks.append(Track(int(pid), int(cam), 0, 0, 'person', person))
                        lines.append((f'session{s}/{pid:03d}_{cam:02d}', f'{pid} {label}', s))
            frames_total = 0
            for (_, frames), (rel, _, _) in zip(_render_all(seed, tag, tracks, cameras, height, width, min_len,
                                                            max_len), lines):
                d = os.path.join(root, rel)
                os.makedirs(d, exist_ok=True)
                for i, frame in enumerate(frames):
                    _save_jpeg(os.path.join(d, f'{i + 1:05d}.jpg'), frame, quality)
                frames_total += len(frames)
            with open(os.path.join(root, lines[0][0], STRAY), 'wb') as f:
                f.write(b'\0stray')
            if split == 'train':
                lists['train'] = [f'{rel} {rest}' for rel, rest, _ in lines]
            else:
                seen = set()
                for rel, rest, s in lines:
                    first = (rest.split()[0], s) not in seen
                    seen.add((rest.split()[0], s))
                    lists['query' if first else 'gallery'].append(f'{rel} {rest}')
            summary[split] = dict(tracklets=len(tracks), frames=frames_total)
        for name, entries in lists.items():
            with open(os.path.join(root, f'{name}.txt'), 'w') as f:
                f.write(''.join(e + '\n' for e in entries))
        summary['queries'] = len(lists['query'])
        _write_config(root, config)
    return summary
