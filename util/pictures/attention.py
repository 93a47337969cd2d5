"""Non-local attention maps: the softmax weights of every non-local block for one query position of a clip.

:func:`query_attention` captures them (through ``models.attention_maps``) and lays each block's row for the
query out over the clip's frames (:class:`AttentionMap`); :func:`attention_figure` draws one row of heat maps
per block (``python -m util.visualize attention``).
"""
import textwrap
from dataclasses import dataclass

import numpy as np

from util.errors import ModelConfigError, ReIDError


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
    """models.attention_maps(model, x), refusing a model without non-local blocks."""
    from models import attention_maps

    captured = attention_maps(model, x)
    if not captured:
        raise ModelConfigError(f'model {getattr(model, "model_type", type(model).__name__)} has no non-local '
                               f'blocks to visualise')
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

    from models.preprocess import normalize_clip

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
