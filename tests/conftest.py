"""Fixtures several test files share; plain helpers are in helpers.py."""
import os
import shutil

import numpy as np
import pytest
import torch
from helpers import MARS_HEIGHT, MARS_WIDTH, random_checkpoint, random_image

from util.data.datasets.mars import build_mars_database
from util.data.loaders import read_database
from util.data.synthetic import make_mars


def pytest_configure(config):
    # pytest-xdist runs one worker per core: each worker's torch on one intra-op thread (and the scripts the
    # tests start, through OMP_NUM_THREADS), or the threads of two workers oversubscribe the cores and stall
    # several-fold. An OMP_NUM_THREADS the user exported is kept.
    if hasattr(config, 'workerinput') and 'OMP_NUM_THREADS' not in os.environ:
        os.environ['OMP_NUM_THREADS'] = '1'
        torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # Tests marked `serial` start several processes or use ports: one xdist group, so that they run one after
    # another on one worker (and a module-scoped fixture they share is built once); before pytest-xdist reads
    # the groups.
    if not config.pluginmanager.hasplugin('xdist'):
        return
    for item in items:
        if item.get_closest_marker('serial'):
            item.add_marker(pytest.mark.xdist_group('serial'))


@pytest.fixture(scope='session')
def tiny_mars(tmp_path_factory):
    """Factory of tiny synthetic MARS datasets: ``tiny_mars(seed=0, **make_mars_arguments)`` is a directory
    holding the dataset (MARS/) and its database files (db/: train/test paths and info, query_IDX.npy).
    Each set of arguments is built once per session and shared: treat it as read-only."""
    built = {}

    def build(**kwargs):
        key = tuple(sorted(kwargs.items()))
        if key not in built:
            root = tmp_path_factory.mktemp('mars')
            make_mars(root / 'MARS', **kwargs)
            build_mars_database(root / 'MARS', root / 'MARS' / 'MARS-evaluation' / 'info', root / 'db',
                                progress=False)
            built[key] = root
        return built[key]
    return build


@pytest.fixture(scope='session')
def synthetic_copy(tmp_path_factory):
    """Factory: ``synthetic_copy(make, dest, **kwargs)`` puts at `dest` a private copy (a test may damage it)
    of the synthetic dataset a util.data.synthetic writer `make` writes with `kwargs`, and returns `dest`. Each
    dataset is written once per session."""
    written = {}

    def copy(make, dest, **kwargs):
        key = (make.__name__, tuple(sorted(kwargs.items())))
        if key not in written:
            written[key] = tmp_path_factory.mktemp('src') / 'dataset'
            make(written[key], **kwargs)
        shutil.copytree(written[key], dest)
        return dest
    return copy


@pytest.fixture(scope='session')
def mars_tracks(tiny_mars):
    """A tiny synthetic MARS test split (3 + 3 identities, 32x16 frames), its database, one folder per test
    tracklet (tracks/NNN, links to its frames) and a random checkpoint (ckpt.pth) of resnet50_s1."""
    root = tiny_mars(seed=4, num_train_ids=3, num_test_ids=3, height=MARS_HEIGHT, width=MARS_WIDTH, min_len=2,
                     max_len=9, num_junk=1, num_distractors=1)
    db = read_database(root / 'db' / 'test_path.txt', root / 'db' / 'test_info.npy')
    # MARS keeps an identity's tracklets in one folder: give each tracklet its own (links to its frames)
    for row, (start, end, _, _) in enumerate(db.info):
        d = root / 'tracks' / f'{row:03d}'
        d.mkdir(parents=True)
        for p in db.paths[start:end + 1]:
            os.symlink(p, d / os.path.basename(p))
    random_checkpoint(root / 'ckpt.pth')
    return root


@pytest.fixture
def jpegs(tmp_path):
    """12 random 16x8 JPEG frames, f00.jpg .. f11.jpg (seed 0, quality 90), in the test's tmp_path."""
    rng = np.random.default_rng(0)
    for i in range(12):
        random_image(rng, 16, 8).save(tmp_path / f'f{i:02d}.jpg', quality=90)
    return tmp_path
