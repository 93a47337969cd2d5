"""Synthetic clothes-changing video re-ID sets in the official MEVID and CCVID layouts (util.data.synthetic
draws the people).

Every identity wears several outfits: an outfit changes the clothing colours, pattern, lower garment and bag;
skin, hair, body height, width, waist line and the walking rhythm (gait) stay the identity's own. The traps of
the real data are included: a MEVID info row covering no frame, a MEVID name file whose tracklet order is not
the directories' sorted order, CCVID ``session3`` cameras (+12), the same clothes label text worn by different
people (different clothes ids), and stray non-image files in frame directories.

    python -m util.synthetic mevid --out data/MEVID
    python -m util.synthetic ccvid --out data/CCVID
"""

import dataclasses
import os

import numpy as np

from util.data.synthetic import (
    _CLOTH,
    _LOWER,
    _PATTERNS,
    Track,
    _check_count,
    _colour,
    _draw_pids,
    _output,
    _render_all,
    _save_jpeg,
    _write_config,
    random_camera,
    random_person,
)
from util.errors import ReIDError

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
    with _output(out_dir) as root:
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
    with _output(out_dir) as root:
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
