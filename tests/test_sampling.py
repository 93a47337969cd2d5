"""Clip sampling (the original release's chunks; docs/training.md) and the identity-balanced batch sampler.

``reference_chunks`` is an independent oracle on purpose: the chunk rule restated as a plain loop, sharing
no code with util.data.sampling."""
import math

import numpy as np
import pytest

from util.data import sampling
from util.data.sampling import IdentityBatchSampler, chunk_frames, shard_bounds, train_frame_indices
from util.errors import DataError


def reference_chunks(start, end, S):
    """The chunk rule written as a plain loop over chunks."""
    F = end - start + 1
    if F < S:
        return [[min(start + s, end)] for s in range(S)]
    interval = math.ceil(F / S)
    strip = list(range(start, end + 1)) + [end] * (interval * S - F)
    return [strip[s * interval:(s + 1) * interval] for s in range(S)]


@pytest.mark.parametrize('start, end, S, expected', [
    # F < S: one frame per chunk, the last frame repeated
    (10, 12, 5, [[10], [11], [12], [12], [12]]),
    (7, 7, 3, [[7], [7], [7]]),
    # F = S: one frame per chunk
    (0, 3, 4, [[0], [1], [2], [3]]),
    # F divisible by S
    (100, 107, 4, [[100, 101], [102, 103], [104, 105], [106, 107]]),
    # F not divisible by S: I = ceil(F/S), strip padded with the last frame
    (0, 9, 4, [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 9, 9]]),
    (20, 28, 4, [[20, 21, 22], [23, 24, 25], [26, 27, 28], [28, 28, 28]]),  # last chunk is all padding
    (0, 12, 4, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 12, 12, 12]]),
    (5, 15, 8, [[5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 15], [15, 15], [15, 15]]),
])
def test_chunks_hand_computed(start, end, S, expected):
    chunks = chunk_frames(start, end, S)
    assert chunks.dtype == np.int64
    assert chunks.tolist() == expected
    assert sampling.test_frame_indices(start, end, S).tolist() == [c[0] for c in expected]


def test_chunks_match_reference_loop():
    rng = np.random.default_rng(0)
    for _ in range(300):
        S = int(rng.integers(1, 12))
        start = int(rng.integers(0, 1000))
        end = start + int(rng.integers(0, 80))
        assert chunk_frames(start, end, S).tolist() == reference_chunks(start, end, S)


def test_test_indices_vectorised_over_tracklets():
    rng = np.random.default_rng(1)
    starts = rng.integers(0, 500, 50)
    ends = starts + rng.integers(0, 40, 50)
    got = sampling.test_frame_indices(starts, ends, 6)
    assert got.shape == (50, 6)
    for row, (s, e) in enumerate(zip(starts, ends)):
        assert got[row].tolist() == [c[0] for c in reference_chunks(int(s), int(e), 6)]


@pytest.mark.parametrize('start, end, S', [(10, 12, 5), (0, 3, 4), (0, 9, 4), (100, 107, 4), (3, 40, 8)])
def test_train_draws_cover_chunk_members_only(start, end, S):
    chunks = reference_chunks(start, end, S)
    n = 400
    draws = train_frame_indices(np.full(n, start), np.full(n, end), S, np.random.default_rng(5))  # (n, S)
    assert draws.shape == (n, S)
    for s in range(S):
        assert set(draws[:, s].tolist()) == set(chunks[s])


def test_train_draw_is_one_uniform_position_per_chunk():
    # one rng.integers(0, I, size=S) call: chunk s contributes column position[s]
    start, end, S = 3, 40, 8
    chunks = chunk_frames(start, end, S)
    got = train_frame_indices(start, end, S, np.random.default_rng(11))
    position = np.random.default_rng(11).integers(0, chunks.shape[1], size=S)
    assert got.shape == (S,)
    assert got.tolist() == chunks[np.arange(S), position].tolist()


def test_train_draws_vectorised_match_per_tracklet_members():
    rng = np.random.default_rng(2)
    starts = rng.integers(0, 500, 40)
    ends = starts + rng.integers(0, 60, 40)
    draws = train_frame_indices(starts, ends, 4, np.random.default_rng(0))
    for row, (s, e) in enumerate(zip(starts, ends)):
        chunks = reference_chunks(int(s), int(e), 4)
        assert all(draws[row, k] in chunks[k] for k in range(4))


