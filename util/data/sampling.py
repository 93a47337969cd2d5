"""Clip sampling (which frames of a tracklet form a clip) and identity-balanced training batches.

A tracklet covers the global frame indices ``start..end`` (inclusive, rows of the database info array).
It is cut into S chunks, as the original release's data loader does (docs/training.md):

* F = end - start + 1 < S: chunk s is the single frame ``min(start + s, end)``, so a short tracklet
  repeats its last frame;
* otherwise, with I = ceil(F / S), the strip ``start..end`` padded with ``end`` to length I*S is split
  into S consecutive chunks of I frames.

Both cases are ``min(start + k, end)`` for k = 0..S*I-1 reshaped to (S, I), with I = 1 when F < S.
Training draws one position uniformly from each chunk (the padding copies of ``end`` count as positions,
as in the original); testing takes the first frame of each chunk.

Every random draw comes from a ``numpy.random.Generator`` seeded by integers handed out by
:class:`IdentityBatchSampler`, so the clips of an epoch do not depend on the number of DataLoader workers or
of distributed ranks.
"""
import numpy as np

from util.errors import DataError


def chunk_length(start, end, S):
    """Frames per chunk I: 1 for a tracklet shorter than S, else ceil(F / S). Works element-wise."""
    frames = np.asarray(end, dtype=np.int64) - np.asarray(start, dtype=np.int64) + 1
    return np.where(frames < S, 1, -(-frames // S))


def chunk_frames(start, end, S):
    """Global frame indices of the S chunks of one tracklet: an (S, I) int64 array."""
    start, end, S = int(start), int(end), int(S)
    if S < 1 or start > end:
        raise ValueError(f'chunk_frames: need S >= 1 and start <= end, got S={S}, start={start}, end={end}')
    I = int(chunk_length(start, end, S))
    strip = np.minimum(start + np.arange(S * I, dtype=np.int64), end)
    return strip.reshape(S, I)


def _chunk_offsets(start, end, S):
    # (..., 1) start, end and chunk length I, broadcastable against the chunk axis of length S
    start = np.asarray(start, dtype=np.int64)[..., None]
    end = np.asarray(end, dtype=np.int64)[..., None]
    return start, end, chunk_length(start, end, S)


def train_frame_indices(start, end, S, rng):
    """One frame drawn uniformly from each chunk: (S,) for one tracklet, (N, S) for arrays of N.

    ``rng`` is a ``numpy.random.Generator``; exactly one ``rng.integers`` call of shape (S,) (or (N, S))
    is made, position s of chunk s being ``rng.integers(0, I)``.
    """
    start, end, I = _chunk_offsets(start, end, S)
    s = np.arange(S, dtype=np.int64)
    position = rng.integers(0, I, size=I.shape[:-1] + (S,))
    return np.minimum(start + s * I + position, end)


def test_frame_indices(start, end, S):
    """The first frame of each chunk: (S,) for one tracklet, (N, S) for arrays of N."""
    start, end, I = _chunk_offsets(start, end, S)
    return np.minimum(start + np.arange(S, dtype=np.int64) * I, end)


test_frame_indices.__test__ = False  # not a pytest test, despite its name

TEST_SAMPLING_MODES = ('chunks', 'first', 'all_sampled', 'all_continuous', 'strided')
MULTI_CLIP_MODES = ('all_sampled', 'all_continuous', 'strided')  # a tracklet's feature = mean of its clips'


def strided_clip_offsets(F, S, stride=4):
    """CAL's test clips of a tracklet of F frames (Gu et al., CVPR 2022, ``_recombination_for_testset``): an
    (ceil(F / S), S) int64 array of offsets 0..F-1.

    Whole blocks of S*stride frames give ``stride`` clips each (offsets j, j + stride, ...); the remainder R
    gives R // S clips with the reduced stride R // S, and, when S does not divide F, one last clip of the
    frames from (F // S) * S on, repeated from their start (a, b, c, a, b, c, ...) up to S frames.
    """
    F, S, stride = int(F), int(S), int(stride)
    if F < 1 or S < 1 or stride < 1:
        raise ValueError(f'strided_clip_offsets: need F, S, stride >= 1, got {F}, {S}, {stride}')
    span = S * stride
    blocks = F // span
    step = np.arange(S, dtype=np.int64)
    # (blocks * stride, S): block b, phase j -> b*S*stride + j + stride * step
    full = (np.arange(blocks)[:, None, None] * span + np.arange(stride)[None, :, None]
            + stride * step[None, None, :]).reshape(-1, S)
    base, rest = blocks * span, F % span
    reduced = rest // S
    parts = [full, base + np.arange(reduced)[:, None] + reduced * step[None, :]]
    if rest and F % S:
        tail = np.arange(F // S * S, F, dtype=np.int64)
        parts.append(tail[np.arange(S) % len(tail)][None, :])
    return np.concatenate(parts).astype(np.int64)


def test_clip_indices(start, end, S, mode='chunks', stride=4):
    """Global frame indices of the test clips of one tracklet under --test_sampling (docs/evaluation.md):
    an (n_clips, S) int64 array, n_clips = 1 for 'chunks' and 'first', I (frames per chunk) for the
    'all_*' modes, whose tracklet feature is the mean of its clips' features.

    With the S-chunk strip ``min(start + k, end)``, k = 0..S*I-1: 'chunks' takes the first frame of each
    chunk, 'first' the first S frames of the tracklet (padded with its last), 'all_sampled' clip j = the
    j-th frame of every chunk, 'all_continuous' clip j = strip[j*S:(j+1)*S]; 'strided' CAL's clips of S
    frames every ``stride`` frames (``strided_clip_offsets``), ceil(F / S) of them.
    """
    if mode == 'strided':
        return int(start) + strided_clip_offsets(int(end) - int(start) + 1, S, stride)
    if mode == 'chunks':
        return test_frame_indices(start, end, S)[None, :]
    if mode == 'first':
        return np.minimum(int(start) + np.arange(S, dtype=np.int64), int(end))[None, :]
    strip = chunk_frames(start, end, S)                    # (S, I): chunk s in row s
    if mode == 'all_sampled':
        return np.ascontiguousarray(strip.T)               # (I, S): clip j = frame j of every chunk
    if mode == 'all_continuous':
        return strip.reshape(-1, S)                        # (I, S): S consecutive strip positions
    raise ValueError(f'test_clip_indices: mode must be one of {TEST_SAMPLING_MODES}, got {mode!r}')


test_clip_indices.__test__ = False


class IdentityBatchSampler:
    """P identities x K tracklets per batch, every identity once per epoch (a PK sampler).

    Each epoch shuffles the identities with ``np.random.default_rng((seed, epoch))``, cuts the order into
    ``n_id // P`` batches of P identities (the last incomplete batch is dropped) and draws K tracklets per
    identity uniformly WITH replacement. A batch is laid out identity by identity:
    ``[id_0 x K, id_1 x K, ...]``, as the original's collate concatenated them.

    Yields lists of ``(track_idx, sample_seed)``; ``sample_seed`` seeds the frame choice and the flip of
    that clip in :class:`util.data.loaders.TrainClipDataset`. Everything is drawn for the global batch first, so
    with ``world_size`` ranks, rank r yields identities ``r*P/W .. (r+1)*P/W - 1`` of the same global
    batch, and the ranks' lists concatenated in rank order equal the single-process batch.
    """

    def __init__(self, track_labels, class_per_batch, track_per_class, seed, rank=0, world_size=1):
        labels = np.asarray(track_labels).reshape(-1)
        P, K, world_size, rank = int(class_per_batch), int(track_per_class), int(world_size), int(rank)
        if P < 1 or K < 1:
            raise DataError(f'class_per_batch and track_per_class must be >= 1, got {P} and {K}')
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f'rank {rank} is not in 0..world_size-1 (world_size {world_size})')
        if P % world_size:
            raise DataError(f'class_per_batch {P} must be divisible by the number of processes {world_size}, '
                            f'so that each process gets whole identities of a batch')
        ids, labels_inv = np.unique(labels, return_inverse=True)
        if len(ids) < P:
            raise DataError(f'class_per_batch {P} is larger than the {len(ids)} training identities: '
                            f'lower --class_per_batch to at most {len(ids)}')
        # tracklets grouped by identity: members of id j are by_id[first[j]:first[j] + count[j]]
        self._by_id = np.argsort(labels_inv, kind='stable')
        self._count = np.bincount(labels_inv, minlength=len(ids))
        self._first = np.concatenate([[0], np.cumsum(self._count)[:-1]])
        self.n_id, self.P, self.K = len(ids), P, K
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return self.n_id // self.P

    def epoch_batches(self, epoch=None):
        """The whole epoch's global batches: track indices and sample seeds, both (len, P*K) int64."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng((self.seed, epoch))
        n_batch = len(self)
        ids = rng.permutation(self.n_id)[:n_batch * self.P]                 # (n_batch*P,)
        pick = rng.integers(0, self._count[ids][:, None], size=(len(ids), self.K))  # (n_batch*P, K)
        tracks = self._by_id[self._first[ids][:, None] + pick]
        seeds = rng.integers(0, 2 ** 63 - 1, size=tracks.shape, dtype=np.int64)
        return tracks.reshape(n_batch, -1), seeds.reshape(n_batch, -1)

    def __iter__(self):
        tracks, seeds = self.epoch_batches()
        share = self.P // self.world_size * self.K
        lo = self.rank * share
        for t, s in zip(tracks[:, lo:lo + share].tolist(), seeds[:, lo:lo + share].tolist()):
            yield list(zip(t, s))


def shard_bounds(n, world_size):
    """Contiguous shards of range(n) for evaluation: rank r takes [bounds[r], bounds[r+1]).

    Sizes differ by at most one, and concatenating the ranks' outputs in rank order restores the
    original order (the gathered features line up with the database rows and query indices).
    """
    return [r * n // world_size for r in range(world_size + 1)]
