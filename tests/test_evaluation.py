"""evaluate.py's outputs and checks on saved features (the gallery index, --results, --cmc_plot, --chance_level,
non-finite features, unwritable outputs, bad flags) and the features of the four --test_sampling modes."""
import json
import os

import numpy as np
import pytest
import torch
from helpers import save_features
from PIL import Image

import evaluate
from models.preprocess import normalize_clip
from util.cli.options import run_main
from util.data.frames import load_clip
from util.data.loaders import Database, collate_clips, make_test_loader
from util.data.sampling import TEST_SAMPLING_MODES, test_clip_indices, test_frame_indices
from util.evaluation.extract import extract_features
from util.evaluation.features_file import FeaturesFile
from util.evaluation.metrics import evaluate_mars
from util.evaluation.scoring import chance_level, score


def features_set(seed=0, n_ids=12, per_id=4, dim=8):
    rng = np.random.default_rng(seed)
    pid = np.concatenate([np.repeat(np.arange(1, n_ids + 1), per_id), [-1, -1, 0, 0]])
    cam = np.concatenate([np.tile(np.arange(1, per_id + 1), n_ids), [1, 2, 1, 2]])
    feats = (rng.standard_normal((n_ids + 2, dim))[np.maximum(pid, 0) + (pid == -1) * (n_ids + 1)]
             + 0.9 * rng.standard_normal((len(pid), dim))).astype(np.float32)
    query = np.arange(0, n_ids * per_id, per_id)           # one per id (camera 1)
    gallery = np.setdiff1d(np.arange(len(pid)), query)     # the queries are not in the gallery
    return feats, pid, cam, query, gallery