# ---- identity-balanced batches ------------------------------------------------------------------------

LABELS = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 5, 5, 6])   # 7 ids; id 1, 4, 6 have one tracklet


def test_sampler_epoch_composition():
    P, K = 2, 3
    sampler = IdentityBatchSampler(LABELS, P, K, seed=4)
    assert len(sampler) == 7 // 2
    batches = list(sampler)
    assert len(batches) == 3 and all(len(b) == P * K for b in batches)
    seen = []
    for batch in batches:
        tracks = np.array([t for t, _ in batch]).reshape(P, K)
        ids = LABELS[tracks]
        assert (ids == ids[:, :1]).all()                 # K consecutive tracklets of one identity
        seen += ids[:, 0].tolist()
    assert len(seen) == len(set(seen)) == 6               # every id at most once, one id dropped (7 // 2 * 2)


def test_sampler_draws_with_replacement_uniformly():
    sampler = IdentityBatchSampler(LABELS, 1, 4, seed=0)
    counts = np.zeros(len(LABELS), int)
    for epoch in range(200):
        sampler.set_epoch(epoch)
        for batch in sampler:
            for track, _ in batch:
                counts[track] += 1
    # each id is visited once per epoch; its K draws spread uniformly over its tracklets
    assert counts[3] == counts[10] == counts[13] == 200 * 4
    assert counts[[0, 1, 2]].sum() == 800 and counts[[0, 1, 2]].min() > 200
    assert counts[[6, 7, 8, 9]].sum() == 800 and counts[[6, 7, 8, 9]].min() > 150
    single = [b for e in range(20) for b in (sampler.set_epoch(e) or sampler) if LABELS[b[0][0]] == 1]
    assert all([t for t, _ in b] == [3, 3, 3, 3] for b in single)   # one tracklet: repeated K times


def test_sampler_is_deterministic_in_seed_and_epoch():
    a = IdentityBatchSampler(LABELS, 2, 2, seed=9)
    b = IdentityBatchSampler(LABELS, 2, 2, seed=9)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) == list(a)
    b.set_epoch(4)
    assert list(a) != list(b)
    assert list(IdentityBatchSampler(LABELS, 2, 2, seed=10)) != list(IdentityBatchSampler(LABELS, 2, 2, seed=9))
    seeds = [s for batch in a for _, s in batch]
    assert len(set(seeds)) == len(seeds)


def test_sampler_every_id_once_per_epoch_mars_sized():
    labels = np.repeat(np.arange(625), 3)
    sampler = IdentityBatchSampler(labels, 8, 4, seed=0)
    assert len(sampler) == 78
    ids = [labels[t] for batch in sampler for t, _ in batch[::4]]
    assert len(ids) == len(set(ids)) == 78 * 8


