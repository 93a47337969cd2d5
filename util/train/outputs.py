"""What a training run writes, one small object per output, called by the Trainer on the main process.

Every output has three methods (the base class's do nothing):
  on_validation(epoch, result, pending, best)  after a validation: `epoch` epochs done, `result` a MarsResult,
                                               `pending` the per-epoch loss strings since the last one,
                                               `best` whether its rank-1 is the best so far (>=)
  on_epoch(epoch, means, lr, result, seconds, best_rank1, pending)
                                               after each epoch: the epoch-mean of each loss, the rate it
                                               trained at, the validation result (None if not validated)
  on_end()                                     after the last epoch
"""
import csv
import io
import os

from models import original_state_dict
from models.checkpoint import save_best_weights
from util.errors import OutputError
from util.io import write_text
from util.train.run import save_resume_state

METRICS_COLUMNS = ('epoch', 'trip_loss', 'frame_id_loss', 'track_id_loss', 'total_loss', 'lr',
                   'rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'seconds')


class Output:
    def on_validation(self, epoch, result, pending, best):
        pass

    def on_epoch(self, epoch, means, lr, result, seconds, best_rank1, pending):
        pass

    def on_end(self):
        pass


def metrics_values(epoch, means, lr, result, seconds):
    """The numbers of one metrics.csv row: column -> float (columns without a value left out)."""
    values = {'epoch': epoch, **means, 'total_loss': sum(means.values()), 'lr': lr}
    if result is not None:
        values.update({f'rank{k}': float(result.rank(k)) for k in (1, 5, 10, 20) if k <= len(result.cmc)})
        values['mAP'] = float(result.mAP)
    values['seconds'] = seconds
    return values


# -- the original's log file -------------------------------------------------------------------------------------

class LogFile(Output):
    """The original release's log lines after each validation: rank-1 and mAP, the loss strings of the
    epochs since the last one, and 'best' when the weights were kept."""

    def __init__(self, path, frame_id_loss, track_id_loss):
        self.path, self.frame_id_loss, self.track_id_loss = path, frame_id_loss, track_id_loss

    def on_validation(self, epoch, result, pending, best):
        lines = [f'epoch {epoch}, rank-1 {float(result.rank(1)):f} , mAP {float(result.mAP):f}']
        if self.frame_id_loss:
            lines.append(f"Frame ID loss : {pending['frame_id_loss']!r}")
        if self.track_id_loss:
            lines.append(f"Track ID loss : {pending['track_id_loss']!r}")
        lines.append(f"Trip Loss : {pending['trip_loss']!r}")
        if best:
            lines.append('best')
        write_text(self.path, ''.join(line + '\n' for line in lines), append=True)


# -- metrics.csv --------------------------------------------------------------------------------------------------

def _csv_lines(rows):
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def write_metrics_row(path, row):
    header = [] if os.path.exists(path) else [METRICS_COLUMNS]
    write_text(path, _csv_lines(header + [[row.get(c, '') for c in METRICS_COLUMNS]]), append=True)


def reset_metrics(path, keep_epochs):
    """Start metrics.csv afresh (atomically), keeping the rows of the first `keep_epochs` epochs (on
    --resume, rows of epochs after the resumed state were written by the interrupted run and will be
    written again)."""
    rows = []
    if keep_epochs > 0 and os.path.exists(path):
        with open(path, newline='') as f:
            rows = [r for r in csv.DictReader(f) if r.get('epoch', '').isdigit() and int(r['epoch']) <= keep_epochs]
    write_text(path, _csv_lines([METRICS_COLUMNS] + [[r.get(c, '') for c in METRICS_COLUMNS] for r in rows]))


class MetricsCsv(Output):
    """One metrics.csv row per epoch: losses and total to 6 decimals, lr to 6 significant digits, the
    validation scores (empty when not validated), seconds to 0.1."""

    def __init__(self, path):
        self.path = path

    def on_epoch(self, epoch, means, lr, result, seconds, best_rank1, pending):
        values = metrics_values(epoch, means, lr, result, seconds)
        row = {k: format(v, '.6f') for k, v in values.items()}
        row.update(epoch=epoch, lr=format(lr, '.6g'), seconds=format(seconds, '.1f'))
        write_metrics_row(self.path, row)


# -- checkpoints --------------------------------------------------------------------------------------------------

class BestWeights(Output):
    """ckpt_best.pth (original key names) and ckpt_best.json (the run configuration) when rank-1 is the best."""

    def __init__(self, path, net, run_config):
        self.path, self.net, self.run_config = path, net, run_config

    def on_validation(self, epoch, result, pending, best):
        if best:
            save_best_weights(self.path, original_state_dict(self.net), self.run_config)


class LastState(Output):
    """last.pth after every epoch: everything --resume needs to continue exactly (util.train.run), with the
    size of the log file once this epoch's lines are in it and the run's flags (a dict)."""

    def __init__(self, path, net, optimizer, scheduler, scaler, run_config, log_file, flags):
        self.path, self.net, self.run_config, self.log_file, self.flags = path, net, run_config, log_file, flags
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler

    def on_epoch(self, epoch, means, lr, result, seconds, best_rank1, pending):
        size = os.path.getsize(self.log_file) if os.path.exists(self.log_file) else 0
        save_resume_state(self.path, model_state=original_state_dict(self.net), config=self.run_config,
                          optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
                          epoch=epoch, best_rank1=best_rank1, pending=pending, log_size=size, flags=self.flags)


# -- pictures and TensorBoard -------------------------------------------------------------------------------------

class TrainingCurves(Output):
    """training_curves.png beside metrics.csv at the end of the run (util.pictures.curves)."""

    def __init__(self, metrics_file, log=print):
        self.metrics_file, self.log = metrics_file, log

    def on_end(self):
        from util.pictures.curves import plot_training_curves  # matplotlib is only needed here
        try:
            self.log(f'Training curves: {plot_training_curves(self.metrics_file)}')
        except OSError as err:
            raise OutputError(f'cannot write the training curves beside {self.metrics_file}: '
                              f'{err.strerror or err}') from None


class TensorBoardOutput(Output):
    """The numbers of each metrics.csv row as TensorBoard scalars (tag = column, step = epoch) in
    `directory`. A resumed run (start_epoch > 0) drops the events an interrupted run wrote after it."""

    def __init__(self, directory, start_epoch=0):
        from torch.utils.tensorboard import SummaryWriter  # tensorboard is only needed here
        self.writer = SummaryWriter(os.fspath(directory), purge_step=start_epoch + 1 if start_epoch else None)

    def on_epoch(self, epoch, means, lr, result, seconds, best_rank1, pending):
        for name, value in metrics_values(epoch, means, lr, result, seconds).items():
            if name != 'epoch':
                self.writer.add_scalar(name, value, epoch)
        self.writer.flush()

    def on_end(self):
        self.writer.close()
