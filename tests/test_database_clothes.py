"""MEVID and CCVID: the builders on the synthetic sets (official layouts, with the real data's traps), their
one-line errors, and evaluate.py's attribute protocols end to end on saved features."""
import json
import os
import shutil

import numpy as np
import pytest

import create_CCVID_database
import create_MEVID_database
import evaluate
from util.cli.options import run_main
from util.data.datasets.ccvid import build_ccvid_database
from util.data.datasets.mevid import build_mevid_database
from util.data.loaders import read_database
from util.data.synthetic import make_ccvid, make_mevid
from util.errors import DataError
from util.evaluation.features_file import FeaturesFile

TINY = dict(num_train_ids=3, num_test_ids=3, num_outfits=2, height=16, width=8, min_len=2, max_len=6)


@pytest.fixture(scope='module')
def mevid(tmp_path_factory):
    root = tmp_path_factory.mktemp('mevid')
    make_mevid(root / 'MEVID', num_cams=4, **TINY)
    build_mevid_database(root / 'MEVID', root / 'db', root / 'MEVID' / 'test_track_scale.txt', progress=False)
    return root


@pytest.fixture(scope='module')
def ccvid(tmp_path_factory):
    root = tmp_path_factory.mktemp('ccvid')
    make_ccvid(root / 'CCVID', num_cams=3, **dict(TINY, num_outfits=3))  # three sessions
    build_ccvid_database(root / 'CCVID', root / 'db', progress=False)
    return root


def read_table(path):
    return np.array([[int(v) for v in line.split()] for line in open(path) if line.strip()], dtype=np.int64)


def test_mevid_database_follows_the_name_file_and_drops_empty_rows(mevid):
    data, db = mevid / 'MEVID', mevid / 'db'
    assert sorted(os.listdir(db)) == sorted(['train_path.txt', 'train_info.npy', 'train_clothes.npy', 'test_path.txt',
                                             'test_info.npy', 'test_clothes.npy', 'test_location.npy',
                                             'test_scale.npy', 'query_IDX.npy', 'gallery_IDX.npy'])
    rows = read_table(data / 'track_test_info.txt')
    kept = rows[:, 0] <= rows[:, 1]
    assert (~kept).sum() == 1  # the synthetic trap: one row covering no frame
    info = np.load(db / 'test_info.npy')
    np.testing.assert_array_equal(info, rows[kept][:, [0, 1, 2, 4]])
    # the query list re-indexed to the kept rows: the same tracklets
    query = np.load(db / 'query_IDX.npy')
    original = read_table(data / 'query_IDX.txt')[:, 0]
    np.testing.assert_array_equal(info[query], rows[original][:, [0, 1, 2, 4]])
    np.testing.assert_array_equal(np.load(db / 'gallery_IDX.npy'), np.setdiff1d(np.arange(len(info)), query))
    # frame order = the name file's, which is not the sorted order of the frames
    names = open(data / 'test_name.txt').read().split()
    d = read_database(db / 'test_path.txt', db / 'test_info.npy', db / 'query_IDX.npy', db / 'gallery_IDX.npy')
    assert [os.path.basename(p) for p in d.paths] == names and names != sorted(names)
    assert all(p == str(data / 'bbox_test' / n[:4] / n) for p, n in zip(d.paths, names))
    # labels: clothes = (pid, outfit) pairs, location from the camera, scale from the scale file's tracklets
    clothes = np.load(db / 'test_clothes.npy')
    pairs = rows[kept][:, 2] * 1000 + rows[kept][:, 3]
    assert (clothes[:, None] == clothes[None, :]).tolist() == (pairs[:, None] == pairs[None, :]).tolist()
    assert np.array_equal(np.unique(clothes), np.arange(len(np.unique(pairs))))
    np.testing.assert_array_equal(np.load(db / 'test_location.npy'),
                                  [0 if c in (329, 330, 507, 508, 509) else 1 for c in info[:, 3]])
    scale_of = {}
    for line in open(data / 'test_track_scale.txt'):
        name, s = line.split()
        scale_of[name.split('F')[0]] = {'l': 0, 'm': 1}[s]
    expected = [scale_of[names[start].split('F')[0]] for start in info[:, 0]]
    np.testing.assert_array_equal(np.load(db / 'test_scale.npy'), expected)
    assert np.load(db / 'train_clothes.npy').dtype == np.int64


def copy_of(root, tmp_path, name):
    dest = tmp_path / name
    shutil.copytree(root / name, dest)
    return dest


def rewrite(path, edit):
    lines = open(path).read().splitlines()
    edit(lines)
    with open(path, 'w') as f:
        f.write(''.join(line + '\n' for line in lines))


