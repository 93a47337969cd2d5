"""Pictures of a model and its training: curves, ranked retrieval results and non-local attention maps.

Three entry points, each a library function and a sub-command of ``python -m util.visualize``:

* ``curves``: :func:`plot_training_curves` draws the losses, the learning rate and rank-1 / mAP of a
  ``metrics.csv`` written during training (one row per epoch, validation columns empty when not run).
* ``ranks``: :func:`save_ranked_results` draws, for a few queries, the query clip and its ranked gallery,
  using the metric's distance (negative cosine similarity) and its junk rule, plus an ``index.html`` page.
  It needs only saved features and the database files, no model.
* ``attention``: :func:`attention_figure` runs one clip through a non-local model and shows, for one query
  position, the softmax weights of every non-local block over all frames of the clip.

Figures are drawn with matplotlib's object-oriented API (no pyplot, so no GUI backend is touched) and the
ranked lists with PIL, whose pixel layout is exact (see :func:`ranked_image_size`).
"""
import argparse
import csv
import html
import math
import os
import sys
import textwrap
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from util.errors import DataError, ModelConfigError, ReIDError

# --------------------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------------------

LOSS_COLUMNS = ('trip_loss', 'frame_id_loss', 'track_id_loss', 'total_loss')
LOSS_LABELS = {'trip_loss': 'triplet', 'frame_id_loss': 'frame ID', 'track_id_loss': 'track ID',
               'total_loss': 'total'}
CURVES_FIGSIZE = (14.0, 4.2)  # inches; saved at CURVES_DPI without tight cropping, so 1400 x 420 pixels
CURVES_DPI = 100


def read_metrics_csv(path):
    """Columns of a metrics.csv as float arrays (NaN where a cell is empty); 'epoch' is required."""
    if not os.path.isfile(path):
        raise DataError(f'{path}: metrics file not found')
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or 'epoch' not in reader.fieldnames:
            raise DataError(f'{path}: expected a CSV header with an "epoch" column')
        columns = {name: [] for name in reader.fieldnames}
        for line, row in enumerate(reader, start=2):
            for name in reader.fieldnames:
                cell = (row.get(name) or '').strip()
                try:
                    columns[name].append(float(cell) if cell else math.nan)
                except ValueError:
                    raise DataError(f'{path}: line {line}, column {name}: expected a number, got {cell!r}')
    return {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}


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


# --------------------------------------------------------------------------------------------------------
# Ranked retrieval results
# --------------------------------------------------------------------------------------------------------

# Border colours of the tiles (RGB). Junk = pid -1, or the query's own pid seen by its own camera: the
# metric skips these items, so they are drawn but take no rank.
GOOD_COLOUR = (34, 160, 60)
WRONG_COLOUR = (215, 40, 40)
JUNK_COLOUR = (150, 150, 150)
QUERY_COLOUR = (40, 100, 220)
KIND_COLOURS = {'good': GOOD_COLOUR, 'wrong': WRONG_COLOUR, 'junk': JUNK_COLOUR}

# Pixel layout of a ranked-results image (see ranked_image_size). A "strip" is a header line of text,
# one row of bordered tiles and a label band under the tiles.
MARGIN = 10
BORDER = 4
GAP = 6
HEADER_H = 22
LABEL_H = 28
STRIP_GAP = 12
BACKGROUND = (255, 255, 255)


def ranked_image_size(S, n_tiles, height, width, all_frames=False):
    """(width, height) in pixels of one ranked-results image.

    Default layout: a query strip of S frames over a gallery strip of ``n_tiles`` tiles. With
    ``all_frames``, one strip of S frames per gallery tracklet under the query strip.
    """
    strips, cols = (1 + n_tiles, S) if all_frames else (2, max(S, n_tiles))
    strip_h = HEADER_H + height + 2 * BORDER + LABEL_H
    return (2 * MARGIN + cols * (width + 2 * BORDER) + (cols - 1) * GAP,
            2 * MARGIN + strips * strip_h + (strips - 1) * STRIP_GAP)


def _font(size):
    """DejaVu Sans from matplotlib's bundled fonts (always present), else PIL's default font."""
    try:
        from matplotlib import font_manager
        return ImageFont.truetype(font_manager.findfont('DejaVu Sans'), size)
    except (ImportError, OSError, ValueError):
        return ImageFont.load_default()