def run(argv, capsys):
    code = run_main(evaluate.main, [str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_features_file_round_trip(tmp_path):
    feats, pid, cam, query, gallery = features_set()
    save_features(tmp_path / 'a.npz', feats, pid, cam, query)
    with np.load(tmp_path / 'a.npz') as data:
        assert sorted(data.files) == ['cams', 'features', 'labels', 'query_idx', 'test_sampling']
    saved = FeaturesFile.read(str(tmp_path / 'a.npz'))
    assert saved.gallery_idx is None and saved.test_sampling == 'chunks' and saved.extra == {}
    np.testing.assert_array_equal(saved.features, feats)
    save_features(tmp_path / 'b.npz', feats, pid, cam, query, gallery, test_sampling='all_continuous')
    saved = FeaturesFile.read(str(tmp_path / 'b.npz'))
    g, q = saved.gallery_idx, saved.query_idx
    assert g.dtype == np.int64 and np.array_equal(g, gallery) and np.array_equal(q, query)
    assert saved.test_sampling == 'all_continuous'


def test_gallery_index_and_results_file(tmp_path, capsys):
    feats, pid, cam, query, gallery = features_set()
    save_features(tmp_path / 'f.npz', feats, pid, cam, query, gallery)
    code, out, err = run(['--features', tmp_path / 'f.npz', '--results', tmp_path / 'out' / 'r.json',
                          '--rank_size', 0], capsys)
    assert code == 0, err
    expected = evaluate_mars(feats, pid, cam, query, rank_size=0, gallery_idx=gallery)
    whole = evaluate_mars(feats, pid, cam, query, rank_size=0)
    assert expected.mAP != whole.mAP  # the gallery index changes the numbers
    assert f'CMC : {expected.cmc[0]:.4f} , mAP : {expected.mAP:.4f}' in out
    record = json.loads((tmp_path / 'out' / 'r.json').read_text())
    assert record['mAP'] == expected.mAP and record['rank1'] == expected.cmc[0]
    assert record['rank5'] == expected.cmc[4] and record['rank20'] == expected.cmc[19]
    assert record['cmc'] == expected.cmc[:50].tolist() and len(record['cmc']) == len(gallery)
    assert (record['num_scored'], record['num_skipped']) == (12, 0)
    assert (record['num_gallery'], record['gallery'], record['test_sampling']) == (len(gallery), 'gallery_idx',
                                                                                  'chunks')
    assert record['rerank'] is None and 'reranked' not in record and record['checkpoint'] is None
    assert os.listdir(tmp_path / 'out') == ['r.json']  # no temporary file left


def test_gallery_info_with_saved_features(tmp_path, capsys):
    """--gallery_info replaces the gallery of a features file (one saved before gallery_idx existed)."""
    feats, pid, cam, query, gallery = features_set()
    save_features(tmp_path / 'f.npz', feats, pid, cam, query)
    np.save(tmp_path / 'gallery_IDX.npy', gallery)
    code, out, err = run(['--features', tmp_path / 'f.npz', '--gallery_info', tmp_path / 'gallery_IDX.npy'], capsys)
    assert code == 0, err
    expected = evaluate_mars(feats, pid, cam, query, gallery_idx=gallery)
    assert f'CMC : {expected.cmc[0]:.4f} , mAP : {expected.mAP:.4f}' in out
    np.save(tmp_path / 'gallery_IDX.npy', np.array([0, len(pid)]))
    code, out, err = run(['--features', tmp_path / 'f.npz', '--gallery_info', tmp_path / 'gallery_IDX.npy'], capsys)
    assert code == 2 and f'gallery index {len(pid)} (position 1) is outside the {len(pid)} tracklet rows' in err


def test_chance_level_flag_and_cmc_plot(tmp_path, capsys):
    feats, pid, cam, query, gallery = features_set()
    save_features(tmp_path / 'f.npz', feats, pid, cam, query)
    code, out, err = run(['--features', tmp_path / 'f.npz', '--chance_level', '--cmc_plot', tmp_path / 'cmc.png'],
                         capsys)
    assert code == 0, err
    expected, rank1, mAP = chance_level(pid, cam, query)
    assert f'Chance level: rank-1 {expected:.4f}' in out and f'mAP {mAP:.4f}' in out
    assert (tmp_path / 'cmc.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_chance_level_by_hand():
    # query 0 (pid 1, cam 1): 1 (pid 1 cam 2, good), 2 (pid 2), 3 (pid -1, junk), 4 (pid 3), 0 itself (junk)
    # -> 1 good among 3 non-junk items: expected rank-1 1/3. Gallery [0, 1, 2]: 1 good of 2; [0, 1, 3]: of 1.
    pid, cam = np.array([1, 1, 2, -1, 3]), np.array([1, 2, 1, 1, 2])
    assert chance_level(pid, cam, [0], draws=1)[0] == pytest.approx(1 / 3, abs=1e-15)
    assert chance_level(pid, cam, [0], draws=1, gallery_idx=np.array([0, 1, 2]))[0] == 0.5
    assert chance_level(pid, cam, [0], draws=1, gallery_idx=np.array([0, 1, 3]))[0] == 1.0


def test_non_finite_features_are_refused(tmp_path, capsys):
    feats, pid, cam, query, _ = features_set()
    feats[[3, 7, 9]] = np.nan
    feats[20, 2] = np.inf
    np.savez(tmp_path / 'f.npz', features=feats, labels=pid, cams=cam, query_idx=query)
    code, out, err = run(['--features', tmp_path / 'f.npz'], capsys)
    assert code == 2 and out == ''
    assert err == (f'error: --features {tmp_path / "f.npz"}: 4 of {len(pid)} feature rows are not finite '
                   f'(NaN or Inf), rows 3, 7, 9, 20; nothing scored\n')
    with pytest.raises(Exception, match='features of x: 4 of'):
        score(feats, pid, cam, query, 0, source='features of x')


def test_unwritable_outputs_are_refused_before_any_work(tmp_path, capsys):
    (tmp_path / 'file').write_text('')
    db = ['--test_txt', tmp_path / 'missing.txt', '--test_info', tmp_path / 'missing.npy', '--query_info',
          tmp_path / 'q.npy', '--model_type', 'resnet50_NL', '--temporal', 'Done', '--load_ckpt', tmp_path / 'x.pth']
    for flag in ('--results', '--cmc_plot', '--save_features'):
        code, out, err = run([*db, flag, tmp_path / 'file' / 'r'], capsys)
        assert code == 2 and err.startswith(f'error: {flag} ') and 'is a file, not a directory' in err
    code, out, err = run([*db, '--visualize_ranks', tmp_path / 'file'], capsys)
    assert code == 2 and 'exists and is not a directory' in err


@pytest.mark.parametrize('flags, message', [
    (['--rerank', '--rerank_k1', '0'], '--rerank_k1 and --rerank_k2 must be at least 1'),
    (['--rerank', '--rerank_k2', '0'], '--rerank_k1 and --rerank_k2 must be at least 1'),
    (['--rerank', '--rerank_lambda', '1.5'], r'--rerank_lambda must lie in \[0, 1\]'),
    (['--rerank', '--rerank_lambda', 'nan'], r'--rerank_lambda must lie in \[0, 1\]'),
    (['--test_sampling', 'every'], "--test_sampling 'every' is not a sampling mode"),
])
def test_bad_flags_exit_2(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(['--features', 'f.npz', *flags])
    assert exit_.value.code == 2
    assert __import__('re').search(message, capsys.readouterr().err.splitlines()[-1])


def test_k1_at_least_the_gallery_is_refused(tmp_path, capsys):
    feats, pid, cam, query, gallery = features_set()
    save_features(tmp_path / 'f.npz', feats, pid, cam, query, gallery)
    code, out, err = run(['--features', tmp_path / 'f.npz', '--rerank', '--rerank_k1', len(gallery)], capsys)
    assert code == 2
    g = len(gallery)
    assert err == f'error: --rerank_k1 {g} must be smaller than the gallery size ({g} tracklets)\n'


# ---- --test_sampling: features of the four modes -------------------------------------------------------

class TinyNet(torch.nn.Module):
    """A clip-level network small enough for exact comparisons: (B, S, 3, H, W) -> (B, 5)."""
    frame_level = False

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 5, 3)
        self.bottleneck = torch.nn.BatchNorm1d(5)
        self.bottleneck.running_mean.uniform_(-0.1, 0.1)

    def forward(self, x):
        b, s = x.shape[:2]
        f = self.conv(x.flatten(0, 1)).mean((2, 3)).view(b, s, -1)  # (B, S, 5)
        return self.bottleneck(f.mean(1))


@pytest.fixture(scope='module')
def tiny_db(tmp_path_factory):
    """5 tracklets of 1..11 frames (16x8 JPEGs): with S = 3 they give 1, 1, 2, 3, 4 clips in the all_* modes."""
    root = tmp_path_factory.mktemp('db')
    rng = np.random.default_rng(0)
    lengths = [1, 3, 5, 7, 11]
    paths = []
    for i in range(sum(lengths)):
        Image.fromarray(rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)).save(root / f'{i:03d}.jpg')
        paths.append(str(root / f'{i:03d}.jpg'))
    ends = np.cumsum(lengths) - 1
    info = np.stack([ends - np.array(lengths) + 1, ends, [1, 2, 1, 2, 3], [1, 1, 2, 2, 1]], axis=1)
    return Database(paths, info.astype(np.int64), np.array([0, 1]))


def plain_features(net, db, S, mode):
    """A plain per-tracklet loop: all of a tracklet's clips in one batch, their features averaged."""
    out = []
    for start, end, _, _ in db.info:
        clips = torch.stack([load_clip([db.paths[f] for f in frames], 16, 8)
                             for frames in test_clip_indices(start, end, S, mode)])
        with torch.no_grad():
            out.append(net(normalize_clip(clips)).double().mean(0).float())
    return torch.stack(out)


@pytest.mark.parametrize('mode', TEST_SAMPLING_MODES)
def test_sampling_modes_equal_a_plain_per_tracklet_loop(tiny_db, mode):
    net = TinyNet().eval()
    loader = make_test_loader(tiny_db, 3, 3, 0, 16, 8, sampling=mode)  # batches of 3 clips cut across tracklets
    feats, labels, cams = extract_features(net, loader, 3, torch.device('cpu'), 'Done', progress=False)
    torch.testing.assert_close(feats, plain_features(net, tiny_db, 3, mode), rtol=1e-6, atol=1e-7)
    assert labels.tolist() == [1, 2, 1, 2, 3] and cams.tolist() == [1, 1, 2, 2, 1]
    if mode in ('all_sampled', 'all_continuous'):
        assert len(loader.dataset) == 11  # 1 + 1 + 2 + 3 + 4 clips


def test_chunks_features_are_the_original_pipeline_bit_for_bit(tiny_db):
    """Default sampling: batches of tracklets, the first frame of each chunk, no averaging: the same bits."""
    net = TinyNet().eval()
    loader = make_test_loader(tiny_db, 3, 2, 0, 16, 8)
    feats, _, _ = extract_features(net, loader, 3, torch.device('cpu'), 'Done', progress=False)
    frames = test_frame_indices(tiny_db.info[:, 0], tiny_db.info[:, 1], 3)
    before = []
    for b in range(0, 5, 2):
        clips, _ = collate_clips([(load_clip([tiny_db.paths[f] for f in row], 16, 8), 0) for row in frames[b:b + 2]])
        with torch.no_grad():
            before.append(net(normalize_clip(clips)))
    assert torch.equal(feats, torch.cat(before))


def test_all_clips_shards_gather_to_the_whole(tiny_db):
    net = TinyNet().eval()
    whole, _, _ = extract_features(net, make_test_loader(tiny_db, 3, 4, 0, 16, 8, sampling='all_sampled'), 3,
                                   torch.device('cpu'), 'Done', progress=False)
    parts = [extract_features(net, make_test_loader(tiny_db, 3, 4, 0, 16, 8, rank=r, world_size=3,
                                                    sampling='all_sampled'), 3, torch.device('cpu'), 'Done',
                              progress=False)[0] for r in range(3)]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-6, atol=1e-7)


# ---- --rerank wiring ------------------------------------------------------------------------------------

@pytest.fixture
def recorded_rerank(monkeypatch):
    """The re-ranking that scoring calls replaced by 2 - 2 cos (the re-ranking's original distance), recording its
    arguments: the wiring is checked apart from the re-ranking itself (tests/test_rerank.py)."""
    from util.evaluation import scoring
    calls = []

    def k_reciprocal_distance(probe, gallery, k1=20, k2=6, lambda_value=0.3):
        calls.append(dict(probe=probe.clone(), gallery=gallery.clone(), k1=k1, k2=k2, lambda_value=lambda_value))
        p = torch.nn.functional.normalize(probe, dim=1)
        g = torch.nn.functional.normalize(gallery, dim=1)
        return (2 - 2 * p @ g.T).float()

    monkeypatch.setattr(scoring, 'k_reciprocal_distance', k_reciprocal_distance)
    return calls


@pytest.mark.parametrize('with_gallery', [False, True])
def test_rerank_scores_the_reranked_distances(tmp_path, capsys, recorded_rerank, with_gallery):
    feats, pid, cam, query, gallery = features_set(seed=2)
    save_features(tmp_path / 'f.npz', feats, pid, cam, query, gallery if with_gallery else None)
    code, out, err = run(['--features', tmp_path / 'f.npz', '--rerank', '--rerank_k1', 7, '--rerank_k2', 2,
                          '--rerank_lambda', 0.5, '--results', tmp_path / 'r.json', '--rank_size', 0], capsys)
    assert code == 0, err
    call, = recorded_rerank
    rows = gallery if with_gallery else np.arange(len(pid))
    assert torch.equal(call['probe'], torch.from_numpy(feats[query]))      # probe = the query rows
    assert torch.equal(call['gallery'], torch.from_numpy(feats[rows]))     # gallery = the evaluation gallery
    assert (call['k1'], call['k2'], call['lambda_value']) == (7, 2, 0.5)
    plain = evaluate_mars(feats, pid, cam, query, rank_size=0, gallery_idx=gallery if with_gallery else None)
    record = json.loads((tmp_path / 'r.json').read_text())
    assert record['rerank'] == {'k1': 7, 'k2': 2, 'lambda_value': 0.5}
    assert record['mAP'] == plain.mAP
    # 2 - 2 cos ranks as -cos (up to float ties): the same scores again under "reranked"
    assert record['reranked']['mAP'] == pytest.approx(plain.mAP, abs=1e-12)
    assert record['reranked']['cmc'] == pytest.approx(record['cmc'], abs=1e-12)
    assert out.count('| rank-1 | rank-5 | rank-10 | rank-20 |') == 2
    assert 'With k-reciprocal re-ranking (k1 7, k2 2, lambda 0.5):' in out


def test_rerank_against_the_real_module(tmp_path, capsys):
    rerank = pytest.importorskip('util.evaluation.rerank')
    feats, pid, cam, query, gallery = features_set(seed=4)
    save_features(tmp_path / 'f.npz', feats, pid, cam, query, gallery)
    code, out, err = run(['--features', tmp_path / 'f.npz', '--rerank', '--rerank_k1', 6, '--rerank_k2', 3,
                          '--results', tmp_path / 'r.json', '--cmc_plot', tmp_path / 'cmc.png'], capsys)
    assert code == 0, err
    dist = rerank.k_reciprocal_distance(torch.from_numpy(feats[query]), torch.from_numpy(feats[gallery]), 6, 3, 0.3)
    from reference import evaluate_mars_reference
    expected = evaluate_mars_reference(feats, pid, cam, query, gallery_idx=gallery, dist=dist.numpy())
    record = json.loads((tmp_path / 'r.json').read_text())
    assert record['reranked']['mAP'] == expected.mAP and record['reranked']['cmc'] == expected.cmc[:50].tolist()
    assert (tmp_path / 'cmc.png').stat().st_size > 0


def test_k2_above_the_probe_and_gallery_is_refused(tmp_path, capsys):
    feats, pid, cam, query, gallery = features_set()
    save_features(tmp_path / 'f.npz', feats, pid, cam, query, gallery)
    n = len(query) + len(gallery)
    code, out, err = run(['--features', tmp_path / 'f.npz', '--rerank', '--rerank_k2', n + 1], capsys)
    assert (code, out) == (2, '')
    assert err == f'error: --rerank_k2 {n + 1} must be at most the {n} probe + gallery tracklets\n'


def test_inputs_that_change_the_numbers_are_refused(tmp_path, capsys):
    feats, pid, cam, query, gallery = features_set()
    path = tmp_path / 'f.npz'
    save_features(path, feats, pid, cam, query)
    # --gallery_info naming a row twice, or of more than one dimension
    for rows, message in ((np.r_[gallery, gallery[3]], f'gallery row {gallery[3]} is listed twice (positions 3 and '
                                                        f'{len(gallery)}); expected each row once'),
                          (gallery[None, :], f'a 2-d array of shape (1, {len(gallery)}); expected the 1-d gallery '
                                             f'row indices of {path}')):
        np.save(tmp_path / 'g.npy', rows)
        code, out, err = run(['--features', path, '--gallery_info', tmp_path / 'g.npy'], capsys)
        assert (code, out, err) == (2, '', f'error: {tmp_path / "g.npy"}: {message}\n')
    # a features file repeating a query row
    np.savez(path, features=feats, labels=pid, cams=cam, query_idx=np.r_[query, query[:1]])
    code, out, err = run(['--features', path], capsys)
    assert (code, out, err) == (2, '', f'error: --features {path}: query_idx row 0 is listed twice (positions 0 and '
                                       f'{len(query)}); expected each row once\n')
    # an all-zero row has no direction: cosine undefined, refused like a NaN row
    feats[[5, 11]] = 0
    np.savez(path, features=feats, labels=pid, cams=cam, query_idx=query)
    code, out, err = run(['--features', path], capsys)
    assert (code, out, err) == (2, '', f'error: --features {path}: 2 of {len(pid)} feature rows are all zero (no '
                                       f'direction, cosine undefined), rows 5, 11; nothing scored\n')


@pytest.mark.parametrize('flag, value', [('--query_info', 'q.npy'), ('--test_sampling', 'chunks'),
                                         ('--test_sampling', 'all_continuous')])
def test_flags_saved_features_cannot_follow_are_refused_not_ignored(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(['--features', 'f.npz', flag, value])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.split(': error: ', 1)[1].startswith(f'{flag} cannot change features scored with --features (')