def mevid_error(data, tmp_path, scale=False):
    out = tmp_path / 'out'
    with pytest.raises(DataError) as err:
        build_mevid_database(data, out, data / 'test_track_scale.txt' if scale else None, progress=False)
    assert not out.exists()  # nothing written
    return str(err.value)


def test_mevid_query_row_covering_no_frame(mevid, tmp_path):
    data = copy_of(mevid, tmp_path, 'MEVID')
    rows = read_table(data / 'track_test_info.txt')
    empty = int(np.flatnonzero(rows[:, 0] > rows[:, 1])[0])
    rewrite(data / 'query_IDX.txt', lambda lines: lines.insert(0, str(empty)))
    assert mevid_error(data, tmp_path) == (f'{data}/query_IDX.txt line 1: query row {empty} '
                                           f'({data}/track_test_info.txt line {empty + 1}) covers no frame')


def test_mevid_name_without_its_image(mevid, tmp_path):
    data = copy_of(mevid, tmp_path, 'MEVID')
    name = open(data / 'train_name.txt').read().split()[3]
    os.remove(data / 'bbox_train' / name[:4] / name)
    assert mevid_error(data, tmp_path) == (f'{data}/train_name.txt line 4: {name} has no image '
                                           f'{data}/bbox_train/{name[:4]}/{name}')


def test_mevid_frame_name_disagreeing_with_its_row(mevid, tmp_path):
    data = copy_of(mevid, tmp_path, 'MEVID')
    rows = read_table(data / 'track_test_info.txt')
    start, end, pid, outfit, cam = rows[0]
    other = 9 if outfit != 9 else 8
    rewrite(data / 'track_test_info.txt', lambda lines: lines.__setitem__(0, f'{start} {end} {pid} {other} {cam}'))
    assert mevid_error(data, tmp_path) == (
        f'{data}/test_name.txt line {start + 1}: frame of {data}/track_test_info.txt line 1 has pid / outfit / '
        f'camera {pid} / {outfit} / {cam} in its name, the row {pid} / {other} / {cam}')


def test_mevid_scale_line_matching_no_row(mevid, tmp_path):
    data = copy_of(mevid, tmp_path, 'MEVID')
    rewrite(data / 'test_track_scale.txt', lambda lines: lines.append('0999O001C330T001F00001.jpg m'))
    assert mevid_error(data, tmp_path, scale=True) == (
        f'{data}/test_track_scale.txt line {len(open(data / "test_track_scale.txt").readlines())}: '
        f'0999O001C330T001F00001.jpg matches no tracklet of {data}/track_test_info.txt (pid 999, outfit 1, '
        f'camera 330, tracklet 1)')


def test_ccvid_database(ccvid):
    data, db = ccvid / 'CCVID', ccvid / 'db'
    lines = {k: [line.split() for line in open(data / f'{k}.txt')] for k in ('train', 'query', 'gallery')}
    info = np.load(db / 'test_info.npy')
    test = lines['query'] + lines['gallery']
    np.testing.assert_array_equal(np.load(db / 'query_IDX.npy'), np.arange(len(lines['query'])))
    np.testing.assert_array_equal(np.load(db / 'gallery_IDX.npy'), np.arange(len(lines['query']), len(test)))
    # cameras: the number after the first '_', + 12 in session3 (the synthetic set has all three sessions)
    cams = [int(t.split('_')[1]) + (12 if t.startswith('session3') else 0) for t, _, _ in test]
    np.testing.assert_array_equal(info[:, 3], cams)
    assert any(t.startswith('session3') for t, _, _ in test)
    np.testing.assert_array_equal(info[:, 2], [int(p) for _, p, _ in test])
    # clothes ids: one per (pid, label) pair; the same label text worn by two people is two ids
    clothes = np.load(db / 'test_clothes.npy')
    keys = sorted({(int(p), c) for _, p, c in test})
    np.testing.assert_array_equal(clothes, [keys.index((int(p), c)) for _, p, c in test])
    shared = {c for _, p, c in test if len({q for _, q, d in test if d == c}) > 1}
    assert shared  # the trap is in the data
    # frames: the sorted image files of each folder, stray files left out
    d = read_database(db / 'test_path.txt', db / 'test_info.npy')
    for (track, _, _), (start, end, _, _) in zip(test, info):
        folder = data / track
        expected = sorted(n for n in os.listdir(folder) if n.endswith('.jpg'))
        assert d.paths[start:end + 1] == [str(folder / n) for n in expected]
    assert any('Thumbs.db' in os.listdir(data / t) for t, _, _ in lines['train'])
    np.testing.assert_array_equal(np.load(db / 'train_clothes.npy'),
                                  [sorted({(int(p), c) for _, p, c in lines['train']}).index((int(p), c))
                                   for _, p, c in lines['train']])