def cosine_ranking(features, query_rows, gallery_idx=None):
    """Gallery rows per query, in the order the metric ranks them: (Q, G) int64 rows of ``features``.

    The gallery is ``gallery_idx`` or every row of ``features`` (the query itself included), sorted by the
    metric's negative cosine similarity (util.metrics.cosine_distance) with a stable sort: ties keep gallery
    order.
    """
    from util.metrics import cosine_distance
    order = np.argsort(cosine_distance(np.asarray(features), np.asarray(query_rows), gallery_idx), axis=1,
                       kind='stable')
    return order if gallery_idx is None else np.asarray(gallery_idx, dtype=np.int64)[order]


def match_kinds(labels, cams, query_row):
    """'good' / 'wrong' / 'junk' for every row against one query row (the metric's rule,
    util.metrics.match_masks)."""
    from util.metrics import match_masks
    labels, cams = np.asarray(labels), np.asarray(cams)
    good, junk = (m[0] for m in match_masks(labels[query_row:query_row + 1], cams[query_row:query_row + 1],
                                            labels, cams))
    kinds = np.where(good, 'good', 'wrong').astype(object)
    kinds[junk] = 'junk'
    return kinds


def _shown_items(order, kinds, topk):
    """Head of a ranked list holding ``topk`` non-junk items, junk interleaved where it ranks.

    At most 2 * topk tiles, so a query with many junk neighbours still fits a row. Returns the gallery rows
    and each one's rank among non-junk items (0 for junk).
    """
    ranked_kinds = kinds[order]
    nonjunk_rank = np.cumsum(ranked_kinds != 'junk')
    stop = np.searchsorted(nonjunk_rank, topk) + 1  # position of the topk-th non-junk item, plus one
    stop = min(stop, 2 * topk, len(order))
    rows = order[:stop]
    ranks = np.where(ranked_kinds[:stop] == 'junk', 0, nonjunk_rank[:stop])
    return rows, ranks


def _first_match_rank(order, kinds):
    """CMC rank (1-based, junk skipped) of the first correct match, or None when there is none."""
    ranked = kinds[order]
    ranked = ranked[ranked != 'junk']
    hits = np.flatnonzero(ranked == 'good')
    return int(hits[0]) + 1 if len(hits) else None


@dataclass
class RankedQuery:
    """One drawn query: its test row, identity, camera, image file, and how the metric sees it."""
    query_row: int
    pid: int
    cam: int
    image: str
    rank1_correct: bool
    first_match_rank: object  # int, or None when the gallery has no correct match


class _FrameCache:
    """Frames loaded once per call (the same gallery tracklets recur across queries)."""

    def __init__(self, paths, height, width):
        from util.data import load_frame
        self.paths, self.height, self.width, self.load_frame = paths, height, width, load_frame
        self.cache = {}

    def __call__(self, frame):
        frame = int(frame)
        if frame not in self.cache:
            t = self.load_frame(self.paths[frame], self.height, self.width)  # uint8 (3, H, W)
            self.cache[frame] = Image.fromarray(t.permute(1, 2, 0).numpy())
        return self.cache[frame]


class _Canvas:
    """A ranked-results image: strips of bordered tiles at the positions of :func:`ranked_image_size`."""

    def __init__(self, size, height, width, fonts):
        self.image = Image.new('RGB', size, BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)
        self.header_font, self.small_font = fonts
        self.tile_w, self.tile_h = width + 2 * BORDER, height + 2 * BORDER
        self.strip_h = HEADER_H + self.tile_h + LABEL_H

    def strip(self, s, header, colour, images, tile_colours, labels):
        """Strip ``s``: a header line, then one tile per image with up to two label lines under it."""
        y = MARGIN + s * (self.strip_h + STRIP_GAP)
        self.draw.text((MARGIN, y + 3), header, font=self.header_font, fill=colour)
        y += HEADER_H
        for c, (image, tile_colour, lines) in enumerate(zip(images, tile_colours, labels)):
            x = MARGIN + c * (self.tile_w + GAP)
            self.draw.rectangle([x, y, x + self.tile_w - 1, y + self.tile_h - 1], fill=tile_colour)
            self.image.paste(image, (x + BORDER, y + BORDER))
            for k, text in enumerate(lines):
                text_w = self.draw.textlength(text, font=self.small_font)
                self.draw.text((x + (self.tile_w - text_w) / 2, y + self.tile_h + 1 + 13 * k), text,
                               font=self.small_font, fill=tile_colour if tile_colour != QUERY_COLOUR else (90, 90, 90))


