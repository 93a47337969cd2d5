"""iLIDS-VID (Wang et al., ECCV 2014): 300 persons, one sequence per person in each of two cameras.

    D/i-LIDS-VID/sequences/cam1/person001/cam1_person001_00317.png      (frame number last)
    D/i-LIDS-VID/sequences/cam2/person001/...
    D/train-test people splits/train_test_splits_ilidsvid.mat           ls_set, 10 x 300

``ls_set`` row k holds 1-based indices into the sorted person directory names of cam1; its first half are
the test persons of split k, the rest the training persons. Each split becomes a database in
``O/split_<k>/``: train rows cover both cameras of every training person; the test info holds the cam1
sequences of the test persons (``query_IDX.npy``) and then their cam2 sequences (``gallery_IDX.npy``).
``O/splits.json`` lists the person directories of each split in torchreid's format.
"""

import os

from util.data.datasets.common import (
    list_persons,
    load_ls_set,
    person_number,
    read_sequence,
    replacing_directory,
    splits_from_ls_set,
    two_camera_database,
    write_files,
)
from util.data.datasets.common import progress as progress_bar
from util.errors import DataError

CAMERAS = ('cam1', 'cam2')
SPLIT_FILE = os.path.join('train-test people splits', 'train_test_splits_ilidsvid.mat')
FRAME_EXAMPLE = 'cam1_person001_00317.png'


def build_ilidsvid_database(data_dir, output_dir, progress=True):
    """Write O/split_0 .. O/split_9 and O/splits.json for the iLIDS-VID directory `data_dir`."""
    seq_root = os.path.join(data_dir, 'i-LIDS-VID', 'sequences')
    split_file = os.path.join(data_dir, SPLIT_FILE)
    if not os.path.isdir(data_dir):
        raise DataError(f'{data_dir}: directory not found (expected the iLIDS-VID directory holding '
                        f'i-LIDS-VID/sequences and "train-test people splits")')
    for cam in CAMERAS:
        d = os.path.join(seq_root, cam)
        if not os.path.isdir(d):
            raise DataError(f'{d}: directory not found (expected one directory per person, e.g. person001)')
    cam_dirs = [os.path.abspath(os.path.join(seq_root, cam)) for cam in CAMERAS]
    persons = list_persons(cam_dirs[0], 'one directory per person, e.g. person001')
    others = set(list_persons(cam_dirs[1], 'one directory per person, e.g. person001'))
    for name in persons:
        if name not in others:
            raise DataError(f'{os.path.join(cam_dirs[1], name)}: directory not found (every person of '
                            f'{cam_dirs[0]} needs a sequence in both cameras)')
    extra = sorted(others - set(persons))
    if extra:
        raise DataError(f'{os.path.join(cam_dirs[0], extra[0])}: directory not found (every person of '
                        f'{cam_dirs[1]} needs a sequence in both cameras)')
    ls_set = load_ls_set(split_file, len(persons), f'the {len(persons)} sorted person directories of {cam_dirs[0]}')

    with replacing_directory(output_dir, inputs=(data_dir,)) as root:
        sequences = {name: tuple((os.path.join(d, name), read_sequence(os.path.join(d, name), -1, FRAME_EXAMPLE))
                                 for d in cam_dirs)
                     for name in progress_bar(persons, 'scanning iLIDS-VID', progress)}
        pids = {name: person_number(name, cam_dirs[0]) for name in persons}
        splits = splits_from_ls_set(ls_set, persons)
        write_files(root, two_camera_database(splits, sequences, pids))
    return splits