def test_ccvid_missing_tracklet_folder(ccvid, tmp_path, capsys):
    data = copy_of(ccvid, tmp_path, 'CCVID')
    track = open(data / 'gallery.txt').readline().split()[0]
    shutil.rmtree(data / track)
    assert run_main(create_CCVID_database.main, ['--data_dir', str(data), '--output_dir', str(tmp_path / 'out'),
                                                 '--no_progress']) == 2
    assert capsys.readouterr().err == (f'error: {data}/{track}: directory not found (expected the frames of '
                                       f'{data}/gallery.txt line 1)\n')


# ---- evaluate.py: the attribute protocols end to end, and bad input ---------------------------------------


def random_features(mevid, tmp_path, gallery=True, **attributes):
    db = mevid / 'db'
    info = np.load(db / 'test_info.npy')
    feats = np.random.default_rng(0).standard_normal((len(info), 16)).astype(np.float32)
    path = tmp_path / 'f.npz'
    FeaturesFile(feats, info[:, 2], info[:, 3], np.load(db / 'query_IDX.npy'),
                 np.load(db / 'gallery_IDX.npy') if gallery else None, extra=attributes).write(path)
    return path


PROTOCOL_KEYS = ['same_clothes', 'clothes_changing', 'same_location', 'different_location', 'same_scale',
                 'different_scale']
BLOCK_KEYS = ['rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP', 'cmc', 'num_scored', 'num_skipped']


def test_evaluate_all_mevid_protocols_on_saved_features(mevid, tmp_path, capsys):
    db = mevid / 'db'
    attrs = [f'--{k}_info' for k in ('clothes', 'location', 'scale')]
    files = [str(db / f'test_{k}.npy') for k in ('clothes', 'location', 'scale')]
    flags = [x for pair in zip(attrs, files) for x in pair]
    assert evaluate.main(['--features', str(random_features(mevid, tmp_path)), '--ap_rule', 'plain',
                          '--results', str(tmp_path / 'r.json'), '--rank_size', '0'] + flags) == 0
    out = capsys.readouterr().out
    assert [line.split('|')[1].strip() for line in out.splitlines() if line.startswith('| ')][-7:] == \
        ['general', 'SC', 'CC', 'SL', 'DL', 'SS', 'DS']
    record = json.load(open(tmp_path / 'r.json'))
    assert record['ap_rule'] == 'plain' and 'mINP' in record
    for key in PROTOCOL_KEYS:
        assert list(record[key]) == BLOCK_KEYS
    # the same numbers from a features file that carries its labels (no flags)
    path = random_features(mevid, tmp_path, clothes=np.load(db / 'test_clothes.npy'))
    assert evaluate.main(['--features', str(path), '--ap_rule', 'plain', '--rank_size', '0',
                          '--results', str(tmp_path / 'r2.json')]) == 0
    again = json.load(open(tmp_path / 'r2.json'))
    assert again['clothes_changing'] == record['clothes_changing'] and 'same_location' not in again


@pytest.mark.parametrize('flags, message', [
    (['--location_info', '{short}'], '--location_info {short}: 5 values, but {features} has {n} test rows '
                                     '(expected one per row)'),
    (['--scale_info', '{db}/test_path.txt'], '--scale_info {db}/test_path.txt: not a readable .npy file'),
    (['--clothes_info', '{db}/missing.npy'], '--clothes_info {db}/missing.npy: no such file'),
    (['--ap_rule', 'interpolated'], "--ap_rule 'interpolated' is not an AP rule; choose one of trapezoid, plain"),
    (['--test_stride', '0'], '--test_stride must be at least 1, got 0'),
])
def test_evaluate_bad_input_one_line_exit_2(mevid, tmp_path, capsys, flags, message):
    db = mevid / 'db'
    features = random_features(mevid, tmp_path)
    np.save(tmp_path / 'short.npy', np.zeros(5, np.int64))
    fill = dict(db=db, features=features, n=len(np.load(db / 'test_info.npy')), short=tmp_path / 'short.npy')
    code = run_evaluate(['--features', str(features)] + [f.format(**fill) for f in flags])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and ('error: ' + message.format(**fill)) in lines[0]


def run_evaluate(argv):
    try:
        return run_main(evaluate.main, argv)
    except SystemExit as e:  # argparse's parser.error
        return e.code


