"""PRID2011 (Hirzer et al., SCIA 2011), multi-shot part: persons 1-200 in both cameras.

    D/prid_2011/multi_shot/cam_a/person_0001/0001.png     person_0001 .. person_0385
    D/prid_2011/multi_shot/cam_b/person_0001/0001.png     person_0001 .. person_0749

Splits (``--splits``; default the first of D/splits_prid2011.json, D/train_test_splits_prid.mat found):

* torchreid's ``splits_prid2011.json``: 10 {"train": [person dirs], "test": [person dirs]};
* ``train_test_splits_prid.mat`` (shipped with iLIDS-VID): ``ls_set`` 10 x 178, 1-based indices into the
  sorted list of the standard persons, those of person_0001 .. person_0200 with at least 27 frames in BOTH
  cameras; the first half of each row is the test set.

Output as iLIDS-VID's (cam_a = camera 1 = queries, cam_b = camera 2 = gallery): O/split_<k>/, O/splits.json.
"""

import os

from util.data.datasets.common import (
    check_split_names,
    list_persons,
    load_ls_set,
    load_mat,
    load_split_json,
    person_number,
    read_sequence,
    replacing_directory,
    splits_from_ls_set,
    two_camera_database,
    write_files,
)
from util.data.datasets.common import progress as progress_bar
from util.errors import DataError

CAMERAS = ('cam_a', 'cam_b')
SPLIT_FILES = ('splits_prid2011.json', 'train_test_splits_prid.mat')
MIN_FRAMES = 27      # the standard 178 persons have at least this many frames in both cameras
SHARED_PERSONS = 200  # person_0001 .. person_0200 are the persons seen by both cameras
FRAME_EXAMPLE = '0001.png'


def _default_split_file(data_dir):
    for name in SPLIT_FILES:
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    raise DataError(f'{data_dir}: no split file (expected {SPLIT_FILES[0]} (torchreid) or {SPLIT_FILES[1]} '
                    f'(from iLIDS-VID) there, or pass --splits FILE)')


def standard_persons(lengths):
    """The standard PRID2011 persons: of person 1 .. 200, those with at least 27 frames in both cameras,
    sorted by name. lengths[name] = (frames in cam_a, frames in cam_b)."""
    return sorted(name for name, (a, b) in lengths.items() if min(a, b) >= MIN_FRAMES)


def check_shared_persons(splits, splits_file, where):
    """Only person_0001 .. person_0200 are one person in both cameras: above that cam_a and cam_b hold
    different people under one number, and a query would have no true match."""
    for k, split in enumerate(splits):
        for name in split['train'] + split['test']:
            if person_number(name, where) > SHARED_PERSONS:
                raise DataError(f'{splits_file}: split {k} names person {name!r}, but only person_0001 .. '
                                f'person_{SHARED_PERSONS:04d} are the same person in cam_a and cam_b')


def build_prid2011_database(data_dir, output_dir, splits_file=None, progress=True):
    """Write O/split_0 .. O/split_9 and O/splits.json for the PRID2011 directory `data_dir`."""
    shot_dir = os.path.join(data_dir, 'prid_2011', 'multi_shot')
    if not os.path.isdir(data_dir):
        raise DataError(f'{data_dir}: directory not found (expected the PRID2011 directory holding '
                        f'prid_2011/multi_shot/cam_a and cam_b)')
    cam_dirs = [os.path.abspath(os.path.join(shot_dir, cam)) for cam in CAMERAS]
    for d in cam_dirs:
        if not os.path.isdir(d):
            raise DataError(f'{d}: directory not found (expected one directory per person, e.g. person_0001)')
    splits_file = splits_file or _default_split_file(data_dir)
    from_mat = splits_file.lower().endswith('.mat')
    splits = None if from_mat else load_split_json(splits_file)
    listed = [set(list_persons(d, 'one directory per person, e.g. person_0001')) for d in cam_dirs]
    if from_mat:
        # Persons 1..200 are the ones both cameras saw: each needs its two sequences.
        needed = sorted(n for n in listed[0] | listed[1] if person_number(n, shot_dir) <= SHARED_PERSONS)
    else:
        needed = sorted({n for s in splits for n in s['train'] + s['test']})
    known = {n: (None if n in listed[0] and n in listed[1] else
                 os.path.join(cam_dirs[0] if n not in listed[0] else cam_dirs[1], n))
             for n in (listed[0] | listed[1])}
    if from_mat:
        for name in needed:
            if known[name] is not None:
                raise DataError(f'{known[name]}: directory not found (persons person_0001 .. person_0200 '
                                f'are in both cameras, and the .mat splits need both sequences)')
    else:
        check_split_names(splits, known, splits_file)
        check_shared_persons(splits, splits_file, shot_dir)

    with replacing_directory(output_dir, inputs=(data_dir,)) as root:
        sequences = {name: tuple((os.path.join(d, name), read_sequence(os.path.join(d, name), -1, FRAME_EXAMPLE))
                                 for d in cam_dirs)
                     for name in progress_bar(needed, 'scanning PRID2011', progress)}
        if from_mat:
            persons = standard_persons({n: (len(a[1]), len(b[1])) for n, (a, b) in sequences.items()})
            raw = load_mat(splits_file, 'ls_set', 'a (10, 178) array of 1-based person indices')
            if raw.ndim == 2 and raw.shape[0] == 10 and raw.shape[1] != len(persons):
                raise DataError(f'{cam_dirs[0]}: {len(persons)} of person_0001 .. person_0200 have at least '
                                f'{MIN_FRAMES} frames in both cameras, but {splits_file} indexes {raw.shape[1]} '
                                f'persons (expected the official multi_shot tree, which gives 178)')
            ls_set = load_ls_set(splits_file, len(persons), f'the sorted list of the {len(persons)} persons of '
                                                            f'person_0001 .. person_0200 with at least {MIN_FRAMES} '
                                                            f'frames in both cameras')
            splits = splits_from_ls_set(ls_set, persons)
        pids = {name: person_number(name, cam_dirs[0]) for name in sequences}
        write_files(root, two_camera_database(splits, sequences, pids))
    return splits
