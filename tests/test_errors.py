"""The error policy: any failure of reading a user's file is one ReIDError line naming the file, but a
broken dependency (ImportError, AttributeError, NameError raised by the library that reads it) is not
blamed on the file: it propagates with its own traceback."""
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from models import resnet
from util import io as user_files
from util.data import frames
from util.data import loaders as data
from util.data.datasets import common
from util.errors import BROKEN_DEPENDENCY, CheckpointError, DataError, ReIDError
from util.evaluation.features_file import FeaturesFile


def _raiser(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


def _garbage(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b'not what the name says\x00\xff' * 8)
    return str(path)


# (name of the file, what reads it, the module and function the reader calls for the user's file)
READERS = {
    'torch.load': ('w.pth', lambda p: user_files.load_torch_file(p), (torch, 'load'), CheckpointError),
    'np.load (features)': ('f.npz', lambda p: FeaturesFile.read(p), (np, 'load'), DataError),
    'np.load (search)': ('f.npz', lambda p: FeaturesFile.read(p, mmap=True, scoring=False), (np, 'load'),
                         DataError),
    'np.load (database)': ('a.npy', lambda p: data._load_int_array(p, 'labels'), (np, 'load'), DataError),
    'scipy.io.loadmat': ('s.mat', lambda p: common.load_mat(p, 'ls_set', 'a split'), (scipy.io, 'loadmat'),
                         DataError),
    'Pillow': ('frame.jpg', lambda p: frames._read_pil(p), (Image, 'open'), DataError),
}


@pytest.mark.parametrize('reader', sorted(READERS))
def test_a_damaged_user_file_is_one_project_error_line_naming_it(tmp_path, reader):
    name, read, _, error = READERS[reader]
    path = _garbage(tmp_path, name)
    with pytest.raises(error) as e:
        read(path)
    assert path in str(e.value) and '\n' not in str(e.value)


@pytest.mark.parametrize('broken', BROKEN_DEPENDENCY)
@pytest.mark.parametrize('reader', sorted(READERS))
def test_a_broken_dependency_is_not_blamed_on_the_file(tmp_path, monkeypatch, reader, broken):
    name, read, (module, attr), _ = READERS[reader]
    path = _garbage(tmp_path, name)
    monkeypatch.setattr(module, attr, _raiser(broken('broken install')))
    with pytest.raises(broken, match='broken install') as e:
        read(path)
    assert not isinstance(e.value, ReIDError)


def test_a_download_failure_is_one_line_but_a_broken_torch_hub_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setattr(resnet, '_reachable', lambda *a, **k: True)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', _raiser(OSError('connection reset')))
    with pytest.raises(CheckpointError, match='connection reset.*--pretrained none'):
        resnet._imagenet_state_dict()
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', _raiser(AttributeError('no hub')))
    with pytest.raises(AttributeError, match='no hub'):
        resnet._imagenet_state_dict()