def _draw_ranked_image(path, query, items, info, S, height, width, all_frames, load, fonts):
    """One query's image. ``query`` = (row, test frames, first correct rank); ``items`` = (gallery row, kind,
    non-junk rank, test frames) in ranked order."""
    q_row, q_frames, first_match = query
    canvas = _Canvas(ranked_image_size(S, len(items), height, width, all_frames), height, width, fonts)
    offsets = lambda row, frames: [(f'f{int(f) - int(info[row, 0])}',) for f in frames]  # noqa: E731
    verdict = ('no correct match' if first_match is None else
               'rank-1 correct' if first_match == 1 else f'rank-1 wrong, first match #{first_match}')
    canvas.strip(0, f'Query track {q_row}, id {info[q_row, 2]}, cam {info[q_row, 3]}: {verdict}', QUERY_COLOUR,
                 [load(f) for f in q_frames], [QUERY_COLOUR] * S, offsets(q_row, q_frames))

    def caption(row, kind, rank):
        first = f'#{rank}' if kind != 'junk' else 'junk: self' if row == q_row else 'junk'
        return first, f'id {info[row, 2]} c{info[row, 3]}'

    colours = [KIND_COLOURS[kind] for _, kind, _, _ in items]
    if not all_frames:
        canvas.strip(1, 'Ranked gallery: green correct, red wrong, grey junk (skipped)', (60, 60, 60),
                     [load(frames[0]) for *_, frames in items], colours,
                     [caption(row, kind, rank) for row, kind, rank, _ in items])
    else:
        for s, ((row, kind, rank, frames), colour) in enumerate(zip(items, colours), start=1):
            first, second = caption(row, kind, rank)
            canvas.strip(s, f'{first}: track {row}, {second}', colour, [load(f) for f in frames], [colour] * S,
                         offsets(row, frames))
    canvas.image.save(path, optimize=True)


def _numpy(x):
    """numpy view of an array or a (CPU / GPU, any float precision) tensor."""
    if hasattr(x, 'detach'):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def _check_ranked_inputs(features, labels, cams, query_idx, paths, info, num_queries, topk):
    n = len(features)
    if np.ndim(features) != 2:
        raise DataError(f'features: expected an (N, D) array, got shape {np.shape(features)}')
    if len(labels) != n or len(cams) != n or len(info) != n:
        raise DataError(f'features, labels, cams and test info must have one row per tracklet; got '
                        f'{n}, {len(labels)}, {len(cams)} and {len(info)}')
    if len(query_idx) and (query_idx.min() < 0 or query_idx.max() >= n):
        raise DataError(f'query_idx: indices must lie in [0, {n}), got range [{query_idx.min()}, {query_idx.max()}]')
    if len(info) and info[:, 1].max() >= len(paths):
        raise DataError(f'test info points at frame {info[:, 1].max()} but the path list has {len(paths)} frames')
    if num_queries < 1 or topk < 1:
        raise ReIDError(f'num_queries and topk must be >= 1, got {num_queries} and {topk}')


