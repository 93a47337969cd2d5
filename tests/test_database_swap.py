"""The builders' whole-directory swap keeps every file of the user's: symbolic links, a kill at any point of
the swap, a directory that cannot be changed, an output directory that overlaps the inputs or the shell's
current directory, and temporaries of killed runs."""

import errno
import os
import re
import shutil
import subprocess
import sys

import pytest

import util.data.datasets.common as common
from util.data.datasets.mars import build_mars_database
from util.data.synthetic import make_mars
from util.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_train_ids=3, num_test_ids=3, height=16, width=8, max_len=6)
DB_FILES = ['query_IDX.npy', 'test_info.npy', 'test_path.txt', 'train_info.npy', 'train_path.txt']
USER_FILES = 30


@pytest.fixture
def mars(tmp_path, synthetic_copy):
    d = synthetic_copy(make_mars, tmp_path / 'MARS', seed=3, **TINY)
    return d, d / 'MARS-evaluation' / 'info', tmp_path / 'out' / 'MARS_database'


def build(data_dir, info_dir, out):
    build_mars_database(str(data_dir), str(info_dir), str(out), progress=False)


def read_tree(d):
    """{relative path: bytes} of every file below d."""
    out = {}
    for parent, _, files in os.walk(d):
        for name in files:
            path = os.path.join(parent, name)
            out[os.path.relpath(path, d)] = open(path, 'rb').read()
    return out


def add_user_files(out, n=USER_FILES):
    """A user's own files beside the database: plain files and a folder."""
    for i in range(n - 1):
        (out / f'note_{i:02d}.txt').write_text(f'mine {i}\n')
    (out / 'plots').mkdir()
    (out / 'plots' / 'a.txt').write_text('plot\n')
    return {k: v for k, v in read_tree(out).items() if k not in DB_FILES}


class Killed(BaseException):
    """The process dying: nothing runs after it (kill -9)."""


def kill_at_rename(monkeypatch, k):
    """os.rename dies at its k-th call; after that every rename and rmtree is a no-op death, as nothing of a
    killed process runs."""
    real_rename, real_rmtree, state = os.rename, shutil.rmtree, {'calls': 0, 'dead': False}

    def rename(*args, **kwargs):
        state['calls'] += 1
        if state['dead'] or state['calls'] == k:
            state['dead'] = True
            raise Killed()
        return real_rename(*args, **kwargs)

    def rmtree(*args, **kwargs):
        if state['dead']:
            raise Killed()
        return real_rmtree(*args, **kwargs)
    monkeypatch.setattr(common.os, 'rename', rename)
    monkeypatch.setattr(common.shutil, 'rmtree', rmtree)
    return state


def test_kill_at_every_step_of_the_swap_keeps_a_whole_database_and_every_user_file(mars, tmp_path, monkeypatch):
    data_dir, info_dir, out = mars
    build(data_dir, info_dir, out)
    user = add_user_files(out)
    old = read_tree(out)
    copy = tmp_path / 'MARS_copy'  # a rebuild from elsewhere: every path differs from the old database's
    shutil.copytree(data_dir, copy)
    build(copy, copy / 'MARS-evaluation' / 'info', tmp_path / 'expected')
    new = {**read_tree(tmp_path / 'expected'), **user}
    renames = 2 + len(os.listdir(out)) - len(DB_FILES) + 1  # the two swaps, the user's entries, old -> trash
    outcomes = set()
    for k in range(1, renames + 2):
        state = kill_at_rename(monkeypatch, k)
        try:
            build(copy, copy / 'MARS-evaluation' / 'info', out)
        except Killed:
            pass
        monkeypatch.undo()
        assert state['dead'] == (k <= renames), k
        # the next start finishes or undoes it: the old or the new database, whole, with every user file
        notes = common.recover_swap(os.path.realpath(out), log=lambda line: None)
        tree = read_tree(out)
        assert tree in (old, new), k
        outcomes.add('old' if tree == old else 'new')
        assert sorted(os.listdir(out.parent)) == ['MARS_database'], k
        assert (k > renames) == (notes == []), k
        # and a rebuild after that gives the new one
        build(copy, copy / 'MARS-evaluation' / 'info', out)
        assert read_tree(out) == new
        build(data_dir, info_dir, out)  # back to the old one for the next kill
        assert read_tree(out) == old
    assert outcomes == {'old', 'new'}


