"""A training run's --ckpt directory: its files, and the run's ownership of it.

A run holds the directory's lock for its whole length, and refuses a directory holding another run unless
told to resume it or to overwrite it. Everything it writes there is written atomically or, for the log, cut
back on resume to what the resumed epoch had written, so a kill at any point loses at most the epoch in
progress.
"""
import os

from util.errors import OutputError
from util.io import check_writable, remove_stale_temporaries, write_text
from util.train.outputs import reset_metrics
from util.train.run import LOCK_NAME, RUN_OUTPUTS, RunLock, existing_run_files


class RunDir:
    """The --ckpt directory `path` with the log file `log_name` (relative to it) of one run; resume_path: the
    last.pth it continues (None: a new run); overwrite: replace a previous run's files."""

    def __init__(self, path, log_name='loss.txt', resume_path=None, overwrite=False):
        self.path = os.fspath(path)
        self.log_name = log_name
        self.log_file = os.path.join(self.path, log_name)
        self.metrics_file = os.path.join(self.path, 'metrics.csv')
        self.last_file = os.path.join(self.path, 'last.pth')
        self.best_file = os.path.join(self.path, 'ckpt_best.pth')
        self.resume_path = resume_path
        self.overwrite = overwrite
        self.lock = None

    def claim(self):
        """Before any work: the directory and the log writable, locked for this run, cleared of the
        temporaries of a killed writer, and holding no other run."""
        check_writable(self.path, '--ckpt', directory=True)
        check_writable(self.log_file, '--log_path')
        self.lock = RunLock(self.path).acquire()
        remove_stale_temporaries(self.path, RUN_OUTPUTS + (LOCK_NAME,))
        remove_stale_temporaries(os.path.dirname(os.path.abspath(self.log_file)), (os.path.basename(self.log_file),))
        found = existing_run_files(self.path)
        if found and not self.resuming_here() and not self.overwrite:
            raise OutputError(_occupied_message(self.path, found))
        return self

    def release(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def resuming_here(self):
        """Whether the resumed last.pth lies in this directory."""
        return self.resume_path is not None and os.path.samefile(
            os.path.dirname(os.path.abspath(self.resume_path)), self.path)

    def prepare(self, resumed_log_name=None, resumed_log_size=None, start_epoch=0):
        """Once everything is built (main process): with overwrite the previous run's files removed, and the
        log and metrics.csv as the resumed epoch left them (or new ones). resumed_log_name / _size: the log
        name and size the resume state recorded (None for a new run)."""
        if self.overwrite:
            for name in RUN_OUTPUTS:
                path = os.path.join(self.path, name)
                if os.path.exists(path):
                    os.remove(path)
        if self.resume_path is None:
            write_text(self.log_file, '')  # a new run starts a new log
        elif self.resuming_here() and resumed_log_name == self.log_name:
            # an interrupted epoch may have written its log lines before dying: cut back to the resumed epoch
            if resumed_log_size is not None and file_size(self.log_file) > resumed_log_size:
                try:
                    os.truncate(self.log_file, resumed_log_size)
                except OSError as err:
                    raise OutputError(f'cannot write {self.log_file}: {err.strerror or err}') from None
        elif not os.path.exists(self.log_file):
            write_text(self.log_file, '')
        reset_metrics(self.metrics_file, start_epoch)


def file_size(path):
    return os.path.getsize(path) if os.path.exists(path) else 0


def _occupied_message(ckpt, found):
    """Why --ckpt is refused, with advice that works: --resume only where a last.pth is there to resume."""
    if 'last.pth' in found:
        return (f'--ckpt {ckpt} already holds a training run ({", ".join(found)}): pass --resume {ckpt} to '
                f'continue it, another --ckpt, or --overwrite to replace it')
    return (f'--ckpt {ckpt} already holds a training run that stopped before it saved its first last.pth '
            f'({", ".join(found)}), so it cannot be resumed: pass --overwrite to start it again, or another --ckpt')
