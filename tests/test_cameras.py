"""Camera footage -> tracklets -> global identities: tracklets_from_video.py, the camera arrays of
extract_features.py, associate.py's clustering and scores, and the synthetic scene. Tiny videos only."""
import csv
import json
import os

import numpy as np
import pytest
from helpers import CLIP, MODEL, random_checkpoint
from PIL import Image

import associate
import extract_features
import tracklets_from_video
from util.cli.options import run_main
from util.data.cameras import clip_boxes, read_tracks, select_tracklets, tracklet_meta
from util.errors import DataError
from util.evaluation import association as A
from util.evaluation.embed import tracklet_features

H, W = 48, 64


def write_video(path, n=8, seed=0, fps=5):
    """A tiny H.264 video of random blocks; returns its decoded RGB frames (the reference pictures)."""
    import av
    rng = np.random.default_rng(seed)
    with av.open(str(path), 'w') as c:
        s = c.add_stream('h264', rate=fps)
        s.width, s.height, s.pix_fmt = W, H, 'yuv420p'
        for _ in range(n):
            img = np.kron(rng.integers(0, 255, (H // 8, W // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format='rgb24')):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(str(path)) as c:
        return [f.to_ndarray(format='rgb24') for f in c.decode(video=0)]


def write_tracks(path, rows):
    path.write_text(''.join(','.join(str(v) for v in r) + '\n' for r in rows))
    return path


# id 1: frames 1, 2 then again 5, 6 after a gap (rows out of order), partly outside the frame in frame 2;
# id 2: frames 3, 4, entirely outside the frame in frame 4 (skipped)
TRACKS = [(5, 1, 10, 5, 20, 30, 1), (1, 1, 10.7, 5.2, 20, 30, 1, -1, -1, -1), (2, 1, -5, 30, 20, 30, 0.9),
          (6, 1, 12, 6, 20, 30, 1), (3, 2, 30, 10, 16.5, 20, 1), (4, 2, 70, 10, 16, 20, 1)]


def crops_of(folder):
    return sorted(os.listdir(folder))


def run(main, argv, capsys):
    code = run_main(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_clip_boxes_floor_and_clamp():
    rect, ok = clip_boxes([[10.7, 5.2, 20, 30], [-5, 30, 20, 30], [70, 10, 16, 20], [3, 3, 0.5, 5]], H, W)
    assert rect.tolist()[:3] == [[10, 5, 30, 35], [0, 30, 15, 48], [64, 10, 64, 30]]
    assert ok.tolist() == [True, True, False, False]


def test_single_camera_crops_manifest(tmp_path, capsys):
    frames = write_video(tmp_path / 'c7.mp4')
    tracks = write_tracks(tmp_path / 'c7.txt', TRACKS)
    out = tmp_path / 'crops'
    assert tracklets_from_video.main(['--video', str(tmp_path / 'c7.mp4'), '--tracks', str(tracks), '--out', str(out),
                                      '--ext', 'png', '--no_progress']) == 0
    assert sorted(os.listdir(out)) == ['c7_t00001', 'c7_t00002', 'tracklets.csv']
    assert crops_of(out / 'c7_t00001') == ['f000001.png', 'f000002.png', 'f000005.png', 'f000006.png']
    assert crops_of(out / 'c7_t00002') == ['f000003.png']
    # crops are the decoder's RGB pixels of the clipped box, losslessly
    got = np.asarray(Image.open(out / 'c7_t00001' / 'f000001.png'))
    assert np.array_equal(got, frames[0][5:35, 10:30])
    got = np.asarray(Image.open(out / 'c7_t00001' / 'f000002.png'))
    assert np.array_equal(got, frames[1][30:48, 0:15])
    got = np.asarray(Image.open(out / 'c7_t00002' / 'f000003.png'))
    assert np.array_equal(got, frames[2][10:30, 30:46])
    with open(out / 'tracklets.csv') as f:
        rows = list(csv.DictReader(f))
    assert [(r['camera'], r['track_id'], r['folder'], r['first_frame'], r['last_frame'], r['num_crops'])
            for r in rows] == [('c7', '1', 'c7_t00001', '1', '6', '4'), ('c7', '2', 'c7_t00002', '3', '3', '1')]
    assert float(rows[0]['mean_height']) == (30 + 18 + 30 + 30) / 4 and float(rows[0]['fps']) == 5
    # refused when the folder exists, replaced with --overwrite
    code, err = run(tracklets_from_video.main, ['--video', str(tmp_path / 'c7.mp4'), '--tracks', str(tracks),
                                                '--out', str(out)], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith('error:') and '--overwrite' in err[0]
    assert tracklets_from_video.main(['--video', str(tmp_path / 'c7.mp4'), '--tracks', str(tracks), '--out',
                                      str(out), '--overwrite', '--min_frames', '2', '--no_progress']) == 0
    assert sorted(os.listdir(out)) == ['c7_t00001', 'tracklets.csv']
    assert crops_of(out / 'c7_t00001')[0].endswith('.jpg')
    # never over its own inputs, even with --overwrite
    code, err = run(tracklets_from_video.main, ['--video', str(tmp_path / 'c7.mp4'), '--tracks', str(tracks),
                                                '--out', str(tmp_path), '--overwrite'], capsys)
    assert code == 2 and len(err) == 1 and 'holds the input' in err[0] and (tmp_path / 'c7.mp4').exists()


def test_boxes_after_the_end_of_the_video(tmp_path, capsys):
    write_video(tmp_path / 'c1.mp4', n=3)
    write_tracks(tmp_path / 'c1.txt', [(2, 1, 0, 0, 8, 8, 1), (9, 1, 0, 0, 8, 8, 1), (9, 2, 0, 0, 8, 8, 1)])
    assert tracklets_from_video.main(['--scene', str(tmp_path), '--out', str(tmp_path / 'o'), '--no_progress']) == 0
    assert '2 boxes after the end of the video skipped' in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / 'o')) == ['c1_t00001', 'tracklets.csv']
    assert crops_of(tmp_path / 'o' / 'c1_t00001') == ['f000002.jpg']


def test_selection_options(tmp_path):
    rows = [(f, 1, 0, 0, 10, 10 + f) for f in range(1, 11)] + [(1, 2, 0, 0, 5, 4)]
    tracks = read_tracks(write_tracks(tmp_path / 'c1.txt', rows))
    sel = select_tracklets(tracks, H, W)
    assert sel[1][0].tolist() == list(range(1, 11)) and sel[2][0].tolist() == [1]
    assert select_tracklets(tracks, H, W, every=3)[1][0].tolist() == [1, 4, 7, 10]
    assert select_tracklets(tracks, H, W, max_frames=3)[1][0].tolist() == [1, 5, 10]
    assert select_tracklets(tracks, H, W, every=2, max_frames=2)[1][0].tolist() == [1, 9]
    assert list(select_tracklets(tracks, H, W, min_frames=2)) == [1]
    assert list(select_tracklets(tracks, H, W, min_height=5)) == [1]


def test_frames_folder_scene_and_meta(tmp_path):
    scene = tmp_path / 'scene'
    (scene / 'c2' / 'img1').mkdir(parents=True)
    rng = np.random.default_rng(1)
    pics = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(4)]
    for k, p in enumerate(pics, 1):
        Image.fromarray(p).save(scene / 'c2' / 'img1' / f'{k:06d}.png')
    write_tracks(scene / 'c2.txt', [(2, 3, 1, 2, 10, 12, 1), (4, 3, 5, 5, 10, 12, 1), (1, 4, 40, 30, 40, 40, 1)])
    out = tmp_path / 'crops'
    assert tracklets_from_video.main(['--scene', str(scene), '--out', str(out), '--ext', 'png',
                                      '--no_progress']) == 0
    assert np.array_equal(np.asarray(Image.open(out / 'c2_t00003' / 'f000004.png')), pics[3][5:17, 5:15])
    assert np.array_equal(np.asarray(Image.open(out / 'c2_t00004' / 'f000001.png')), pics[0][30:48, 40:64])
    meta = tracklet_meta([out / 'c2_t00003', out / 'c2_t00004'])
    assert meta['cams'].tolist() == [2, 2] and meta['track_ids'].tolist() == [3, 4]
    assert meta['first_frame'].tolist() == [2, 1] and meta['last_frame'].tolist() == [4, 1]
    os.remove(out / 'tracklets.csv')  # from the folder and crop names alone
    meta = tracklet_meta([out / 'c2_t00003'])
    assert meta['camera_names'].tolist() == ['c2'] and meta['last_frame'].tolist() == [4]
    assert tracklet_meta([tmp_path / 'scene' / 'c2' / 'img1']) is None


def test_extract_features_stores_camera_arrays(tmp_path):
    frames = write_video(tmp_path / 'c3.mp4', n=6)
    assert len(frames) == 6
    write_tracks(tmp_path / 'c3.txt', [(f, 1, 4, 4, 16, 32, 1) for f in range(1, 6)] + [(6, 9, 30, 10, 16, 32, 1)])
    crops = tmp_path / 'crops'
    tracklets_from_video.main(['--scene', str(tmp_path), '--out', str(crops), '--no_progress'])
    ckpt = random_checkpoint(tmp_path / 'ckpt.pth')
    out = tmp_path / 'f.npz'
    assert extract_features.main(['--load_ckpt', str(ckpt)] + MODEL + CLIP
                                 + ['--tracklets', str(crops), '--out', str(out)]) == 0
    with np.load(out) as z:
        assert z['features'].shape[0] == 2
        assert z['cams'].tolist() == [3, 3] and z['track_ids'].tolist() == [1, 9]
        assert z['first_frame'].tolist() == [1, 6] and z['last_frame'].tolist() == [5, 6]
        assert z['camera_names'].tolist() == ['c3', 'c3']


def test_bad_input_one_line(tmp_path, capsys):
    write_video(tmp_path / 'c1.mp4', n=3)
    # a malformed line: file and line number
    bad = write_tracks(tmp_path / 'c1.txt', [(1, 1, 2, 2, 10, 10, 1), (2, 1, 'x', 2, 10, 10, 1)])
    code, err = run(tracklets_from_video.main, ['--scene', str(tmp_path), '--out', str(tmp_path / 'o')], capsys)
    assert code == 2 and len(err) == 1 and f'{bad}:2' in err[0]
    write_tracks(tmp_path / 'c1.txt', [(1, 1, 2, 2, 10, 10, 1)])
    # a camera without a video
    write_tracks(tmp_path / 'c2.txt', [(1, 1, 2, 2, 10, 10, 1)])
    code, err = run(tracklets_from_video.main, ['--scene', str(tmp_path), '--out', str(tmp_path / 'o')], capsys)
    assert code == 2 and len(err) == 1 and 'c2' in err[0] and 'no video' in err[0]
    # a video that cannot be decoded: nothing is left behind, not even camera 1's crops
    (tmp_path / 'c2.mp4').write_bytes(b'\x00\x00\x01 not a video' * 50)
    code, err = run(tracklets_from_video.main, ['--scene', str(tmp_path), '--out', str(tmp_path / 'o')], capsys)
    assert code == 2 and len(err) == 1 and 'c2.mp4' in err[0]
    assert not any(n.startswith(('o', '.o')) for n in os.listdir(tmp_path))


def test_read_tracks_errors(tmp_path):
    for text, what in [('1,2,3\n', 'fields'), ('1.5,1,0,0,1,1\n', 'integers'), ('1,1,0,0,-1,1\n', 'w, h'),
                       ('0,1,0,0,1,1\n', 'integers')]:
        (tmp_path / 't.txt').write_text('\n' + text)
        with pytest.raises(DataError, match=f'{tmp_path / "t.txt"}:2: .*' + what.replace('.', r'\.')):
            read_tracks(tmp_path / 't.txt')


# -- association ---------------------------------------------------------------------------------------------

def random_problem(rng, n, dim=12):
    centres = rng.normal(size=(max(2, n // 3), dim))
    x = A.unit_features(centres[rng.integers(len(centres), size=n)] + rng.normal(0, 0.7, (n, dim)))
    cams = rng.integers(1, 4, n)
    first = rng.integers(1, 60, n)
    return x, cams, first, first + rng.integers(0, 20, n)


@pytest.mark.parametrize('seed', range(6))
def test_sparse_clustering_equals_full_matrix(seed):
    rng = np.random.default_rng(seed)
    x, cams, first, last = random_problem(rng, int(rng.integers(20, 80)))
    for t in (0.3, 0.6, 1.0):
        ids, info = A.average_linkage(x, t, cams, first, last, chunk=16)
        ref = A.average_linkage_dense(A.cosine_cannot_link_matrix(x, cams, first, last), t)
        assert np.array_equal(ids, ref) and info['capped_rows'] == 0
        # never two cannot-linked tracklets in one identity
        idx = np.arange(len(x))
        same = ids[:, None] == ids[None, :]
        assert not (same & A.cannot_link(cams, first, last, idx, idx) & ~np.eye(len(x), dtype=bool)).any()


def test_threshold_edges_are_all_pairs_below_threshold():
    rng = np.random.default_rng(0)
    x, cams, first, last = random_problem(rng, 50)
    i, j, d, _ = A.threshold_edges(x, 0.5, cams, first, last, chunk=7)
    full = A.cosine_cannot_link_matrix(x, cams, first, last)
    ri, rj = np.nonzero(np.triu(full < 0.5, 1))
    assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(ri.tolist(), rj.tolist()))
    np.testing.assert_allclose(d, full[i, j], atol=1e-6)


def test_threshold_chosen_between_modes():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 64))
    x = A.unit_features(np.repeat(centres, 4, axis=0) + rng.normal(0, 0.25, (80, 64)))
    cams, first = np.tile(np.arange(1, 5), 20), np.arange(80)
    t = A.choose_threshold(x, cams, first, first, k=5)
    ids, _ = A.average_linkage(x, t, cams, first, first)
    assert np.array_equal(ids, np.repeat(np.arange(1, 21), 4))


def test_reranked_clustering_respects_cannot_link():
    rng = np.random.default_rng(3)
    x, cams, first, last = random_problem(rng, 40)
    data = dict(features=x, cams=cams, first_frame=first, last_frame=last)
    ids, t, _ = A.cluster(data, rerank=True, k1=6, k2=3)
    idx = np.arange(len(x))
    same = ids[:, None] == ids[None, :]
    assert not (same & A.cannot_link(cams, first, last, idx, idx) & ~np.eye(len(x), dtype=bool)).any()
    d = A.reranked_matrix(x, 6, 3)
    assert np.allclose(d, d.T) and np.allclose(np.diag(d), np.diag(d).min())


def test_multi_camera_idf1_hand_computed():
    # person 1: camera 1 frames 1-2 and camera 2 frame 1; person 2: camera 2 frame 2
    b1, b2 = [0, 0, 10, 10], [20, 20, 10, 10]
    gt = {1: (np.array([1, 2]), np.array([1, 1]), np.array([b1, b1])),
          2: (np.array([1, 2]), np.array([1, 2]), np.array([b2, b1]))}
    # predicted id 7 follows person 1 in camera 1; id 8 has person 1 in camera 2 frame 1 and person 2 in frame
    # 2 (a box of IoU exactly 0.5); id 9 is a false box. In one frame numbering, camera 2's frame-2 box would
    # also overlap camera 1's: the offset keeps them apart.
    pred = {1: (np.array([1, 2, 1]), np.array([7, 7, 9]), np.array([b1, b1, [40, 40, 5, 5]])),
            2: (np.array([1, 2]), np.array([8, 8]), np.array([b2, [0, 0, 10, 5]]))}
    r = A.multi_camera_identity(gt, pred)
    # best global matching: 1 <-> 7 (2 boxes), 2 <-> 8 (1 box): IDTP 3 of 4 gt and 5 predicted boxes
    assert (r['IDTP'], r['IDFN'], r['IDFP']) == (3, 1, 2)
    assert r['IDP'] == pytest.approx(3 / 5) and r['IDR'] == pytest.approx(3 / 4)
    assert r['IDF1'] == pytest.approx(2 * 3 / (5 + 4))


def test_pairwise_scores_hand_computed():
    r = A.pairwise_scores([1, 1, 2, 2, 3], [1, 1, 1, 2, -1])
    assert r['pair_precision'] == pytest.approx(1 / 2) and r['pair_recall'] == pytest.approx(1 / 3)
    assert r['pair_f1'] == pytest.approx(0.4)
    assert r['ari'] == pytest.approx((1 - 0.6) / (2.5 - 0.6))
    assert A.pairwise_scores([4, 4, 5], [1, 1, 2])['ari'] == pytest.approx(1)


def test_scene_generator_rejects_odd_sizes(tmp_path, capsys):
    from util.cli.synthetic import main as synthetic_main
    code, err = run(synthetic_main, ['scene', '--out', str(tmp_path / 's'), '--height', '95'], capsys)
    assert code == 2 and len(err) == 1 and 'even' in err[0] and not (tmp_path / 's').exists()


def test_the_same_seed_writes_the_same_scene(tmp_path):
    from util.data.synthetic_scene import make_scene
    files = []
    for k in range(3):  # byte for byte, videos included (the encoder's settings: util.data.synthetic_scene)
        make_scene(tmp_path / f's{k}', seed=3, num_cameras=2, num_persons=3, num_frames=40, height=96, width=128)
        files.append({n: (tmp_path / f's{k}' / n).read_bytes() for n in ('c1.mp4', 'c2.mp4', 'c1.txt', 'c2.txt')})
    assert files[0] == files[1] == files[2]


def test_associate_on_synthetic_scene(tmp_path, capsys):
    from util.cli.synthetic import main as synthetic_main
    scene = tmp_path / 'scene'
    assert synthetic_main(['scene', '--out', str(scene), '--cameras', '2', '--num_persons', '3', '--num_frames',
                           '24', '--height', '96', '--width', '96', '--seed', '1']) == 0
    assert sorted(os.listdir(scene)) == ['c1.mp4', 'c1.txt', 'c2.mp4', 'c2.txt', 'gt', 'synthetic.json']
    config = json.loads((scene / 'synthetic.json').read_text())
    assert config['codec'] == 'h264' and config['tracker_faults']['false_track']['frames'] == 5
    crops = tmp_path / 'crops'
    assert tracklets_from_video.main(['--scene', str(scene), '--out', str(crops), '--no_progress']) == 0
    folders = sorted(n for n in os.listdir(crops) if n != 'tracklets.csv')
    meta = tracklet_meta([crops / n for n in folders])
    # features that know the truth: each tracklet's ground-truth identity, one-hot plus noise
    gt = {}
    for cam in (1, 2):
        g = read_tracks(scene / 'gt' / f'c{cam}.txt')
        gt[cam] = (g.frame, g.ids, g.boxes)
    boxes = []
    for c, t in zip(meta['cams'].tolist(), meta['track_ids'].tolist()):
        tr = read_tracks(scene / f'c{c}.txt')
        boxes.append((c, tr.frame[tr.ids == t], tr.boxes[tr.ids == t]))
    truth = A.tracklet_gt_ids(boxes, gt)
    feats = np.eye(8)[truth + 1] + np.random.default_rng(0).normal(0, 0.01, (len(truth), 8))
    cams = meta.pop('cams')
    tracklet_features(feats, [crops / n for n in folders], -np.ones(len(truth)), cams, **meta).write(
        tmp_path / 'f.npz')
    out = tmp_path / 'ids'
    assert associate.main(['--features', str(tmp_path / 'f.npz'), '--scene', str(scene), '--out', str(out),
                           '--threshold', '0.5']) == 0
    printed = capsys.readouterr().out
    assert 'IDF1' in printed and 'random ids' in printed
    with open(out / 'identities.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(truth) and {r['camera'] for r in rows} == {'c1', 'c2'}
    results = json.loads((out / 'results.json').read_text())
    assert results['method']['IDF1'] >= results['one_per_tracklet']['IDF1']
    assert results['method']['pair_precision'] == 1.0
    # the per-camera files: the tracker rows of the kept tracklets with their global ids
    gid = {(r['camera'], int(r['track_id'])): int(r['global_id']) for r in rows}
    src = read_tracks(scene / 'c1.txt')
    mot = read_tracks(out / 'c1.txt')
    kept = [(f, gid[('c1', int(i))]) for f, i in zip(src.frame, src.ids) if ('c1', int(i)) in gid]
    assert list(zip(mot.frame.tolist(), mot.ids.tolist())) == kept
    assert np.array_equal(mot.boxes, src.boxes[[('c1', int(i)) in gid for i in src.ids]])
    # an existing output folder is refused, and a features file without the camera arrays
    code, err = run(associate.main, ['--features', str(tmp_path / 'f.npz'), '--out', str(out)], capsys)
    assert code == 2 and len(err) == 1 and '--overwrite' in err[0]
    np.savez(tmp_path / 'plain.npz', features=feats, labels=truth, cams=cams)
    code, err = run(associate.main, ['--features', str(tmp_path / 'plain.npz'), '--out', str(tmp_path / 'x')],
                    capsys)
    assert code == 2 and len(err) == 1 and 'track_ids' in err[0] and not (tmp_path / 'x').exists()