def test_the_builder_recovers_an_interrupted_swap_at_its_start_and_says_so(mars, monkeypatch, capsys):
    data_dir, info_dir, out = mars
    build(data_dir, info_dir, out)
    user = add_user_files(out)
    before = read_tree(out)
    kill_at_rename(monkeypatch, 2)  # between the two renames: the old directory is hidden, nothing in place
    with pytest.raises(Killed):
        build(data_dir, info_dir, out)
    monkeypatch.undo()
    assert not out.exists()
    hidden = [n for n in os.listdir(out.parent) if n.startswith('.MARS_database.old-')]
    assert len(hidden) == 1 and len([n for n in os.listdir(out.parent) if '.partial-' in n]) == 1
    build(data_dir, info_dir, out)
    err = capsys.readouterr().err
    assert f'note: {out}: an interrupted rebuild had moved it to {out.parent / hidden[0]}; restored it' in err
    assert 'left by an interrupted run' in err
    assert read_tree(out) == before and all(read_tree(out)[k] == v for k, v in user.items())
    assert sorted(os.listdir(out.parent)) == ['MARS_database']


def test_partial_directories_of_killed_runs_are_removed_at_the_next_start(mars):
    data_dir, info_dir, out = mars
    out.parent.mkdir(parents=True)
    stale = out.parent / '.MARS_database.partial-0badf00d'
    stale.mkdir()
    (stale / 'train_path.txt').write_text('half\n')
    (out.parent / '.other.partial-1234').mkdir()  # not ours: kept
    build(data_dir, info_dir, out)
    assert sorted(os.listdir(out.parent)) == ['.other.partial-1234', 'MARS_database']


def test_output_dir_that_is_a_symbolic_link_is_written_through(mars, tmp_path):
    data_dir, info_dir, out = mars
    real = tmp_path / 'disk' / 'db'
    build(data_dir, info_dir, real)
    (real / 'NOTES.txt').write_text('mine\n')
    out.parent.mkdir(parents=True)
    os.symlink(real, out)
    build(data_dir, info_dir, out)  # no error: the database was written
    assert os.path.islink(out) and os.readlink(out) == str(real)
    assert (real / 'NOTES.txt').read_text() == 'mine\n'
    assert sorted(os.listdir(real)) == sorted(DB_FILES + ['NOTES.txt'])
    assert sorted(os.listdir(out.parent)) == ['MARS_database'] and sorted(os.listdir(real.parent)) == ['db']


def test_a_directory_that_cannot_be_changed_is_refused_before_any_rename(mars, monkeypatch):
    # mode 555 with the parent writable: the new database could be swapped in but the user's files could not
    # be moved out of the old one (root ignores the mode bits, so os.access says it).
    data_dir, info_dir, out = mars
    build(data_dir, info_dir, out)
    user = add_user_files(out)
    before = read_tree(out)
    real_access = os.access
    monkeypatch.setattr(common.os, 'access',
                        lambda p, mode: False if os.fspath(p) == str(out) else real_access(p, mode))
    renames = []
    real_rename = os.rename
    monkeypatch.setattr(common.os, 'rename', lambda *a: renames.append(a) or real_rename(*a))
    with pytest.raises(DataError) as e:
        build(data_dir, info_dir, out)
    assert str(e.value) == (f'{out}: cannot write the database ({out} is not writable, so the files there could '
                            f'not be moved or removed when the new database replaces it; nothing was changed)')
    assert renames == [] and read_tree(out) == before and user
    assert sorted(os.listdir(out.parent)) == ['MARS_database']


def test_an_unwritable_sub_directory_of_the_user_is_refused_too(mars, monkeypatch):
    data_dir, info_dir, out = mars
    build(data_dir, info_dir, out)
    add_user_files(out, 3)
    real_access = os.access
    plots = str(out / 'plots')
    monkeypatch.setattr(common.os, 'access', lambda p, mode: False if os.fspath(p) == plots else real_access(p, mode))
    with pytest.raises(DataError, match=re.escape(f'({plots} is not writable')):
        build(data_dir, info_dir, out)