def test_attribute_file_with_features_lacking_the_gallery_index(mevid, tmp_path, capsys):
    features = random_features(mevid, tmp_path, gallery=False)
    db = mevid / 'db'
    assert run_evaluate(['--features', str(features), '--clothes_info', str(db / 'test_clothes.npy')]) == 2
    assert capsys.readouterr().err == (f'error: --features {features}: has no gallery_idx, which --clothes_info '
                                       f'needs (save the features from a database with gallery_IDX.npy, or give '
                                       f'--gallery_info)\n')


def test_create_mevid_script(mevid, tmp_path, capsys):
    assert create_MEVID_database.main(['--data_dir', str(mevid / 'MEVID'), '--output_dir', str(tmp_path / 'db'),
                                       '--no_progress']) == 0
    assert 'test_scale.npy' not in os.listdir(tmp_path / 'db')
    for name in os.listdir(tmp_path / 'db'):
        assert open(tmp_path / 'db' / name, 'rb').read() == open(mevid / 'db' / name, 'rb').read()


# ---- run_MEVID.sh / run_CCVID.sh command lines ----------------------------------------------------------


def script_commands(tmp_path, name, env):
    """The commands a run script issues, PY pointing at a stub that prints each command's arguments."""
    import stat
    import subprocess
    stub = tmp_path / 'python_stub'
    stub.write_text('#!/bin/sh\necho ===\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(['sh', os.path.join(root, name), '--device', 'cpu'], cwd=tmp_path, capture_output=True,
                         text=True, check=True, env={**os.environ, 'PY': str(stub), **env}).stdout
    return [block.strip().splitlines() for block in out.split('===')[1:]]


@pytest.mark.parametrize('name', ['run_MEVID.sh', 'run_CCVID.sh'])
def test_run_scripts_build_train_and_score_with_the_published_protocol(tmp_path, name):
    from util.cli.options import parse_args
    (tmp_path / 'D').mkdir()
    (tmp_path / 'D' / 'test_track_scale.txt').write_text('')
    issued = script_commands(tmp_path, name, {'DATA_DIR': str(tmp_path / 'D'), 'DB': 'db'})
    # first every flag is checked (util.cli.run_state check), then the database is built and each model trained
    checks = [c[2:] for c in issued if c[:2] == ['-m', 'util.cli.run_state']]
    assert [c[:2] for c in checks] == [['check', 'NL'], ['check', 'evaluate']] * 2
    commands = [c for c in issued if c[0].endswith('.py')]
    assert [os.path.basename(c[0]) for c in commands] == [f'create_{name[4:9]}_database.py', 'train_NL.py',
                                                          'evaluate.py', 'train_NL.py', 'evaluate.py']
    assert [c[2:] for c in checks] == [c[1:] for c in commands[1:]]  # the checked flags are the ones run
    if name == 'run_MEVID.sh':
        assert commands[0][1:] == ['--data_dir', str(tmp_path / 'D'), '--scale_file',
                                   str(tmp_path / 'D' / 'test_track_scale.txt'), '--output_dir', 'db']
    for train, score, model in ((commands[1], commands[2], 'resnet50_NL'),
                                (commands[3], commands[4], 'resnet50_NL_stripe_hr')):
        t, e = parse_args('NL', train[1:]), parse_args('evaluate', score[1:])
        assert (t.model_type, t.n_epochs, t.lr, t.S, t.ap_rule, t.device) == (model, 200, 1e-4, 8, 'plain', 'cpu')
        assert (e.model_type, e.ap_rule, e.test_sampling, e.test_stride, e.gallery_info) == \
            (model, 'plain', 'strided', 4, 'db/gallery_IDX.npy')
        assert e.clothes_info == t.clothes_info == 'db/test_clothes.npy' and e.results == f'{t.ckpt}/results.json'
        if name == 'run_MEVID.sh':
            assert (e.location_info, e.scale_info) == (t.location_info, t.scale_info) == \
                ('db/test_location.npy', 'db/test_scale.npy')
        else:
            assert e.location_info is None and e.scale_info is None


@pytest.mark.parametrize('dataset', ['mevid', 'ccvid'])
def test_output_dir_inside_the_data_dir_is_refused(dataset, mevid, ccvid):
    data = mevid / 'MEVID' if dataset == 'mevid' else ccvid / 'CCVID'
    build = build_mevid_database if dataset == 'mevid' else build_ccvid_database
    before = sorted(os.listdir(data))
    with pytest.raises(DataError) as e:
        build(data, data / 'db', progress=False)
    assert str(e.value).startswith(f'{data / "db"}: ') and 'input directory' in str(e.value)
    assert sorted(os.listdir(data)) == before
