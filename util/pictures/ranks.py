"""Ranked retrieval results: for a few queries, the query clip and its ranked gallery, plus an index.html.

:func:`save_ranked_results` ranks with the metric's distance (negative cosine similarity,
:func:`cosine_ranking`) and its junk rule (:func:`match_kinds`); it needs only saved features and the
database files, no model (``evaluate.py --visualize_ranks``, ``python -m util.visualize ranks``). The images
are drawn with PIL, whose pixel layout is exact (see :func:`ranked_image_size`).
"""
import html
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from util.data.frames import load_frame
from util.data.sampling import test_frame_indices
from util.errors import DataError, ReIDError
from util.evaluation.metrics import cosine_distance, match_masks
from util.io import atomic_save

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
    metric's negative cosine similarity (util.evaluation.metrics.cosine_distance) with a stable sort: ties keep gallery
    order.
    """
    order = np.argsort(cosine_distance(np.asarray(features), np.asarray(query_rows), gallery_idx), axis=1,
                       kind='stable')
    return order if gallery_idx is None else np.asarray(gallery_idx, dtype=np.int64)[order]


def match_kinds(labels, cams, query_row):
    """'good' / 'wrong' / 'junk' for every row against one query row (the metric's rule,
    util.evaluation.metrics.match_masks)."""
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
        self.paths, self.height, self.width = paths, height, width
        self.cache = {}

    def __call__(self, frame):
        frame = int(frame)
        if frame not in self.cache:
            t = load_frame(self.paths[frame], self.height, self.width)  # uint8 (3, H, W)
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


def draw_search(path, query_frames, query_title, ranked, S, height=128, width=64, query_labels=None):
    """search.py's picture, in the layout of the ranked results: the query's S test frames over the first
    test frame of each ranked gallery tracklet.

    query_frames: the S frame paths (query_labels: a caption each, default f0..). ranked: [(first frame path,
    caption lines, kind)] in ranked order, kind 'good' / 'wrong' / 'junk' when the identities are known, else
    None (a neutral border)."""
    def load(p):
        return Image.fromarray(load_frame(p, height, width).permute(1, 2, 0).numpy())

    canvas = _Canvas(ranked_image_size(S, len(ranked), height, width), height, width, (_font(13), _font(11)))
    canvas.strip(0, query_title, QUERY_COLOUR, [load(p) for p in query_frames], [QUERY_COLOUR] * S,
                 [(text,) for text in (query_labels or [f'f{s}' for s in range(S)])])
    colours = [KIND_COLOURS.get(kind, (60, 60, 60)) for *_, kind in ranked]
    known = any(kind is not None for *_, kind in ranked)
    header = 'Ranked: green same id, red other, grey same camera' if known else 'Ranked gallery'
    canvas.strip(1, header, (60, 60, 60), [load(p) for p, *_ in ranked], colours, [lines for _, lines, _ in ranked])
    atomic_save(canvas.image, path, write=lambda image, f: image.save(f, format='PNG'))
