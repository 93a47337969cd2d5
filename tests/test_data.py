"""util.data.loaders: database files, the clip datasets and their loaders, with every decoder (frame decoding itself
is tested in tests/test_frames.py)."""
import numpy as np
import pytest
import torch
from helpers import random_image, reference_pipeline, reference_uint8
from PIL import Image

from models.preprocess import normalize_clip
from util.data import loaders as data
from util.data.frames import DeviceBatch, load_clip, load_frame
from util.data.loaders import (
    Database,
    TestClipDataset,
    TrainClipDataset,
    make_test_loader,
    make_train_loader,
    read_database,
)
from util.data.sampling import chunk_frames, test_clip_indices, train_frame_indices
from util.errors import DataError

H, W = 16, 8


@pytest.fixture
def split(jpegs):
    """12 frames of 16x8 JPEGs, 4 tracklets of 3 identities, and the database files describing them."""
    paths = [str(jpegs / f'f{i:02d}.jpg') for i in range(12)]
    (jpegs / 'path.txt').write_text('\n'.join(paths) + '\n')
    # rows: [start, end, pid, cam]; F = 2, 5, 1, 4
    info = np.array([[0, 1, 7, 1], [2, 6, 3, 2], [7, 7, 7, 3], [8, 11, 12, 1]], dtype=np.int32)
    np.save(jpegs / 'info.npy', info)
    np.save(jpegs / 'query.npy', np.array([[1, 3]], dtype=np.uint16))
    return jpegs


# ---- database files -----------------------------------------------------------------------------------

def test_read_database(split):
    db = read_database(split / 'path.txt', split / 'info.npy', split / 'query.npy')
    assert len(db.paths) == 12 and db.paths[3].endswith('f03.jpg')
    assert db.info.dtype == np.int64 and db.info.shape == (4, 4)
    assert db.query_idx.dtype == np.int64 and db.query_idx.tolist() == [1, 3]
    assert read_database(split / 'path.txt', split / 'info.npy').query_idx is None
    assert db.gallery_idx is None  # no gallery_IDX.npy: every row is the gallery


def test_read_database_gallery_index(split):
    np.save(split / 'gallery.npy', np.array([0, 2, 3], dtype=np.int64))
    db = read_database(split / 'path.txt', split / 'info.npy', split / 'query.npy', split / 'gallery.npy')
    assert db.gallery_idx.dtype == np.int64 and db.gallery_idx.tolist() == [0, 2, 3]
    np.save(split / 'gallery.npy', np.array([0, 4]))
    with pytest.raises(DataError, match=r'gallery\.npy: gallery index 4 \(position 1\) is outside the 4 tracklet '
                                        r'rows of .*info\.npy'):
        read_database(split / 'path.txt', split / 'info.npy', split / 'query.npy', split / 'gallery.npy')


@pytest.mark.parametrize('case, message', [
    ('missing_txt', r'nothing\.txt: file not found \(expected a frame path list'),
    ('empty_txt', r'empty\.txt: empty file'),
    ('missing_info', r'nothing\.npy: file not found'),
    ('not_npy', r'bad\.npy: not a readable \.npy file'),
    ('float_info', r'bad\.npy: expected integer values'),
    ('info_shape', r'bad\.npy: expected an \(N, 4\) array .* got shape \(4, 3\)'),
    ('past_end', r'bad\.npy: tracklet row 3 \[start, end\] = \[8, 12\] ends past the 12 frames listed in .*path\.txt'),
    ('start_gt_end', r'bad\.npy: tracklet row 1 \[start, end\] = \[6, 2\] has start > end'),
    ('negative', r'bad\.npy: tracklet row 0 .* starts before frame 0'),
    ('query_range', r'badq\.npy: query index 4 \(position 1\) is outside the 4 tracklet rows of .*info\.npy'),
    ('query_empty', r'badq\.npy: no query indices'),
])
def test_read_database_errors(split, case, message):
    txt, info, query = split / 'path.txt', split / 'info.npy', None
    good = np.load(info).astype(np.int64)
    if case == 'missing_txt':
        txt = split / 'nothing.txt'
    elif case == 'empty_txt':
        txt = split / 'empty.txt'
        txt.write_text('\n')
    elif case == 'missing_info':
        info = split / 'nothing.npy'
    elif case == 'not_npy':
        info = split / 'bad.npy'
        info.write_text('not numpy')
    else:
        bad = {'float_info': good + 0.5, 'info_shape': good[:, :3],
               'past_end': np.where(np.arange(4)[:, None] == 3, [8, 12, 12, 1], good),
               'start_gt_end': np.where(np.arange(4)[:, None] == 1, [6, 2, 3, 2], good),
               'negative': np.where(np.arange(4)[:, None] == 0, [-1, 1, 7, 1], good)}.get(case)
        if bad is not None:
            info = split / 'bad.npy'
            np.save(info, bad)
        else:
            query = split / 'badq.npy'
            np.save(query, np.array([0, 4]) if case == 'query_range' else np.zeros(0, int))
    with pytest.raises(DataError, match=message) as err:
        read_database(txt, info, query)
    assert '\n' not in str(err.value)


