"""``python -m util.synthetic``: the command line of the synthetic dataset writers (util.data.synthetic)."""
import argparse
import sys
import time

from util.cli.options import run_main
from util.data.synthetic import make_ccvid, make_dukev, make_ilidsvid, make_lsvid, make_mars, make_mevid, make_prid2011
from util.data.synthetic_scene import make_scene

LAYOUTS = {
    'mars': 'MARS (bbox_train, bbox_test, MARS-evaluation/info)',
    'dukev': 'DukeMTMC-VideoReID (train, query, gallery)',
    'ilidsvid': 'iLIDS-VID (i-LIDS-VID/sequences/cam1, cam2, train-test people splits)',
    'prid2011': 'PRID2011 (prid_2011/multi_shot/cam_a, cam_b, both split files)',
    'lsvid': 'LS-VID (list_sequence, tracklet_train, tracklet_test, test/data/info_test.mat)',
    'mevid': 'MEVID (bbox_train, bbox_test, name and track info files, query_IDX.txt, test_track_scale.txt)',
    'ccvid': 'CCVID (session1..3, train.txt, query.txt, gallery.txt)',
    'scene': 'a multi-camera scene (c1.mp4 + c1.txt tracker output per camera, gt/c1.txt; util.data.synthetic_scene)',
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog='python -m util.synthetic',
        description='Write a synthetic video re-ID dataset (walking people drawn as JPEG or PNG frames) in an '
                    'official layout: ' + '; '.join(f'{k}: {v}' for k, v in LAYOUTS.items())
                    + '. The same --seed writes identical files.')
    parser.add_argument('dataset', choices=list(LAYOUTS), help='layout to write')
    parser.add_argument('--out', required=True, help='output directory (new, empty, or an earlier synthetic set, '
                                                     'which is replaced)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--num_train_ids', type=int, default=None,
                        help='training identities (default 40; lsvid 4; mevid, ccvid 6)')
    parser.add_argument('--num_test_ids', type=int, default=None,
                        help='test identities with queries (default 40; lsvid 4; mevid, ccvid 6)')
    parser.add_argument('--num_cams', type=int, default=None,
                        help='cameras (default 6 for mars and mevid, 8 for dukev, 15 for lsvid, 4 for ccvid)')
    parser.add_argument('--height', type=int, default=None,
                        help='frame height in pixels (default 64; 128 for ilidsvid and prid2011, like the real ones; '
                             '240 for scene)')
    parser.add_argument('--width', type=int, default=None,
                        help='frame width in pixels (default 32; 64 for ilidsvid and prid2011; 320 for scene)')
    parser.add_argument('--min_len', type=int, default=None,
                        help='shortest sequence in frames (default 2; prid2011 27, its short ones aside)')
    parser.add_argument('--max_len', type=int, default=None,
                        help='longest sequence in frames (default 80; ilidsvid 8, prid2011 30, lsvid 12)')
    parser.add_argument('--max_tracks_per_cam', type=int, default=2,
                        help='mars, dukev: tracklets per identity and camera: 1..N (default 2)')
    parser.add_argument('--num_junk', type=int, default=12, help='mars: junk (pid -1) test tracklets (default 12)')
    parser.add_argument('--num_distractors', type=int, default=12,
                        help='mars: distractor (pid 0) test tracklets (default 12)')
    parser.add_argument('--num_distractor_ids', type=int, default=10,
                        help='dukev: gallery-only identities (default 10)')
    parser.add_argument('--old_names', action='store_true',
                        help='dukev: old frame names 0001C6F0001X30823.jpg instead of 0001_C6_F0001_X30823.jpg')
    parser.add_argument('--num_outfits', type=int, default=3,
                        help='mevid, ccvid: outfits per identity (default 3; ccvid at most 3, one per session)')
    parser.add_argument('--num_persons', type=int, default=None,
                        help='ilidsvid: persons (default 6; the real set has 300); prid2011: persons in both '
                             'cameras, at most 200 (default 6); scene: people walking (default 6)')
    parser.add_argument('--num_short', type=int, default=2,
                        help='prid2011: persons of both cameras with a sequence under 27 frames (default 2)')
    parser.add_argument('--num_cam_a_only', type=int, default=2,
                        help='prid2011: persons seen by cam_a only, person_0201 on (default 2)')
    parser.add_argument('--num_cam_b_only', type=int, default=3,
                        help='prid2011: persons seen by cam_b only, person_0201 on (default 3)')
    parser.add_argument('--cameras', type=int, default=3, help='scene: cameras (default 3)')
    parser.add_argument('--num_frames', type=int, default=200, help='scene: frames per camera (default 200)')
    parser.add_argument('--fps', type=int, default=10, help='scene: frame rate of the videos (default 10)')
    return parser


def _make(args):
    def given(**defaults):
        return {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}

    if args.dataset in ('mars', 'dukev'):
        common = dict(seed=args.seed, tracks_per_cam=(1, args.max_tracks_per_cam),
                      **given(num_train_ids=40, num_test_ids=40, height=64, width=32, min_len=2, max_len=80))
        if args.dataset == 'mars':
            return make_mars(args.out, num_cams=args.num_cams or 6, num_junk=args.num_junk,
                             num_distractors=args.num_distractors, **common)
        return make_dukev(args.out, num_cams=args.num_cams or 8, num_distractor_ids=args.num_distractor_ids,
                          old_names=args.old_names, **common)
    if args.dataset == 'scene':
        return make_scene(args.out, seed=args.seed, num_cameras=args.cameras, num_frames=args.num_frames,
                          fps=args.fps, **given(num_persons=6, height=240, width=320))
    if args.dataset == 'ilidsvid':
        return make_ilidsvid(args.out, seed=args.seed, **given(num_persons=6, height=128, width=64, min_len=2,
                                                               max_len=8))
    if args.dataset == 'prid2011':
        return make_prid2011(args.out, seed=args.seed, num_shared=args.num_persons or 6, num_short=args.num_short,
                             num_cam_a_only=args.num_cam_a_only, num_cam_b_only=args.num_cam_b_only,
                             **given(height=128, width=64, min_len=27, max_len=30))
    if args.dataset in ('mevid', 'ccvid'):
        make = make_mevid if args.dataset == 'mevid' else make_ccvid
        return make(args.out, seed=args.seed, num_outfits=args.num_outfits,
                    **given(num_train_ids=6, num_test_ids=6, num_cams=6 if args.dataset == 'mevid' else 4, height=64,
                            width=32, min_len=4, max_len=40))
    return make_lsvid(args.out, seed=args.seed, **given(num_train_ids=4, num_test_ids=4, num_cams=15, height=64,
                                                        width=32, min_len=2, max_len=12))


def _describe(summary):
    parts = []
    for key, value in summary.items():
        if isinstance(value, dict):
            parts.append(f'{key} {value["tracklets"]} tracklets / {value["frames"]} frames')
        else:
            parts.append(f'{value} {key.replace("_", " ")}')
    return ', '.join(parts)


def main(argv=None):
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    summary = _make(args)
    print(f'wrote synthetic {LAYOUTS[args.dataset]} to {args.out} in {time.perf_counter() - t0:.1f} s: '
          f'{_describe(summary)}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
