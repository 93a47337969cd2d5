"""Embed your own tracklets with a trained model: folders of frames (or lists of frame paths) -> features.

A tracklet is a folder of person crops of one person, as a detector and tracker write them; its frames are
ordered by the number in their names (numerically: ``f2.jpg`` before ``f10.jpg``). The tracklets are turned
into the same database as a benchmark split (frame paths + info rows ``[start, end, pid, cam]``) and go
through evaluate.py's loader and feature extraction, so the features equal evaluate.py's for the same
frames and flags, in every ``--test_sampling`` mode::

    embedder = TrackletEmbedder('ckpt_best.pth', 'resnet50_NL_stripe_hr', non_layers=(0, 2, 3, 0),
                                stripes=(16, 16, 16, 16), S=8)
    features = embedder.embed(['crops/track_0001', 'crops/track_0002'])     # (2, 2048) float32

pid and camera come from the frame names when they follow MARS (``0001C1T0001F001.jpg``) or DukeV
(``0001_C6_F0099_X30823.jpg``) naming, else they are -1.
"""
import os
import re

import numpy as np

from models import load_model, to_channels_last
from util.data.datasets.common import is_image_file, list_frames
from util.data.datasets.dukev import parse_dukev_names
from util.data.datasets.mars import parse_mars_names
from util.data.loaders import ClipConfig, Database, decoder_for
from util.distributed import DistContext, select_device
from util.errors import DataError
from util.evaluation.extract import extract_features, make_eval_loader
from util.evaluation.features_file import FeaturesFile

_DIGITS = re.compile(r'(\d+)')


def frame_sort_key(name):
    """Sort key ordering names by their numbers numerically: 'f2.jpg' < 'f10.jpg'; the text in between
    compares as text. Zero-padded names (MARS, DukeV) sort as plain name order does."""
    parts = _DIGITS.split(name)  # text, number, text, ...: strings and ints never meet at one position
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def tracklet_frames(folder):
    """Image files of one tracklet folder, ordered by frame_sort_key: a non-empty list of paths. Other files
    are passed over, as a tracker's output folder may hold them (common.list_frames, lenient)."""
    names = list_frames(os.fspath(folder), skip_hidden=True, strict=False)
    return [os.path.join(folder, n) for n in sorted(names, key=frame_sort_key)]


def find_tracklets(dirs):
    """Tracklet folders under each of ``dirs``: the folder itself when it holds images, else every folder
    below it that does (in name order, numbers numerically). Raises DataError for a folder without any."""
    found = []
    for top in dirs:
        top = os.fspath(top)
        if not os.path.isdir(top):
            tracklet_frames(top)  # the missing-directory message
        tracklets = []
        for root, subdirs, files in os.walk(top):
            subdirs.sort(key=frame_sort_key)
            if any(map(is_image_file, files)):
                tracklets.append(root)
        if not tracklets:
            tracklet_frames(top)  # empty folder / no images: its message
            raise DataError(f'{top}: no folder below it holds images (expected a tracklet folder of frames, or '
                            f'a root whose folders are tracklets)')
        found.extend(tracklets)
    return found


def tracklet_labels(tracklets):
    """pid and camera of each tracklet (lists of frame paths) from MARS or DukeV frame names: (N,), (N,)
    int64, -1 where the names do not follow either naming or disagree within the tracklet."""
    counts = np.array([len(t) for t in tracklets], dtype=np.int64)
    names = [os.path.basename(p) for t in tracklets for p in t]
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pids = np.full(len(tracklets), -1, dtype=np.int64)
    cams = np.full(len(tracklets), -1, dtype=np.int64)
    undecided = np.ones(len(tracklets), dtype=bool)
    for parse in (parse_mars_names, parse_dukev_names):
        pid, cam, ok = parse(names)
        # a tracklet is labelled when every frame parses and all agree with its first frame
        agree = ok & (pid == np.repeat(pid[first], counts)) & (cam == np.repeat(cam[first], counts))
        labelled = undecided & np.logical_and.reduceat(agree, first)
        pids[labelled], cams[labelled] = pid[first][labelled], cam[first][labelled]
        undecided &= ~labelled
    return pids, cams


