"""A synthetic multi-camera scene: videos, ground truth and a simulated tracker's output.

The synthetic identities of util.data.synthetic (clothes, colours, body shape) walk across the views of several
cameras over time: a person enters a view from one side, walks across and leaves, and re-appears later in
another camera (sometimes the same one). Two people cross each other in one view, the nearer one occluding
the other. Each camera is an H.264 MP4 (libx264 through PyAV, yuv420p; MPEG-4 part 2 with a PyAV build
that lacks libx264), with in the scene folder::

    c1.mp4  c1.txt        the video and a simulated tracker's output (MOTChallenge: frame,id,x,y,w,h,conf,...)
    gt/c1.txt             ground truth, ids = the global identities (1..num_persons)
    synthetic.json        the generator's settings and what the tracker simulation did

The tracker output is the ground truth with box jitter and the usual faults: boxes only while a person is
mostly inside the view (so boxes touch and cross the frame border), tracks fragmented into two ids by a
short gap, one id switch where the two people cross, and one short false track on the background.

    python -m util.synthetic scene --out data/scene --cameras 3 --num_persons 6 --num_frames 200
"""
import json
import os

import numpy as np

from util.data.synthetic import MARKER, draw_person, output_directory, part_colours, random_camera, random_person

CODEC = 'h264'  # libx264, in the FFmpeg that PyAV's wheels bundle


def video_codec():
    """'h264' when this PyAV build has an H.264 encoder (libx264), else 'mpeg4' (MPEG-4 part 2, in every
    FFmpeg build)."""
    import av
    return CODEC if 'libx264' in av.codecs_available else 'mpeg4'