def save_ranked_results(out_dir, features, labels, cams, query_idx, paths, info, S, num_queries=10,
                        topk=10, height=128, width=64, all_frames=False, queries=None, gallery_idx=None):
    """Draw the ranked gallery of some queries into ``out_dir`` (one PNG each + index.html).

    Args:
        features (N, D), labels (N,), cams (N,): one row per test tracklet, as the metric sees them
            (numpy arrays or tensors).
        query_idx (Q,): 0-based test rows of the queries. paths: frame paths; info (N, 4): the test info
            rows [start, end, pid, cam] (0-based, inclusive), used to find each tracklet's frames.
        S: frames per clip; the query row shows its S test frames (first frame of each chunk).
        num_queries: how many queries, spread evenly over ``query_idx`` (``queries`` overrides it with
            positions in ``query_idx``). topk: non-junk gallery items shown per query.
        height, width: size of each drawn frame. all_frames: show the S test frames of every gallery
            tracklet (one strip each) instead of its first one.
        gallery_idx (G,): the test rows that form the gallery (gallery_IDX.npy); None: every test tracklet.

    The gallery is ranked by negative cosine similarity, exactly as the metric.
    Borders: green = same identity seen by another camera (a correct match), red = another identity,
    grey = junk (pid -1, or the query identity in the query camera, the query itself included), which the
    metric skips: junk tiles are shown where they rank but carry no rank number.
    Returns the list of :class:`RankedQuery` drawn.
    """
    from util.data import test_frame_indices

    features, labels, cams, query_idx, info = (_numpy(a) for a in (features, labels, cams, query_idx, info))
    labels, cams, query_idx = labels.reshape(-1), cams.reshape(-1), query_idx.astype(np.int64).reshape(-1)
    info = info.astype(np.int64)
    _check_ranked_inputs(features, labels, cams, query_idx, paths, info, num_queries, topk)
    if queries is None:
        queries = np.unique(np.linspace(0, len(query_idx) - 1, min(num_queries, len(query_idx))).round())
    queries = np.asarray(queries, dtype=np.int64)
    if len(queries) and (queries.min() < 0 or queries.max() >= len(query_idx)):
        raise ReIDError(f'queries: positions must lie in [0, {len(query_idx)})')
    os.makedirs(out_dir, exist_ok=True)

    q_rows = query_idx[queries]
    if gallery_idx is not None:
        gallery_idx = _numpy(gallery_idx).astype(np.int64).reshape(-1)
        if len(gallery_idx) == 0 or gallery_idx.min() < 0 or gallery_idx.max() >= len(features):
            raise DataError(f'gallery_idx: expected 0-based rows in [0, {len(features)})')
    orders = cosine_ranking(features, q_rows, gallery_idx)
    frames = test_frame_indices(info[:, 0], info[:, 1], S)  # (N, S) test frames of every tracklet
    load = _FrameCache(paths, height, width)
    fonts = (_font(13), _font(11))
    drawn = []
    for n, (q_row, order) in enumerate(zip(q_rows, orders)):
        kinds = match_kinds(labels, cams, q_row)
        rows, ranks = _shown_items(order, kinds, topk)
        items = [(int(r), kinds[r], int(k), frames[r]) for r, k in zip(rows, ranks)]
        name = f'query{n:03d}_track{q_row}.png'
        first = _first_match_rank(order, kinds)
        _draw_ranked_image(os.path.join(out_dir, name), (q_row, frames[q_row], first), items, info, S, height,
                           width, all_frames, load, fonts)
        drawn.append(RankedQuery(int(q_row), int(labels[q_row]), int(cams[q_row]), name, first == 1, first))
    _write_index(os.path.join(out_dir, 'index.html'), drawn, topk)
    return drawn


def _write_index(path, drawn, topk):
    correct = sum(q.rank1_correct for q in drawn)
    rows = []
    for n, q in enumerate(drawn):
        mark = ('<span class="ok">&#10003; correct</span>' if q.rank1_correct
                else '<span class="bad">&#10007; wrong</span>')
        first = '-' if q.first_match_rank is None else q.first_match_rank
        name = html.escape(q.image)
        rows.append(f'<tr><td>{n}</td><td>{q.query_row}</td><td>{q.pid}</td><td>{q.cam}</td><td>{mark}</td>'
                    f'<td>{first}</td><td><a href="{name}"><img src="{name}" loading="lazy"></a></td></tr>')
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Ranked results</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 6px 10px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: middle; }}
img {{ max-height: 260px; }}
.ok {{ color: rgb{GOOD_COLOUR}; font-weight: bold; }} .bad {{ color: rgb{WRONG_COLOUR}; font-weight: bold; }}
</style></head><body>
<h1>Ranked results</h1>
<p>Rank-1 correct for {correct} of {len(drawn)} queries shown (top {topk} non-junk gallery tracklets each).
Borders: green correct match (same identity, other camera), red wrong identity, grey junk (skipped by the
metric: id -1, or the query identity in the query camera, the query itself included).</p>
<table><tr><th>#</th><th>query tracklet</th><th>id</th><th>cam</th><th>rank-1</th><th>first correct rank</th>
<th>ranked list</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    with open(path, 'w') as f:
        f.write(page)


def load_features_npz(path):
    """features, labels, cams, query_idx, gallery_idx (None: every row) of a file written by
    ``evaluate.py --save_features``, read and checked by util.evaluation.load_features."""
    from util.evaluation import load_features
    saved = load_features(path)
    return saved['features'], saved['labels'], saved['cams'], saved['query_idx'], saved['gallery_idx']


def plot_cmc(path, curves, max_rank=50):
    """CMC curves {label: MarsResult} to a PNG (ranks 1..max_rank, percent), written atomically."""
    from matplotlib.figure import Figure
    from util.checkpoint import atomic_save

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


# --------------------------------------------------------------------------------------------------------
# Non-local attention maps
# --------------------------------------------------------------------------------------------------------