def tracklet_database(tracklets):
    """A Database over tracklets given as folders or as lists of frame paths, in the given order.

    Rows ``[start, end, pid, cam]`` index the concatenated frame list, as a benchmark split's test info."""
    if isinstance(tracklets, (str, os.PathLike)):  # one folder
        tracklets = [tracklets]
    if not len(tracklets):
        raise DataError('no tracklets to embed')
    frames = [tracklet_frames(t) if isinstance(t, (str, os.PathLike)) else [os.fspath(p) for p in t]
              for t in tracklets]
    for k, t in enumerate(frames):
        if not t:
            raise DataError(f'tracklet {k}: empty frame list')
    counts = np.array([len(t) for t in frames], dtype=np.int64)
    end = np.cumsum(counts) - 1
    pids, cams = tracklet_labels(frames)
    info = np.stack([end - counts + 1, end, pids, cams], axis=1)                 # (N, 4)
    return Database([p for t in frames for p in t], info)


def tracklet_features(features, tracklets, labels, cams, test_sampling='chunks', **extra):
    """The features file of embedded tracklets (extract_features.py): evaluate.py --features scores it.

    query_idx: every tracklet with a real identity (pid > 0; -1 is unknown or junk, 0 MARS's distractors),
    each ranked against all tracklets (itself included, which the junk rule skips), as the MARS protocol
    ranks a query against the whole test split. ``paths`` holds the tracklet folders; ``extra``: more (N,)
    arrays stored as given (the camera tracklets' track_ids, first_frame, last_frame, camera_names)."""
    labels = np.asarray(labels, dtype=np.int64)
    return FeaturesFile(features, labels, cams, np.flatnonzero(labels > 0), test_sampling=test_sampling,
                        extra=dict(paths=np.asarray([os.fspath(p) for p in tracklets], dtype=str), **extra))


class TrackletEmbedder:
    """A trained model and evaluate.py's clip settings; ``embed(tracklets)`` -> (N, 2048) float32 features.

    The arguments mean what evaluate.py's flags of the same names mean; the checkpoint (this project's or
    the original release's) is loaded strictly, so a file that does not fit the model flags is refused.
    """

    def __init__(self, load_ckpt, model_type, non_layers=None, stripes=None, temporal=None, S=8, height=256,
                 width=128, test_sampling='chunks', batch_size=32, num_workers=0, device='auto', amp='none',
                 stride=1, channels_last=False, resize_on_device=False, decode_on_device=False, test_stride=4):
        if temporal is None:
            temporal = 'mean' if model_type == 'resnet50_s1' else 'Done'
        self.clips = ClipConfig(int(S), int(height), int(width), test_sampling,
                                decoder_for(decode_on_device, resize_on_device), int(test_stride))
        self.temporal, self.amp, self.channels_last = temporal, amp, channels_last
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.ctx = DistContext(rank=0, world_size=1, local_rank=0, device=select_device(device, 0), is_main=True)
        self.model, _ = load_model(load_ckpt, model_type, non_layers=non_layers, stripes=stripes, temporal=temporal,
                                   stride=stride, height=int(height), S=int(S))
        self.model.to(self.device).eval()
        if channels_last:
            to_channels_last(self.model)

    @property
    def device(self):
        return self.ctx.device

    def embed(self, tracklets, progress=False):
        """Features of tracklets (folders, or lists of frame paths): (N, 2048) float32 numpy array."""
        return self.embed_database(tracklet_database(tracklets), progress)

    def embed_database(self, db, progress=False):
        """Features of every row of a Database, in row order (evaluate.py's loader and extraction)."""
        loader = make_eval_loader(db, self.clips, self.batch_size, self.num_workers, self.ctx)
        feats, _, _ = extract_features(self.model, loader, self.clips.S, self.device, self.temporal,
                                       frame_level=self.model.frame_level, amp=self.amp,
                                       channels_last=self.channels_last, progress=progress)
        return feats.numpy()