def _visits(rng, num_persons, num_cameras, num_frames):
    """[(pid, camera index, start frame, length, direction, feet fraction)] with 0-based frames."""
    visits = []
    for pid in range(1, num_persons + 1):
        t = int(rng.integers(0, max(1, num_frames // 4)))
        cams = list(rng.permutation(num_cameras))
        count = int(rng.integers(2, 4))
        order = [cams[k % len(cams)] for k in range(count)]
        if count == 3 and num_cameras > 1 and rng.random() < 0.5:
            order[2] = order[0]                     # comes back to the first camera
        for cam in order:
            length = int(rng.integers(max(8, num_frames // 7), max(9, num_frames // 4)))
            if t >= num_frames - 4:
                break
            visits.append([pid, int(cam), t, min(length, num_frames - t), int(rng.choice([-1, 1])),
                           float(rng.uniform(0.72, 0.97))])
            t += length + int(rng.integers(3, max(4, num_frames // 12)))
    # two people cross in camera 0 at the same time, walking in opposite directions (an occlusion)
    if num_persons >= 2:
        first = next(v for v in visits if v[0] == 1)
        second = next(v for v in visits if v[0] == 2)
        second[1], second[2], second[3] = first[1], first[2], first[3]
        second[4] = -first[4]
        second[5] = min(0.97, first[5] + 0.05)
        t = first[2] + first[3] + 3   # the second person's later visits follow the crossing
        for v in (v for v in visits if v[0] == 2 and v is not second):
            v[2] = t
            v[3] = max(0, min(v[3], num_frames - t))
            t += v[3] + 3
        visits = [v for v in visits if v[3] >= 4]
    # a camera's visits of one person must not overlap in time
    return [tuple(v) for v in visits]


def _boxes(visit, height, width):
    """Per frame of a visit: frames (n,), boxes (n, 4) x, y, w, h of the whole person (may leave the view)."""
    pid, cam, start, length, direction, feet = visit
    s = height * (0.3 + 0.9 * (feet - 0.65))            # nearer (lower) people are taller
    bw = 0.44 * s
    path = np.linspace(-0.5 * bw, width + 0.5 * bw, length) if length > 1 else np.array([width / 2])
    cx = path if direction > 0 else path[::-1]
    frames = np.arange(start, start + length)
    boxes = np.stack([cx - bw / 2, np.full(length, feet * height - s), np.full(length, bw), np.full(length, s)], 1)
    return frames, boxes


BOX_FILL = 0.88  # the person's height / the detection box's height; boxes are twice as tall as wide


def _detection_boxes(person_boxes):
    """Detection boxes around the drawn people: a margin above and below, 1:2 (as the MARS crops are)."""
    x, y, w, s = person_boxes.T
    bh = s / BOX_FILL
    cx = x + w / 2
    return np.stack([cx - bh / 4, y - (bh - s) / 2, bh / 2, bh], axis=1)


def _render(person, picture, box, phase, flip, light):
    """Draw a person into picture (H, W, 3) float32 in place, inside its box x, y, w, h."""
    height, width = picture.shape[:2]
    x, y, w, h = box
    x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x1, y1 = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
    if x1 <= x0 or y1 <= y0:
        return
    yy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - y) / h
    xx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - (x + w / 2)) / h * flip
    v, u = np.broadcast_arrays(yy[None, :, None], xx[None, None, :])
    labels = draw_person(person, u, v, np.array([phase]))[0]
    colours = (part_colours(person) * light).astype(np.float32)
    window = picture[y0:y1, x0:x1]
    window[:] = np.where(labels[..., None] > 0, colours[labels], window)


def _encode(path, frames, fps, codec):
    import av
    with av.open(path, 'w') as container:
        stream = container.add_stream(codec, rate=int(fps))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = 'yuv420p'
        if codec == 'h264':
            # the same seed must write the same videos: libx264's macroblock-tree rate control (and its frame
            # threads) gave different bits from run to run here (libx264 of PyAV 18.1), so both are off
            stream.options = {'crf': '23', 'preset': 'fast', 'x264-params': 'mbtree=0'}
        stream.codec_context.thread_count = 1  # after the options, which would reset it
        for picture in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _rows(frames, ids, boxes):
    return [f'{f + 1},{i},{b[0]:.2f},{b[1]:.2f},{b[2]:.2f},{b[3]:.2f},1,-1,-1,-1'
            for f, i, b in zip(frames, ids, boxes)]


def _write_lines(path, lines):
    order = sorted(range(len(lines)), key=lambda k: (int(lines[k].split(',')[0]), int(lines[k].split(',')[1])))
    with open(path, 'w') as f:
        f.writelines(lines[k] + '\n' for k in order)


def make_scene(out_dir, seed=0, num_cameras=3, num_persons=6, num_frames=200, fps=10, height=240, width=320):
    """Write the scene folder; returns a summary dict. Heights and widths must be even (yuv420p)."""
    from util.errors import ReIDError
    if num_cameras < 1 or num_persons < 1 or num_frames < 20 or fps < 1:
        raise ReIDError('scene: --cameras and --num_persons must be at least 1, --num_frames at least 20, '
                        '--fps at least 1')
    if height < 32 or width < 32 or height % 2 or width % 2:
        raise ReIDError('scene: --height and --width must be even and at least 32 (H.264 in yuv420p)')
    rng = np.random.default_rng(seed)
    persons = {pid: random_person(rng) for pid in range(1, num_persons + 1)}
    cameras = [random_camera(rng, height, width) for _ in range(num_cameras)]
    visits = _visits(rng, num_persons, num_cameras, num_frames)
    codec = video_codec()
    faults = dict(fragmented=[], id_switch=None, false_track=None)
    cross = next((v[1], v[2]) for v in visits if v[0] == 1)   # where persons 1 and 2 cross
    with output_directory(out_dir) as root:
        os.makedirs(os.path.join(root, 'gt'))
        for c in range(num_cameras):
            name = f'c{c + 1}'
            cam = cameras[c]
            offset = int(rng.integers(cam.background.shape[1] - width + 1))
            base = cam.background[:, offset:offset + width]
            pictures = np.repeat(base[None], num_frames, axis=0).copy()               # (T, H, W, 3)
            mine = sorted((v for v in visits if v[1] == c), key=lambda v: v[5])    # far ones drawn first
            gt_lines, trk_lines, next_id = [], [], 1
            tracks = []
            for visit in mine:
                pid = visit[0]
                frames, body = _boxes(visit, height, width)
                phase0, flip = rng.uniform(0, 2 * np.pi), float(visit[4])
                light = cam.gain * (1 + rng.normal(0, 0.03, 3))
                for k, (f, b) in enumerate(zip(frames, body)):
                    _render(persons[pid], pictures[f], b, phase0 + 0.6 * k, flip, light / cam.gain)
                boxes = _detection_boxes(body)
                inside = (np.minimum(boxes[:, 0] + boxes[:, 2], width) - np.maximum(boxes[:, 0], 0)) / boxes[:, 2]
                seen = inside > 0.02
                gt_lines += _rows(frames[seen], [pid] * int(seen.sum()), boxes[seen])
                det = inside > 0.35                                                 # the detector's view
                jitter = rng.normal(0, 0.02, (len(boxes), 4)) * boxes[:, 3:4]
                crossing = pid in (1, 2) and num_persons >= 2 and (visit[1], visit[2]) == cross
                tracks.append([pid, frames[det], boxes[det] + jitter[det], crossing])
            # the id switch: the two crossing people swap tracker ids where they meet
            ids = []
            for t in tracks:
                ids.append(np.full(len(t[1]), next_id, dtype=np.int64))
                next_id += 1
            pair = [k for k, t in enumerate(tracks) if t[3]]
            if len(pair) == 2:
                a, b = pair[0], pair[1]
                common = np.intersect1d(tracks[a][1], tracks[b][1])
                if len(common):
                    meet = int(common[len(common) // 2])
                    ia, ib = ids[a][0], ids[b][0]
                    ids[a] = np.where(tracks[a][1] > meet, ib, ia)
                    ids[b] = np.where(tracks[b][1] > meet, ia, ib)
                    faults['id_switch'] = dict(camera=name, frame=meet + 2, ids=[int(ia), int(ib)])
            # fragmentation: long tracks (not the switched ones) break into two ids around a short gap
            for k, t in enumerate(tracks):
                n = len(t[1])
                if k not in pair and n >= 16 and rng.random() < 0.5:
                    cut = int(rng.integers(n // 3, 2 * n // 3))
                    keep = np.ones(n, bool)
                    keep[cut:cut + 3] = False
                    ids[k] = np.where(np.arange(n) >= cut, next_id, ids[k])
                    faults['fragmented'].append(dict(camera=name, pid=int(t[0]), ids=[int(ids[k][0]), next_id]))
                    next_id += 1
                    t[1], t[2], ids[k] = t[1][keep], t[2][keep], ids[k][keep]
            for t, i in zip(tracks, ids):
                trk_lines += _rows(t[1], i, t[2])
            if c == 0:  # a short false track on the background
                f0 = int(rng.integers(0, num_frames - 6))
                hh = 0.35 * height
                box = np.array([rng.uniform(0, width - 0.45 * hh), rng.uniform(0, height - hh), 0.45 * hh, hh])
                trk_lines += _rows(np.arange(f0, f0 + 5), [next_id] * 5, np.repeat(box[None], 5, 0))
                faults['false_track'] = dict(camera=name, id=next_id, first_frame=f0 + 1, frames=5)
            pictures = pictures * cam.gain.astype(np.float32) + cam.offset.astype(np.float32)
            pictures += cam.noise * rng.standard_normal(pictures.shape, dtype=np.float32)
            frames8 = (np.clip(pictures, 0, 1) * 255 + 0.5).astype(np.uint8)
            _encode(os.path.join(root, name + '.mp4'), frames8, fps, codec)
            _write_lines(os.path.join(root, name + '.txt'), trk_lines)
            _write_lines(os.path.join(root, 'gt', name + '.txt'), gt_lines)
        config = dict(layout='scene', seed=seed, cameras=num_cameras, num_persons=num_persons, num_frames=num_frames,
                      fps=fps, height=height, width=width, codec=codec,
                      visits=[dict(pid=v[0], camera=f'c{v[1] + 1}', first_frame=v[2] + 1, frames=v[3]) for v in visits],
                      tracker_faults=faults)
        with open(os.path.join(root, MARKER), 'w') as f:
            json.dump(config, f, indent=1, sort_keys=True)
            f.write('\n')
    return dict(cameras=num_cameras, persons=num_persons, visits=len(visits), frames_per_camera=num_frames)