@pytest.mark.parametrize('world_size', [2, 4])
def test_sampler_rank_slices_concatenate_to_single_process_batch(world_size):
    labels = np.repeat(np.arange(10), [1, 2, 3, 4, 1, 2, 3, 4, 5, 1])
    single = list(IdentityBatchSampler(labels, 4, 3, seed=2))
    ranks = [list(IdentityBatchSampler(labels, 4, 3, seed=2, rank=r, world_size=world_size))
             for r in range(world_size)]
    for i, batch in enumerate(single):
        parts = [r[i] for r in ranks]
        assert all(len(p) == 4 // world_size * 3 for p in parts)
        assert sum(parts, []) == batch


def test_sampler_errors():
    with pytest.raises(DataError, match='class_per_batch 8 is larger than the 7 training identities'):
        IdentityBatchSampler(LABELS, 8, 2, seed=0)
    with pytest.raises(DataError, match='must be divisible by the number of processes 2'):
        IdentityBatchSampler(LABELS, 3, 2, seed=0, rank=0, world_size=2)
    with pytest.raises(DataError, match='track_per_class'):
        IdentityBatchSampler(LABELS, 2, 0, seed=0)


def test_shard_bounds_cover_range_in_order():
    assert shard_bounds(10, 1) == [0, 10]
    assert shard_bounds(10, 3) == [0, 3, 6, 10]
    assert shard_bounds(2, 4) == [0, 0, 1, 1, 2]


# -- test-time sampling modes (docs/evaluation.md) -------------------------------------------------------------

@pytest.mark.parametrize('mode, expected', [
    # 10 frames 100..109, S=4: I = 3, strip 100..109 padded with 109 to 12 positions
    ('chunks', [[100, 103, 106, 109]]),
    ('first', [[100, 101, 102, 103]]),
    ('all_sampled', [[100, 103, 106, 109], [101, 104, 107, 109], [102, 105, 108, 109]]),
    ('all_continuous', [[100, 101, 102, 103], [104, 105, 106, 107], [108, 109, 109, 109]]),
])
def test_test_clip_indices_hand_computed(mode, expected):
    assert sampling.test_clip_indices(100, 109, 4, mode).tolist() == expected


@pytest.mark.parametrize('mode', [m for m in sampling.TEST_SAMPLING_MODES if m != 'strided'])
def test_test_clip_indices_short_tracklet_repeats_last_frame(mode):
    # 3 frames, S=5: one clip, the last frame repeated, in every mode but CAL's 'strided' (it loops the frames)
    assert sampling.test_clip_indices(7, 9, 5, mode).tolist() == [[7, 8, 9, 9, 9]]


def test_test_clip_indices_unknown_mode():
    with pytest.raises(ValueError, match='mode must be one of'):
        sampling.test_clip_indices(0, 9, 4, 'every')


def cal_test_clips(img_paths, seq_len=16, stride=4):
    """CAL's VideoDataset test recombination (``_recombination_for_testset`` of its dataset classes) for one
    tracklet, restated as its plain list loops: the clips, each a list of seq_len items of img_paths."""
    clips = []
    for i in range(len(img_paths) // (seq_len * stride)):
        for j in range(stride):
            begin_idx = i * (seq_len * stride) + j
            end_idx = (i + 1) * (seq_len * stride)
            clips.append(img_paths[begin_idx:end_idx:stride])
    if len(img_paths) % (seq_len * stride) != 0:
        new_stride = (len(img_paths) % (seq_len * stride)) // seq_len
        for i in range(new_stride):
            begin_idx = len(img_paths) // (seq_len * stride) * (seq_len * stride) + i
            end_idx = len(img_paths) // (seq_len * stride) * (seq_len * stride) + seq_len * new_stride
            clips.append(img_paths[begin_idx:end_idx:new_stride])
        if len(img_paths) % seq_len != 0:
            clip_paths = img_paths[len(img_paths) // seq_len * seq_len:]
            while len(clip_paths) < seq_len:  # loop padding: the list grows while it is iterated
                for index in clip_paths:
                    if len(clip_paths) >= seq_len:
                        break
                    clip_paths.append(index)
            clips.append(clip_paths)
    assert len(clips) == math.ceil(len(img_paths) / seq_len)
    return clips


@pytest.mark.parametrize('S, stride', [(16, 4), (4, 4), (3, 2), (1, 1), (5, 1), (2, 7), (8, 3)])
def test_strided_clips_equal_cals_loops(S, stride):
    for F in range(1, 3 * S * stride + S + 3):
        expected = np.array(cal_test_clips(list(range(F)), S, stride))
        np.testing.assert_array_equal(sampling.strided_clip_offsets(F, S, stride), expected)
        np.testing.assert_array_equal(sampling.test_clip_indices(100, 100 + F - 1, S, 'strided', stride),
                                      100 + expected)


def test_strided_clips_hand_computed():
    # F = 11, S = 2, stride = 4: one block of 8 (clips 0 4 / 1 5 / 2 6 / 3 7), the remaining 3 frames give
    # 3 // 2 = 1 clip of stride 1 (8 9), then the frames from 10 on, repeated: 10 10
    np.testing.assert_array_equal(sampling.strided_clip_offsets(11, 2, 4),
                                  [[0, 4], [1, 5], [2, 6], [3, 7], [8, 9], [10, 10]])
    # F = 5, S = 4: no whole block; 5 // 4 = 1 clip of stride 1, then 4 padded a, a, a, a
    np.testing.assert_array_equal(sampling.strided_clip_offsets(5, 4, 4), [[0, 1, 2, 3], [4, 4, 4, 4]])
    # F = 3, S = 5: the tail alone, repeated in order: a b c a b
    np.testing.assert_array_equal(sampling.strided_clip_offsets(3, 5, 4), [[0, 1, 2, 0, 1]])