@dataclass
class AttentionMap:
    """Attention of one non-local block for the chosen query position.

    ``weights`` holds every softmax row of the block for the clip: (G, Nq, Nk), G groups of ``group_T``
    consecutive stage frames each (G = 1 when the block attends over the whole clip, T/2 for pairs).
    ``frame_maps`` (T_stage, key_h, key_w) spreads the chosen query's row over the key grid of every stage
    frame (zero outside its group); it sums to 1. A stage frame covers ``span`` input frames (temporal
    max pooling of the hierarchical models). Stripe keys have ``key_w == 1``.
    """
    name: str
    weights: object
    group: int
    group_T: int
    query: int
    query_cell: tuple  # (stage frame, row, col) of the query, row / col in the query grid
    query_grid: tuple  # (rows, cols) of the query grid per frame
    frame_maps: np.ndarray
    span: int
    stripes: bool


def block_attention(model, x):
    """Run ``x`` through ``model`` and return (name, block, block input, softmax weights) per non-local block.

    Blocks are listed in the order they run. ``x`` is the normalised input the model takes, e.g.
    (1, S, 3, H, W) for the non-local types.
    """
    import torch
    from models import non_local_blocks

    blocks = non_local_blocks(model)
    if not blocks:
        raise ModelConfigError(f'model {getattr(model, "model_type", type(model).__name__)} has no non-local '
                               f'blocks to visualise')
    captured = []

    def hook(name):
        def capture(module, inputs):
            captured.append((name, module, inputs[0].detach(), module.attention_weights(inputs[0]).detach()))
        return capture

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in blocks]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return captured


