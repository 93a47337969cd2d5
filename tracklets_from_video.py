"""Camera footage + a tracker's output -> one folder of person crops per track, ready for extract_features.py.

    python tracklets_from_video.py --scene scene/ --out crops/                 # every camera of a scene
    python tracklets_from_video.py --video c1.mp4 --tracks c1.txt --camera c1 --out crops/

Writes ``crops/<camera>_t<id:05d>/f<frame:06d>.jpg`` and ``crops/tracklets.csv`` (camera, track id, folder,
first and last frame, number of crops, mean box height, the video's frame rate). The whole output folder is
written under a temporary name and renamed when complete; an existing one is refused without --overwrite.
"""
import os
import sys
import time

from util.cli.options import OneLineParser, run_main
from util.data.cameras import make_tracklets
from util.errors import DataError


def build_parser():
    p = OneLineParser(
        description='Cut the tracks of a multi-object tracker (MOTChallenge text: frame,id,x,y,w,h,conf,... with '
                    'frames from 1 and the box top-left corner in pixels) out of the video into one folder of '
                    'crops per track, <out>/<camera>_t<id:05d>/f<frame:06d>.<ext>, plus <out>/tracklets.csv. '
                    'Each video is decoded once, streaming (PyAV; memory does not grow with its length). A crop '
                    'is the box clipped to the frame (floor of its corners); a box outside the frame is skipped; '
                    'a track id that reappears after a gap stays one tracklet, frames in order.')
    src = p.add_argument_group('input: a scene folder, or one camera')
    src.add_argument('--scene', metavar='DIR',
                     help='scene folder: per camera a video c1.mp4 (or a folder of frames c1/img1/000001.jpg) and '
                          'the tracker output c1.txt; every camera that has a .txt is processed')
    src.add_argument('--video', metavar='V', help='one camera: its video file or folder of frames')
    src.add_argument('--tracks', metavar='T.txt', help='one camera: its tracker output (MOTChallenge text)')
    src.add_argument('--camera', metavar='NAME',
                     help='one camera: its name, with the camera number in it (default: the video file stem)')
    out = p.add_argument_group('output')
    out.add_argument('--out', required=True, metavar='CROPS', help='output folder (new, or replaced with --overwrite)')
    out.add_argument('--overwrite', action='store_true', help='replace an existing output folder')
    out.add_argument('--ext', choices=('jpg', 'png'), default='jpg',
                     help='crop image format: jpg (default, quality --quality) or png (lossless)')
    out.add_argument('--quality', type=int, default=95, help='JPEG quality 1..95 (default 95)')
    sel = p.add_argument_group('which crops (the defaults keep every box)')
    sel.add_argument('--min_frames', type=int, default=1,
                     help='drop tracks with fewer non-empty boxes than this (default 1: keep all)')
    sel.add_argument('--min_height', type=float, default=0.0,
                     help='drop tracks whose mean clipped box height in pixels is below this (default 0)')
    sel.add_argument('--every', type=int, default=1,
                     help="keep every N-th box of a track, from its first (default 1: all)")
    sel.add_argument('--max_frames', type=int, default=0,
                     help='at most this many crops per track, evenly spaced over it (default 0: no limit)')
    p.add_argument('--no_progress', action='store_true', help='no progress bars')
    return p


def check_args(parser, args):
    if args.scene is not None and (args.video or args.tracks or args.camera):
        parser.error('give either --scene, or --video and --tracks (and --camera) for one camera')
    if args.scene is None and not (args.video and args.tracks):
        parser.error('give --scene DIR, or --video V and --tracks T.txt for one camera')
    if args.min_frames < 1 or args.every < 1 or args.max_frames < 0 or args.min_height < 0:
        parser.error('--min_frames and --every must be at least 1, --max_frames and --min_height at least 0')
    if not 1 <= args.quality <= 95:
        parser.error('--quality must be in 1..95')


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    from util.data.cameras import camera_number, scene_cameras
    if args.scene is not None:
        cameras = [(name, video, tracks) for name, video, tracks, _ in scene_cameras(args.scene)]
    else:
        name = args.camera or os.path.splitext(os.path.basename(os.path.normpath(args.video)))[0]
        camera_number(name)
        if not os.path.exists(args.video):
            raise DataError(f'--video {args.video}: no such file or folder')
        cameras = [(name, args.video, args.tracks)]
    t0 = time.perf_counter()
    summaries = make_tracklets(cameras, args.out, args.overwrite, args.ext, args.quality, args.min_frames,
                               args.min_height, args.every, args.max_frames, progress=not args.no_progress)
    for s in summaries:
        extra = f'; {s["beyond_end"]} boxes after the end of the video skipped' if s['beyond_end'] else ''
        print(f'camera {s["camera"]}: {s["tracks"]} tracks -> {s["tracklets"]} tracklets, {s["crops"]} crops{extra}')
    print(f'wrote {sum(s["tracklets"] for s in summaries)} tracklets of {len(summaries)} camera(s) to {args.out} '
          f'in {time.perf_counter() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