def test_a_rename_refused_midway_is_undone(mars, monkeypatch):
    # the permission check passed but the kernel refuses the second rename: the old directory goes back
    data_dir, info_dir, out = mars
    build(data_dir, info_dir, out)
    add_user_files(out, 3)
    before = read_tree(out)
    real, calls = os.rename, []

    def rename(a, b):
        calls.append(a)
        if len(calls) == 2:
            raise PermissionError(errno.EACCES, 'Permission denied')
        return real(a, b)
    monkeypatch.setattr(common.os, 'rename', rename)
    with pytest.raises(DataError, match=r'cannot write the database \(Permission denied\)'):
        build(data_dir, info_dir, out)
    assert read_tree(out) == before and sorted(os.listdir(out.parent)) == ['MARS_database']


@pytest.mark.parametrize('where', ['cwd', 'cwd_parent', 'data_dir', 'inside_data_dir', 'data_parent', 'info_dir'])
def test_output_dir_overlapping_the_current_directory_or_the_inputs_is_refused(mars, tmp_path, tmp_path_factory,
                                                                              monkeypatch, where):
    data_dir, info_dir, out = mars
    work = tmp_path_factory.mktemp('shell') / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    target = {'cwd': '.', 'cwd_parent': str(work.parent), 'data_dir': str(data_dir),
              'inside_data_dir': str(data_dir / 'db'), 'data_parent': str(data_dir.parent),
              'info_dir': str(info_dir)}[where]
    before = sorted(os.listdir(tmp_path)), sorted(os.listdir(work.parent))
    with pytest.raises(DataError) as e:
        build(data_dir, info_dir, target)
    message = str(e.value)
    assert '\n' not in message and message.startswith(f'{target}: ')
    if where in ('cwd', 'cwd_parent'):
        assert 'is the current directory or one of its parents' in message
    else:
        assert 'input directory' in message
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(work.parent))) == before and os.getcwd() == str(work)
    assert not [n for n in os.listdir(data_dir) if n.startswith('.')]


def test_cli_output_dir_dot_is_refused_in_one_line(mars, tmp_path):
    data_dir, info_dir, _ = mars
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'create_MARS_database.py'), '--data_dir', str(data_dir),
                        '--info_dir', str(info_dir), '--output_dir', '.', '--no_progress'],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ''
    assert r.stderr.startswith('error: .: is the current directory or one of its parents') and r.stderr.count('\n') == 1


def test_sigterm_exits_cleanly_with_143(tmp_path):
    # the builder blocks in its scan (a FIFO where a .mat is read) and gets SIGTERM: one line, status 143,
    # no partial directory left
    code = ('import os, signal, sys, time\n'
            'from util.cli.options import run_main\n'
            'import util.data.datasets.common as c\n'
            'def main(argv):\n'
            '    with c.replacing_directory(sys.argv[1]) as root:\n'
            '        open(os.path.join(root, "x"), "w").close()\n'
            '        os.kill(os.getpid(), signal.SIGTERM)\n'
            '        time.sleep(30)\n'
            'sys.exit(run_main(main))\n')
    out = tmp_path / 'db'
    r = subprocess.run([sys.executable, '-c', code, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (143, '', 'error: terminated\n')
    assert os.listdir(tmp_path) == []


def test_leftovers_of_a_build_still_running_are_left_alone(mars):
    data_dir, info_dir, out = mars
    out.parent.mkdir(parents=True)
    with subprocess.Popen(['sleep', '60']) as other:
        try:
            running = out.parent / f'.MARS_database.partial-{other.pid}-0123abcd'
            dead = out.parent / '.MARS_database.partial-999999999-0123abcd'
            running.mkdir()
            dead.mkdir()
            build(data_dir, info_dir, out)
            assert sorted(os.listdir(out.parent)) == [running.name, 'MARS_database']
        finally:
            other.kill()