# ---- datasets -----------------------------------------------------------------------------------------

def test_dataset_chooses_the_decoder(split):
    db = read_database(split / 'path.txt', split / 'info.npy')
    assert TestClipDataset(db, 4, H, W).decoder == 'auto'
    assert TestClipDataset(db, 4, 32, 16).decoder == 'pil'
    assert TestClipDataset(db, 4, H, W, decoder='pil').decoder == 'pil'


def test_corrupt_and_missing_frames_name_the_file(split):
    good = (split / 'f00.jpg').read_bytes()
    (split / 'f02.jpg').write_bytes(b'not an image at all')
    (split / 'f09.jpg').write_bytes(good[:len(good) // 2])                   # truncated JPEG
    (split / 'f07.jpg').unlink()
    db = read_database(split / 'path.txt', split / 'info.npy')
    dataset = TestClipDataset(db, 4, H, W)
    with pytest.raises(DataError, match=r'^cannot read frame .*f02\.jpg: .* \(tracklet row 1\)$') as err:
        dataset[1]
    assert '\n' not in str(err.value)
    with pytest.raises(DataError, match=r'^cannot read frame .*f09\.jpg: .*[Tt]runcated.* \(tracklet row 3\)$'):
        dataset[3]
    with pytest.raises(DataError, match=r'^cannot read frame .*f07\.jpg: .*No such file.* \(tracklet row 2\)$'):
        TrainClipDataset(db, 4, H, W)[(2, 0)]
    with pytest.raises(DataError, match=r'^cannot read frame .*f07\.jpg: .*No such file'):
        load_frame(db.paths[7], H, W, decoder='pil')


def test_train_dataset_relabels_in_sorted_pid_order(split):
    db = read_database(split / 'path.txt', split / 'info.npy')
    dataset = TrainClipDataset(db, 4, H, W)
    assert dataset.n_id == 3 and len(dataset) == 4
    assert dataset.track_labels.tolist() == [1, 0, 1, 2]                     # pids 7, 3, 7, 12
    assert dataset.pids.tolist() == [3, 7, 12]
    clip, label = dataset[(3, 123)]
    assert clip.dtype == torch.uint8 and clip.shape == (4, 3, H, W) and label == 2
    assert torch.equal(clip, dataset[(3, 123)][0])                           # a function of (row, seed)


def test_train_dataset_frames_and_clip_flip(split):
    db = read_database(split / 'path.txt', split / 'info.npy')
    dataset = TrainClipDataset(db, 4, H, W)
    flips = set()
    for seed in range(12):
        clip, _ = dataset[(1, seed)]
        rng = np.random.default_rng(seed)                                    # frames first, then the flip
        frames = train_frame_indices(2, 6, 4, rng)
        flipped = bool(rng.random() < 0.5)
        assert all(frames[s] in chunk_frames(2, 6, 4)[s] for s in range(4))
        plain = torch.stack([load_frame(db.paths[f], H, W) for f in frames])
        assert torch.equal(clip, plain.flip(-1) if flipped else plain)      # every frame of the clip, or none
        flips.add(flipped)
    assert flips == {True, False}


def test_short_tracklet_repeats_last_frame(split):
    db = read_database(split / 'path.txt', split / 'info.npy')
    clip, pid, cam = TestClipDataset(db, 4, H, W)[0]                        # frames 0, 1 -> 0, 1, 1, 1
    assert (pid, cam) == (7, 1)
    expected = torch.stack([load_frame(db.paths[f], H, W) for f in [0, 1, 1, 1]])
    assert torch.equal(clip, expected)


def test_test_dataset_uses_first_frame_of_each_chunk(split):
    db = read_database(split / 'path.txt', split / 'info.npy', split / 'query.npy')
    dataset = TestClipDataset(db, 2, 32, 16)
    assert dataset.frames.tolist() == [[0, 1], [2, 5], [7, 7], [8, 10]]
    clip, pid, cam = dataset[1]
    assert (pid, cam) == (3, 2) and clip.shape == (2, 3, 32, 16)
    expected = torch.stack([reference_pipeline(db.paths[f], 32, 16) for f in [2, 5]])
    assert (normalize_clip(clip) - expected).abs().max().item() < 1e-6
    assert dataset.query_idx.tolist() == [1, 3]


# ---- loaders ------------------------------------------------------------------------------------------

def test_train_loader_batches(split):
    db = read_database(split / 'path.txt', split / 'info.npy')
    loader = make_train_loader(db, S=4, class_per_batch=3, track_per_class=2, seed=0, num_workers=0,
                               height=H, width=W)
    assert len(loader) == 1 and loader.dataset.n_id == 3
    loader.set_epoch(1)
    (clips, labels), = list(loader)
    assert clips.shape == (6, 4, 3, H, W) and clips.dtype == torch.uint8 and clips.is_contiguous()
    assert labels.dtype == torch.int64 and sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert (labels[::2] == labels[1::2]).all()
    batch = next(iter(loader.batch_sampler))
    for clip, (row, seed) in zip(clips, batch):
        assert torch.equal(clip, loader.dataset[(row, seed)][0])
    with pytest.raises(DataError, match='class_per_batch 4 is larger than the 3 training identities'):
        make_train_loader(db, 4, 4, 2, 0, 0, H, W)


def test_train_loader_same_batches_with_workers(split):
    db = read_database(split / 'path.txt', split / 'info.npy')
    kwargs = dict(S=4, class_per_batch=2, track_per_class=3, seed=5, height=H, width=W)
    plain = make_train_loader(db, num_workers=0, **kwargs)
    workers = make_train_loader(db, num_workers=2, **kwargs)
    for epoch in range(2):
        plain.set_epoch(epoch)
        workers.set_epoch(epoch)
        for (a, la), (b, lb) in zip(plain, workers):
            assert torch.equal(a, b) and torch.equal(la, lb)


def test_worker_error_is_one_line(split):
    (split / 'f08.jpg').write_bytes(b'garbage')
    db = read_database(split / 'path.txt', split / 'info.npy')
    loader = make_test_loader(db, S=4, batch_size=4, num_workers=1, height=H, width=W)
    with pytest.raises(DataError, match=r'^cannot read frame .*f08\.jpg: .* \(tracklet row 3\)$'):
        list(loader)


def test_test_loader_order_and_shards(split):
    db = read_database(split / 'path.txt', split / 'info.npy', split / 'query.npy')
    full = list(make_test_loader(db, S=4, batch_size=3, num_workers=0, height=H, width=W))
    clips = torch.cat([b[0] for b in full])
    assert clips.shape == (4, 4, 3, H, W)
    assert torch.cat([b[1] for b in full]).tolist() == [7, 3, 7, 12]
    assert torch.cat([b[2] for b in full]).tolist() == [1, 2, 3, 1]
    shards = [make_test_loader(db, 4, 3, 0, H, W, rank=r, world_size=3) for r in range(3)]
    assert [s.shard for s in shards] == [(0, 1), (1, 2), (2, 4)]
    gathered = torch.cat([b[0] for s in shards for b in s])
    assert torch.equal(gathered, clips)


@pytest.mark.parametrize('mode', ['chunks', 'first', 'all_sampled', 'all_continuous'])
def test_test_sampling_clips_are_test_clip_indices(split, mode):
    """Every --test_sampling mode's clips, tracklet by tracklet, are util.data.sampling.test_clip_indices; the
    loaded pixels are those frames; all_* batches mix the clips of several tracklets."""
    db = read_database(split / 'path.txt', split / 'info.npy')
    dataset = TestClipDataset(db, 3, H, W, sampling=mode)
    per_track = [test_clip_indices(a, b, 3, mode) for a, b, _, _ in db.info]
    np.testing.assert_array_equal(dataset.frames, np.concatenate(per_track))
    if mode in ('chunks', 'first'):
        assert dataset.clip_track is None and len(dataset) == 4
    else:
        # F = 2, 5, 1, 4 with S = 3 -> I = 1, 2, 1, 2 clips
        assert dataset.clip_track.tolist() == [0, 1, 1, 2, 3, 3]
    batches = list(make_test_loader(db, 3, 4, 0, H, W, sampling=mode))
    clips = torch.cat([b[0] for b in batches])
    expected = torch.stack([load_clip([db.paths[f] for f in frames], H, W) for frames in dataset.frames])
    assert torch.equal(clips, expected)
    rows = np.arange(4) if dataset.clip_track is None else dataset.clip_track
    assert torch.cat([b[1] for b in batches]).tolist() == db.info[rows, 2].tolist()
    if dataset.clip_track is not None:
        assert torch.cat([b[3] for b in batches]).tolist() == rows.tolist()
        assert batches[0][3].tolist() == [0, 1, 1, 2]  # one batch, three tracklets


def test_all_clips_shards_split_by_tracklet(split):
    db = read_database(split / 'path.txt', split / 'info.npy')
    shards = [make_test_loader(db, 3, 2, 0, H, W, rank=r, world_size=3, sampling='all_continuous')
              for r in range(3)]
    assert [s.shard for s in shards] == [(0, 1), (1, 2), (2, 4)]
    assert [[row for b in s for row in b[3].tolist()] for s in shards] == [[0], [1, 1], [2, 3, 3]]


def test_unknown_sampling_mode(split):
    db = read_database(split / 'path.txt', split / 'info.npy')
    with pytest.raises(DataError, match="test sampling 'every' is not one of chunks, first"):
        TestClipDataset(db, 3, H, W, sampling='every')


def test_database_dataclass_accepts_plain_arrays():
    db = Database(['a.jpg', 'b.jpg'], np.array([[0, 1, 5, 1]]))
    dataset = TestClipDataset(db, 3, H, W)
    assert dataset.frames.tolist() == [[0, 1, 1]] and dataset.paths[1] == 'b.jpg'


# ---- finishing clips on the device (--resize_on_device, --decode_on_device) ---------------------------

DEVICE_DECODERS = ['resize_on_device', 'device']


def decoded_batches(loader):
    return [(batch[0].decode('cpu'),) + tuple(batch[1:]) for batch in loader]


@pytest.mark.parametrize('num_workers', [0, 2])
@pytest.mark.parametrize('decoder', DEVICE_DECODERS)
def test_device_decoding_gives_the_worker_clips(split, decoder, num_workers):
    """On the CPU the finished batches equal the default pipeline's: frames, the repeated last frame of
    short tracklets and the clip flips of training."""
    db = read_database(split / 'path.txt', split / 'info.npy', split / 'query.npy')
    test = [make_test_loader(db, 4, 3, num_workers, H, W, decoder=d) for d in (decoder, 'pil')]
    assert isinstance(next(iter(test[0]))[0], DeviceBatch)
    for (a, pa, ca), (b, pb, cb) in zip(decoded_batches(test[0]), test[1]):
        assert a.dtype == torch.uint8 and a.shape == b.shape and torch.equal(a, b)
        assert torch.equal(pa, pb) and torch.equal(ca, cb)
    kwargs = dict(S=4, class_per_batch=2, track_per_class=3, seed=5, height=H, width=W)
    train = [make_train_loader(db, num_workers=num_workers, decoder=d, **kwargs) for d in (decoder, 'pil')]
    flips = set()
    for epoch in range(3):
        for loader in train:
            loader.set_epoch(epoch)
        for (a, la), (b, lb) in zip(decoded_batches(train[0]), train[1]):
            assert torch.equal(a, b) and torch.equal(la, lb)
        flips.update(train[0].dataset[item][0].flip for item in next(iter(train[0].batch_sampler)))
    assert flips == {True, False}


@pytest.mark.parametrize('decoder', DEVICE_DECODERS)
def test_device_resizing_equals_pil(split, decoder):
    db = read_database(split / 'path.txt', split / 'info.npy')
    for size in [(32, 16), (24, 10), (8, 4)]:  # up, uneven, down
        (a, _, _), = decoded_batches(make_test_loader(db, 2, 4, 0, *size, decoder=decoder))
        (b, _, _), = make_test_loader(db, 2, 4, 0, *size, decoder='pil')
        assert a.shape == b.shape == (4, 2, 3, *size)
        assert torch.equal(a, b), size


@pytest.mark.parametrize('decoder', DEVICE_DECODERS)
def test_device_resizing_of_frames_of_mixed_sizes(tmp_path, decoder):
    """DukeV-like: frame sizes differ between and within tracklets; one batch holds them all."""
    rng = np.random.default_rng(4)
    sizes = [(20, 9), (16, 8), (33, 14), (20, 9), (12, 6), (40, 17)]
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(str(tmp_path / f'm{i}.jpg'))
        random_image(rng, h, w).convert('L' if i == 4 else 'RGB').save(paths[-1], quality=85)
    db = Database(paths, np.array([[0, 2, 1, 1], [3, 5, 2, 2]]))
    kwargs = dict(S=2, class_per_batch=2, track_per_class=2, seed=1, num_workers=0, height=H, width=W)
    for a, b in zip(*(make_train_loader(db, decoder=d, **kwargs) for d in (decoder, 'pil'))):
        assert isinstance(a[0], DeviceBatch) and a[0].data.dtype == torch.uint8
        assert torch.equal(a[0].decode('cpu'), b[0]) and torch.equal(a[1], b[1])
    (a, _, _), = decoded_batches(make_test_loader(db, 3, 2, 0, H, W, decoder=decoder))
    assert torch.equal(a, torch.stack([torch.stack([reference_uint8(paths[i], H, W) for i in rows])
                                       for rows in ([0, 1, 2], [3, 4, 5])]))


def test_device_decoding_errors_name_the_file(split):
    Image.open(split / 'f04.jpg').save(split / 'f04.png')
    (split / 'path.txt').write_text((split / 'path.txt').read_text().replace('f04.jpg', 'f04.png'))
    good = (split / 'f00.jpg').read_bytes()
    (split / 'f09.jpg').write_bytes(good[:12] + b'\x00' * 40)  # a JPEG start, then nothing decodable
    db = read_database(split / 'path.txt', split / 'info.npy')
    dataset = TestClipDataset(db, 4, H, W, decoder='device')
    with pytest.raises(DataError, match=r'^cannot read frame .*f04\.png: not a JPEG file .* \(tracklet row 1\)$'):
        dataset[1]
    batch = data.collate_clips([dataset[0], dataset[3]])
    with pytest.raises(DataError, match=r'^cannot read frame .*f09\.jpg: ') as err:
        batch[0].decode('cpu')
    assert '\n' not in str(err.value)