def _grids(block, h, w):
    """Per-frame (rows, cols) of the query and key positions of a block on an (h, w) feature map."""
    stripes = getattr(block, 'stripes', None)
    if stripes:
        return (stripes, 1), (stripes, 1)
    if getattr(block, 'subsample', False):  # phi and g max-pooled (1, 2, 2)
        return (h, w), (h // 2, w // 2)
    return (h, w), (h, w)


def _attention_map(name, block, x, weights, S, query_frame, query_pos, height, width):
    """Pick the query row of one block's weights and lay it out over the stage frames."""
    G, Nq, Nk = weights.shape
    _, _, T_in, h, w = x.shape
    T_stage = x.shape[0] * T_in  # one clip: every group is a run of consecutive stage frames
    if T_stage % G or S % T_stage:
        raise ModelConfigError(f'{name}: {G} attention groups do not tile {T_stage} frames of a {S}-frame clip')
    group_T, span = T_stage // G, S // T_stage
    (qh, qw), (kh, kw) = _grids(block, h, w)
    if (Nq, Nk) != (group_T * qh * qw, group_T * kh * kw):
        raise ModelConfigError(f'{name}: attention of shape {tuple(weights.shape)} does not match its '
                               f'{T_in}x{h}x{w} input')
    stripes = bool(getattr(block, 'stripes', None))

    t = query_frame // span  # stage frame of the query
    row, col = min(query_pos[0] * qh // height, qh - 1), min(query_pos[1] * qw // width, qw - 1)
    group, t_in_group = divmod(t, group_T)
    query = (t_in_group * qh + row) * qw + col  # positions ordered (frame, row, col)
    frame_maps = np.zeros((T_stage, kh, kw), dtype=np.float64)
    frame_maps[group * group_T:(group + 1) * group_T] = \
        weights[group, query].double().reshape(group_T, kh, kw).cpu().numpy()
    return AttentionMap(name, weights, group, group_T, query, (t, row, col), (qh, qw), frame_maps, span, stripes)


def query_attention(model, clip, query_frame=0, query_pos=None):
    """Attention of every non-local block for one query position of a clip.

    ``clip`` is the uint8 (S, 3, H, W) clip of a test tracklet; ``query_frame`` an input frame index and
    ``query_pos`` (y, x) a pixel of it (default: the centre). Returns a list of :class:`AttentionMap`.
    """
    import torch
    from util.data import normalize_clip

    if clip.dim() != 4 or clip.shape[1] != 3 or clip.dtype != torch.uint8:
        raise ReIDError(f'clip: expected a uint8 (S, 3, H, W) tensor, got {clip.dtype} {tuple(clip.shape)}')
    S, _, height, width = clip.shape
    if not 0 <= query_frame < S:
        raise ReIDError(f'query_frame must lie in [0, {S}), got {query_frame}')
    query_pos = (height // 2, width // 2) if query_pos is None else tuple(int(v) for v in query_pos)
    if not (0 <= query_pos[0] < height and 0 <= query_pos[1] < width):
        raise ReIDError(f'query_pos (y, x) must lie inside the {height}x{width} frame, got {query_pos}')
    device = next(model.parameters()).device
    x = normalize_clip(clip.unsqueeze(0), device=device)  # (1, S, 3, H, W)
    return [_attention_map(name, block, inp, w, S, query_frame, query_pos, height, width)
            for name, block, inp, w in block_attention(model, x)]


# figure layout, inches
ATT_CELL_W = 1.05    # one input frame column
ATT_TITLE_H = 0.28   # column titles above each row
ATT_LEFT = 1.9       # row labels
ATT_RIGHT = 0.95     # per-row maximum
ATT_TOP = 0.95       # figure title and legend
ATT_BOTTOM = 0.8     # colour bar
ATT_DPI = 100


def attention_figure_size(n_blocks, S, height, width):
    """(width, height) in inches of :func:`attention_figure`'s figure."""
    cell_h = ATT_CELL_W * height / width
    return (ATT_LEFT + S * ATT_CELL_W + ATT_RIGHT,
            ATT_TOP + n_blocks * (cell_h + ATT_TITLE_H) + ATT_BOTTOM)


def _short_name(name, stripes):
    """'features.backbone.NL_2.1' -> 'layer2, NL 2' ('stripe NL 2' for stripe blocks)."""
    parts = name.split('.')
    for i, p in enumerate(parts):
        if p.startswith('NL_') and p[3:].isdigit():
            index = parts[i + 1] if i + 1 < len(parts) and parts[i + 1].isdigit() else '0'
            return f'layer{p[3:]}, {"stripe " if stripes else ""}NL {int(index) + 1}'
    return name


def _mark_query(ax, m, query_pos, height, width):
    """Highlight the query frame and position: yellow spines, a dot (or the dashed stripe)."""
    from matplotlib.patches import Circle, Rectangle

    for spine in ax.spines.values():
        spine.set_color('#ffd400')
        spine.set_linewidth(2.5)
    if m.stripes:
        stripe_h = height / m.query_grid[0]
        ax.add_patch(Rectangle((0.5, m.query_cell[1] * stripe_h), width - 1, stripe_h, fill=False,
                               edgecolor='white', linewidth=1.6, linestyle='--'))
    else:
        ax.add_patch(Circle((query_pos[1], query_pos[0]), radius=max(2.0, width / 22), facecolor='white',
                            edgecolor='black', linewidth=1.0))


def _attention_row(fig, grid, r, m, frames, query_pos, cmap):
    """One block: every stage frame with the query's weights over it (colours relative to the row maximum)."""
    _, height, width, _ = frames.shape
    vmax = m.frame_maps.max()
    window = slice(m.group * m.group_T, (m.group + 1) * m.group_T)
    for t, heat in enumerate(m.frame_maps):
        ax = fig.add_subplot(grid[r, t * m.span:(t + 1) * m.span])  # a pooled frame spans its input frames
        inside = window.start <= t < window.stop
        first = t * m.span
        ax.imshow(frames[first], extent=(0, width, height, 0), alpha=1.0 if inside else 0.3)
        if inside:
            smooth = not m.stripes and heat.size >= 16
            ax.imshow(heat, extent=(0, width, height, 0), cmap=cmap, vmin=0, vmax=vmax, alpha=0.5,
                      interpolation='bilinear' if smooth else 'nearest')
        ax.set(xticks=[], yticks=[], xlim=(0, width), ylim=(height, 0))
        label = f'frame {first}' if m.span == 1 else f'frames {first}-{first + m.span - 1}'
        ax.set_title(label, fontsize=7.5, pad=2, color='black' if inside else '0.6')
        for spine in ax.spines.values():
            spine.set_color('0.8')
        if t == m.query_cell[0]:
            _mark_query(ax, m, query_pos, height, width)
    return vmax


def attention_figure(model, clip, query_frame=0, query_pos=None, title=None):
    """Heat maps of each non-local block's attention for one query position, one row per block.

    Every row shows the clip's frames with the weights of the query (marked on its frame: a dot, or the
    stripe for stripe blocks) over the keys of each frame; frames outside the block's temporal window
    (frame pairs) are dimmed, and frames merged by temporal max pooling share one wider cell showing the
    first of them. Colours are relative to the row's maximum, printed at its right.
    The figure measures :func:`attention_figure_size` inches at ATT_DPI.
    Returns (matplotlib Figure, list of :class:`AttentionMap`).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    maps = query_attention(model, clip, query_frame, query_pos)
    S, _, height, width = clip.shape
    query_pos = (height // 2, width // 2) if query_pos is None else tuple(int(v) for v in query_pos)
    frames = clip.permute(0, 2, 3, 1).cpu().numpy()  # (S, H, W, 3) uint8

    fig_w, fig_h = attention_figure_size(len(maps), S, height, width)
    fig = Figure(figsize=(fig_w, fig_h), dpi=ATT_DPI)
    grid = fig.add_gridspec(len(maps), S, left=ATT_LEFT / fig_w, right=1 - ATT_RIGHT / fig_w,
                            top=1 - ATT_TOP / fig_h, bottom=ATT_BOTTOM / fig_h, wspace=0.06,
                            hspace=ATT_TITLE_H / (ATT_CELL_W * height / width))
    cmap = 'jet'
    for r, m in enumerate(maps):
        vmax = _attention_row(fig, grid, r, m, frames, query_pos, cmap)
        box = grid[r, 0].get_position(fig)
        y = (box.y0 + box.y1) / 2
        window = 'all frames' if m.group_T * m.span == S else f'{m.group_T}-frame window'
        if m.span > 1:
            window += f'\n(frames max-pooled x{m.span})'
        fig.text((ATT_LEFT - 0.1) / fig_w, y, f'{_short_name(m.name, m.stripes)}\n{window}', fontsize=8.5,
                 ha='right', va='center')
        fig.text(1 - (ATT_RIGHT - 0.1) / fig_w, y, f'max\n{vmax:.3f}', fontsize=8, ha='left', va='center')

    heading = f'{title or "Non-local attention"}: query at frame {query_frame}, pixel (y={query_pos[0]}, ' \
              f'x={query_pos[1]})'
    fig.suptitle('\n'.join(textwrap.wrap(heading, int(fig_w * 11))), fontsize=11, y=1 - 0.15 / fig_h, va='top')
    legend = ('Yellow frame: query frame. Dot (stripe blocks: dashed stripe): query position. '
              'Dimmed frames lie outside the block\'s temporal window.')
    fig.text(0.5, 1 - 0.58 / fig_h, '\n'.join(textwrap.wrap(legend, int(fig_w * 14))), ha='center', va='top',
             fontsize=8, color='0.35')
    bar_w = min(3.0, S * ATT_CELL_W) / fig_w
    cax = fig.add_axes([(ATT_LEFT + S * ATT_CELL_W / 2) / fig_w - bar_w / 2, 0.42 / fig_h, bar_w, 0.12 / fig_h])
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=cax, orientation='horizontal')
    bar.set_label('attention weight / row maximum', fontsize=8, labelpad=2)
    bar.ax.tick_params(labelsize=7)
    return fig, maps


# --------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------

def _parser():
    parser = argparse.ArgumentParser(prog='python -m util.visualize', description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('curves', help='training curves from a metrics.csv')
    p.add_argument('--metrics', required=True, help='metrics.csv written in --ckpt during training')
    p.add_argument('--out', help='output PNG (default: training_curves.png beside the CSV)')

    p = sub.add_parser('ranks', help='ranked gallery of some queries from saved features')
    p.add_argument('--features', required=True, help='.npz written by evaluate.py --save_features')
    p.add_argument('--test_txt', required=True, help='test_path.txt of the database')
    p.add_argument('--test_info', required=True, help='test_info.npy of the database')
    p.add_argument('--query_info', help='query_IDX.npy; checked against the query_idx of the .npz')
    p.add_argument('--out', required=True, help='output directory (one PNG per query + index.html)')
    p.add_argument('--num_queries', type=int, default=10, help='queries drawn, spread over the query list')
    p.add_argument('--topk', type=int, default=10, help='non-junk gallery tracklets per query')
    p.add_argument('--queries', type=int, nargs='+', help='positions in the query list (overrides --num_queries)')
    p.add_argument('--S', type=int, default=8, help='frames per clip (the test frames shown)')
    p.add_argument('--height', type=int, default=128, help='drawn frame height')
    p.add_argument('--width', type=int, default=64, help='drawn frame width')
    p.add_argument('--all_frames', action='store_true', help='show the S test frames of every gallery tracklet')

    p = sub.add_parser('attention', help='non-local attention maps of one test tracklet')
    p.add_argument('--load_ckpt', required=True, help='checkpoint (ckpt_best.pth or a released one)')
    p.add_argument('--model_type', required=True, help='a non-local type, e.g. resnet50_NL')
    p.add_argument('--non_layers', type=int, nargs=4, default=[0, 2, 3, 0], metavar='N')
    p.add_argument('--stripes', type=int, nargs=4, default=[16, 16, 16, 16], metavar='N')
    p.add_argument('--stride', type=int, default=1)
    p.add_argument('--test_txt', required=True, help='test_path.txt of the database')
    p.add_argument('--test_info', required=True, help='test_info.npy of the database')
    p.add_argument('--track', type=int, required=True, help='row of the test info (0-based)')
    p.add_argument('--S', type=int, default=8, help='frames per clip')
    p.add_argument('--height', type=int, default=256)
    p.add_argument('--width', type=int, default=128)
    p.add_argument('--query_frame', type=int, default=0, help='frame of the query position (0..S-1)')
    p.add_argument('--query_pos', type=int, nargs=2, metavar=('Y', 'X'),
                   help='query pixel in the resized frame (default: the centre)')
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    p.add_argument('--out', help='output PNG (default: attention_track<N>.png)')
    return parser


def _check_features_match(db, labels, cams, query_idx, args):
    if len(labels) != len(db.info):
        raise DataError(f'{args.features}: {len(labels)} tracklets, but {args.test_info} has {len(db.info)}')
    for name, column, values in (('labels', 2, labels), ('cams', 3, cams)):
        bad = np.flatnonzero(np.asarray(values).reshape(-1) != db.info[:, column])
        if len(bad):
            raise DataError(f'{args.features}: {name} differ from {args.test_info} (first at row {bad[0]}); '
                            f'were the features computed on this database?')
    if db.query_idx is not None and not np.array_equal(db.query_idx.reshape(-1), np.asarray(query_idx).reshape(-1)):
        raise DataError(f'{args.features}: query_idx differs from {args.query_info}')


def _run_ranks(args):
    from util.data import read_database

    features, labels, cams, query_idx, gallery_idx = load_features_npz(args.features)
    db = read_database(args.test_txt, args.test_info, args.query_info)
    _check_features_match(db, labels, cams, query_idx, args)
    drawn = save_ranked_results(args.out, features, labels, cams, query_idx, db.paths, db.info, args.S,
                                num_queries=args.num_queries, topk=args.topk, height=args.height,
                                width=args.width, all_frames=args.all_frames, queries=args.queries,
                                gallery_idx=gallery_idx)
    correct = sum(q.rank1_correct for q in drawn)
    print(f'{len(drawn)} ranked lists in {args.out} (rank-1 correct for {correct}); '
          f'open {os.path.join(args.out, "index.html")}')


def _run_attention(args):
    import torch
    from models import build_model, checkpoint_num_class, load_checkpoint
    from util.data import load_clip, read_database, test_frame_indices

    db = read_database(args.test_txt, args.test_info)
    if not 0 <= args.track < len(db.info):
        raise DataError(f'--track must lie in [0, {len(db.info)}), got {args.track}')
    model = build_model(args.model_type, checkpoint_num_class(args.load_ckpt), non_layers=tuple(args.non_layers),
                        stripes=tuple(args.stripes), stride=args.stride, pretrained='none', height=args.height)
    load_checkpoint(model, args.load_ckpt)
    device = args.device if args.device != 'auto' else 'cuda' if torch.cuda.is_available() else 'cpu'
    model.to(device)
    start, end, pid, cam = (int(v) for v in db.info[args.track])
    frames = test_frame_indices(start, end, args.S)
    clip = load_clip([db.paths[f] for f in frames], args.height, args.width)  # uint8 (S, 3, H, W)
    title = f'{args.model_type}, tracklet {args.track} (id {pid}, cam {cam})'
    fig, maps = attention_figure(model, clip, args.query_frame, args.query_pos, title=title)
    out = args.out or f'attention_track{args.track}.png'
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=ATT_DPI)
    print(f'attention maps of {len(maps)} non-local blocks written to {out}')


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command == 'curves':
            print(f'training curves written to {plot_training_curves(args.metrics, args.out)}')
        elif args.command == 'ranks':
            _run_ranks(args)
        else:
            _run_attention(args)
    except ReIDError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
