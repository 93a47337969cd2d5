"""Training curves and CMC curves.

* :func:`read_metrics_csv` reads the ``metrics.csv`` that training writes in ``--ckpt`` (one row per epoch,
  validation columns empty when not run).
* :func:`plot_training_curves` draws its losses, learning rate and rank-1 / mAP into one PNG
  (``python -m util.visualize curves``; also at the end of every training run).
* :func:`plot_cmc` draws the CMC curve(s) of an evaluation (``evaluate.py --cmc_plot``).

Figures are drawn with matplotlib's object-oriented API (no pyplot, so no GUI backend is touched).
"""
import os

import numpy as np

from util.errors import DataError

LOSS_COLUMNS = ('trip_loss', 'frame_id_loss', 'track_id_loss', 'total_loss')
LOSS_LABELS = {'trip_loss': 'triplet', 'frame_id_loss': 'frame ID', 'track_id_loss': 'track ID',
               'total_loss': 'total'}
CURVES_FIGSIZE = (14.0, 4.2)  # inches; saved at CURVES_DPI without tight cropping, so 1400 x 420 pixels
CURVES_DPI = 100


def read_metrics_csv(path):
    """Columns of a metrics.csv as float arrays (NaN where a cell is empty); 'epoch' is required."""
    import pandas as pd

    if not os.path.isfile(path):
        raise DataError(f'{path}: metrics file not found')
    try:
        table = pd.read_csv(path, index_col=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        table = pd.DataFrame()
    except pd.errors.ParserError as err:
        raise DataError(f'{path}: not a CSV file ({err})') from None
    if 'epoch' not in table.columns:
        raise DataError(f'{path}: expected a CSV header with an "epoch" column')
    columns = {}
    for name in table.columns:
        values = pd.to_numeric(table[name], errors='coerce')
        bad = values.isna() & table[name].notna()  # a cell that is there but is no number
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise DataError(f'{path}: line {row + 2}, column {name}: expected a number, '
                            f'got {table[name].iloc[row]!r}')
        columns[name] = values.to_numpy(dtype=np.float64)
    return columns


def _style_axes(ax, title, xlabel='epoch'):
    ax.set_title(title, fontsize=11, loc='left', fontweight='bold')
    ax.set_xlabel(xlabel)
    ax.grid(True, color='0.9', linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ('top', 'right'):
        ax.spines[side].set_visible(False)


def _no_data(ax, text):
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha='center', va='center', color='0.45', fontsize=10)


def _plot_series(ax, epoch, values, **style):
    """Plot the non-empty cells of one column; markers when the points are few enough to see."""
    keep = ~np.isnan(values)
    if not keep.any():
        return False
    marker = 'o' if keep.sum() <= 40 else None
    ax.plot(epoch[keep], values[keep], marker=marker, markersize=3.5, **style)
    return True


def plot_training_curves(metrics_csv, out_png=None):
    """Draw losses, learning rate and validation scores per epoch into one PNG; returns its path.

    ``out_png`` defaults to ``training_curves.png`` beside the CSV. Empty columns (a loss that is not used,
    epochs without validation) are left out; a panel with nothing to show says so.
    """
    from matplotlib.figure import Figure

    columns = read_metrics_csv(metrics_csv)
    if out_png is None:
        out_png = os.path.join(os.path.dirname(os.path.abspath(metrics_csv)), 'training_curves.png')
    nan = np.full(len(columns['epoch']), np.nan)
    col = lambda name: columns.get(name, nan)  # noqa: E731 (missing column = all empty)
    epoch = columns['epoch']

    fig = Figure(figsize=CURVES_FIGSIZE, dpi=CURVES_DPI)
    ax_loss, ax_lr, ax_score = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.985, bottom=0.14, top=0.84, wspace=0.22)

    _style_axes(ax_loss, 'Training loss (epoch mean)')
    colours = {'trip_loss': 'tab:blue', 'frame_id_loss': 'tab:orange', 'track_id_loss': 'tab:green',
               'total_loss': 'black'}
    drawn = [_plot_series(ax_loss, epoch, col(name), color=colours[name], label=LOSS_LABELS[name],
                          linewidth=2.0 if name == 'total_loss' else 1.4) for name in LOSS_COLUMNS]
    if any(drawn):
        ax_loss.legend(frameon=False, fontsize=9)
    else:
        _no_data(ax_loss, 'no loss values')

    _style_axes(ax_lr, 'Learning rate')
    lr = col('lr')
    if _plot_series(ax_lr, epoch, lr, color='tab:purple', linewidth=1.6, drawstyle='steps-post'):
        if np.nanmin(lr) > 0:
            from matplotlib.ticker import FuncFormatter, NullFormatter
            ax_lr.set_yscale('log')
            # plain '1e-04' labels: the default ones go through mathtext
            ax_lr.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:.0e}'))
            ax_lr.yaxis.set_minor_formatter(NullFormatter())
    else:
        _no_data(ax_lr, 'no learning-rate values')

    _style_axes(ax_score, 'Validation (test split)')
    rank1, mAP = 100 * col('rank1'), 100 * col('mAP')
    drawn = [_plot_series(ax_score, epoch, rank1, color='tab:red', linewidth=1.8, label='rank-1'),
             _plot_series(ax_score, epoch, mAP, color='tab:blue', linewidth=1.8, label='mAP')]
    if any(drawn):
        ax_score.set_ylabel('%')
        ax_score.legend(frameon=False, fontsize=9, loc='lower right')
        if drawn[0]:
            best = int(np.nanargmax(rank1))
            late = epoch[best] > 0.5 * np.nanmax(epoch)  # keep the label inside the axes
            ax_score.plot(epoch[best], rank1[best], marker='*', markersize=11, color='tab:red', zorder=3)
            ax_score.annotate(f'best rank-1 {rank1[best]:.1f}% (epoch {epoch[best]:g})',
                              xy=(epoch[best], rank1[best]), xytext=(-6 if late else 6, 9),
                              textcoords='offset points', ha='right' if late else 'left', fontsize=8.5,
                              color='tab:red')
            ax_score.set_ylim(top=min(105, max(np.nanmax(rank1), np.nanmax(np.nan_to_num(mAP))) + 10))
    else:
        _no_data(ax_score, 'no validation epochs yet')

    if len(epoch):
        for ax in (ax_loss, ax_lr, ax_score):
            ax.set_xlim(min(0, np.nanmin(epoch)), np.nanmax(epoch) + max(1, 0.02 * np.nanmax(epoch)))
    title = f'Training curves: {os.path.basename(os.path.dirname(os.path.abspath(metrics_csv)))}'
    subtitle = f'{len(epoch)} epochs'
    seconds = col('seconds')
    if not np.isnan(seconds).all():
        subtitle += f', {np.nansum(seconds) / 60:.1f} min'
    fig.suptitle(f'{title}   ({subtitle})', x=0.05, ha='left', fontsize=12)
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=CURVES_DPI)
    return out_png


def plot_cmc(path, curves, max_rank=50):
    """CMC curves {label: MarsResult} to a PNG (ranks 1..max_rank, percent), written atomically."""
    from matplotlib.figure import Figure

    from util.io import atomic_save

    fig = Figure(figsize=(6, 4.2), dpi=120)
    ax = fig.add_subplot()
    for label, result in curves.items():
        cmc = 100 * np.asarray(result.cmc[:max_rank])
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(ranks, cmc, marker='o', markersize=2.5, linewidth=1.4,
                label=f'{label} (rank-1 {cmc[0]:.2f}, mAP {100 * result.mAP:.2f})')
    ax.set_xlabel('rank')
    ax.set_ylabel('matching rate (%)')
    ax.set_title('CMC')
    ax.set_xlim(1, max(2, min(max_rank, max(len(r.cmc) for r in curves.values()))))
    ax.grid(True, alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    atomic_save(fig, path, write=lambda obj, f: obj.savefig(f, format='png'))
