"""Architecture diagrams of the three models, drawn with matplotlib.

    python fig/make_figures.py            # writes fig/baseline.png, fig/NVAN.png, fig/STE-NVAN.png

Shapes are those of the paper's setting: clips of S = 8 frames of 256 x 128 pixels, layer4 stride 1,
non-local blocks after the last 2 bottlenecks of layer2 and the last 3 of layer3 (--non_layers 0 2 3 0),
16 stripes per frame for STE-NVAN (--stripes 16 16 16 16).
"""
import argparse
import os

from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

HERE = os.path.dirname(os.path.abspath(__file__))
DPI = 110

# palette
INK = '#263238'
STAGE = ('#e3eef9', '#5b8fc7')      # (fill, edge) of a ResNet stage
BOTTLENECK = ('#bcd5ee', '#5b8fc7')
NONLOCAL = ('#f9c784', '#d9822b')
STRIPE_NL = ('#f4a6a6', '#c94c4c')
POOL = ('#cfe8c8', '#4e9a4a')
FEATURE = ('#fff2b3', '#c9a227')
HEAD = ('#e6ddf2', '#7e57c2')
LOSS = ('#eeeeee', '#757575')
NOTE = '#607d8b'


class Canvas:
    """Axes in drawing units (1 unit = 1/10 inch) with box, arrow and text helpers."""

    def __init__(self, width, height):
        self.fig = Figure(figsize=(width / 10, height / 10), dpi=DPI)
        self.ax = self.fig.add_axes([0, 0, 1, 1])
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(0, height)
        self.ax.set_aspect('equal')
        self.ax.axis('off')

    def box(self, x, y, w, h, text='', colours=STAGE, size=8, weight='normal', dashed=False, pad=0.4,
            text_colour=INK, z=2):
        """Rounded box with its lower-left corner at (x, y); returns its centre."""
        fill, edge = colours
        self.ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f'round,pad=0,rounding_size={pad}',
                                         facecolor=fill, edgecolor=edge, linewidth=1.1, zorder=z,
                                         linestyle='--' if dashed else '-'))
        if text:
            self.text(x + w / 2, y + h / 2, text, size=size, weight=weight, colour=text_colour, z=z + 1)
        return x + w / 2, y + h / 2

    def text(self, x, y, text, size=8, colour=INK, weight='normal', ha='center', va='center', z=5,
             style='normal', rotation=0):
        self.ax.text(x, y, text, fontsize=size, color=colour, ha=ha, va=va, weight=weight, zorder=z,
                     style=style, rotation=rotation, linespacing=1.25)

    def arrow(self, start, end, colour=INK, dashed=False, curve=0.0, width=1.1, head=7):
        self.ax.add_patch(FancyArrowPatch(start, end, arrowstyle='-|>', mutation_scale=head, color=colour,
                                          linewidth=width, linestyle='--' if dashed else '-', zorder=1,
                                          connectionstyle=f'arc3,rad={curve}', shrinkA=0, shrinkB=0))

    def line(self, points, colour=INK, dashed=False, width=1.1, z=1):
        xs, ys = zip(*points)
        self.ax.plot(xs, ys, color=colour, linewidth=width, linestyle='--' if dashed else '-', zorder=z)

    def elbow(self, points, colour=INK, dashed=False):
        """Polyline ending in an arrow head."""
        self.line(points[:-1], colour, dashed)
        self.arrow(points[-2], points[-1], colour, dashed)

    def save(self, path):
        self.fig.savefig(path, dpi=DPI, facecolor='white')
        return path


# ------------------------------------------------------------------------------------------- building blocks

def draw_clip(c, x, y, frames=4, label='input clip\nS = 8 frames\n256 × 128', w=5.0, h=10.0, step=1.1):
    """A stack of person frames, front frame with its lower-left corner at (x, y); returns the right edge."""
    for k in reversed(range(frames)):
        fx, fy = x + k * step, y + k * step
        c.ax.add_patch(Rectangle((fx, fy), w, h, facecolor='#f5f7fa', edgecolor='#90a4ae', linewidth=0.9,
                                 zorder=2 + (frames - k)))
        z = 2.5 + (frames - k)
        c.ax.add_patch(Circle((fx + w / 2, fy + 0.8 * h), 0.09 * h, color='#e0b89a', zorder=z))
        c.ax.add_patch(Rectangle((fx + 0.28 * w, fy + 0.42 * h), 0.44 * w, 0.29 * h, color='#5c7cba', zorder=z))
        c.ax.add_patch(Rectangle((fx + 0.32 * w, fy + 0.08 * h), 0.36 * w, 0.34 * h, color='#37474f', zorder=z))
    c.text(x + (w + (frames - 1) * step) / 2, y - 2.2, label, size=7.5, va='top')
    return x + w + (frames - 1) * step


def draw_stage(c, x, y, name, blocks, shape, h=9.0, unit=2.2, gap=0.5, frame_note=None):
    """A ResNet stage: its bottlenecks ('B') and non-local blocks ('NL' / 'SNL') in forward order.

    Returns the (left, right) x of the stage box; (x, y) is its lower-left corner.
    """
    width = len(blocks) * unit + (len(blocks) + 1) * gap
    c.box(x, y, width, h, colours=STAGE, pad=0.6)
    c.text(x + width / 2, y + h - 1.3, name, size=8.5, weight='bold')
    bx = x + gap
    for kind in blocks:
        colours = {'B': BOTTLENECK, 'NL': NONLOCAL, 'SNL': STRIPE_NL}[kind]
        label = {'B': '', 'NL': 'NL', 'SNL': 'S\nNL'}[kind]
        c.box(bx, y + 1.3, unit, h - 4.0, label, colours=colours, size=6.5, weight='bold', pad=0.3, z=3)
        bx += unit + gap
    c.text(x + width / 2, y - 1.0, shape, size=7, colour=NOTE, va='top')
    if frame_note:
        c.text(x + width / 2, y + h + 1.0, frame_note, size=7.5, colour='#d9822b', weight='bold', va='bottom')
    return x, x + width


def draw_backbone(c, x, y, stages, h=9.0, arrow_gap=2.2):
    """conv1 + stages (+ optional temporal pooling boxes between stages); returns the right edge x."""
    cy = y + h / 2
    c.box(x, y + 1.5, 5.5, h - 3.0, 'conv1\n+ pool', colours=BOTTLENECK, size=7)
    c.text(x + 2.75, y - 1.0, '64×64×32', size=7, colour=NOTE, va='top')
    right = x + 5.5
    for stage in stages:
        if stage[0] == 'pool':
            c.arrow((right, cy), (right + arrow_gap, cy))
            left = right + arrow_gap
            c.box(left, y + 1.2, 4.8, h - 2.4, stage[1], colours=POOL, size=6.5)
            right = left + 4.8
            continue
        name, blocks, shape, note = stage
        c.arrow((right, cy), (right + arrow_gap, cy))
        _, right = draw_stage(c, right + arrow_gap, y, name, blocks, shape, h=h, frame_note=note)
    return right


def nonlocal_blocks(depth, count, kind):
    """Forward order of a stage: a non-local block after each of the last ``count`` bottlenecks."""
    order = []
    for j in range(depth):
        order.append('B')
        if j >= depth - count:
            order.append(kind)
    return order


HEAD_BOXES = [  # (width, height, text, colours), left to right
    (7.5, 8.0, 'avg pool\nover T, H, W', POOL), (6.5, 6.0, 'clip feature\n2048', FEATURE),
    (5.5, 6.0, 'BN-neck', HEAD), (5.0, 6.0, 'FC', HEAD), (9.0, 6.0, 'track ID loss\n(cross-entropy)', LOSS)]


def draw_chain(c, x, cy, boxes, gap):
    """Boxes (width, height, text, colours) left to right, centred on y = cy, each after an arrow of length
    `gap` starting at x. Returns the boxes' left edges and the right end of the last one."""
    lefts = []
    for w, h, text, colours in boxes:
        c.arrow((x, cy), (x + gap, cy))
        x += gap
        c.box(x, cy - h / 2, w, h, text, colours=colours, size=7)
        lefts.append(x)
        x += w
    return lefts, x


def draw_head(c, x, cy):
    """Average pooling -> clip feature (triplet loss) -> BN-neck (test descriptor) -> FC -> track ID loss."""
    lefts, x = draw_chain(c, x, cy, HEAD_BOXES, 2.2)
    fx, bx = lefts[1], lefts[2]  # the clip feature and the BN-neck
    # triplet loss above the clip feature, test descriptor below the BN-neck
    c.box(fx - 1.75, cy + 7.0, 10.0, 5.5, 'triplet loss\n(batch hard, soft)', colours=LOSS, size=7)
    c.arrow((fx + 3.25, cy + 3.0), (fx + 3.25, cy + 7.0))
    c.box(bx - 2.25, cy - 12.5, 10.0, 5.5, 'test descriptor\n(cosine ranking)', colours=FEATURE, size=7,
          dashed=True)
    c.arrow((bx + 2.75, cy - 3.0), (bx + 2.75, cy - 7.0), dashed=True)
    return x


def legend(c, x, y, items):
    for k, (colours, text) in enumerate(items):
        c.box(x, y - 2.2 * k - 1.5, 2.4, 1.5, colours=colours, pad=0.2)
        c.text(x + 3.2, y - 2.2 * k - 0.75, text, size=7.5, ha='left')


def title(c, x, y, text, subtitle):
    c.text(x, y, text, size=13, weight='bold', ha='left', va='top')
    c.text(x, y - 3.3, subtitle, size=8.5, colour=NOTE, ha='left', va='top')


LEGEND = [(BOTTLENECK, 'bottleneck block'), (POOL, 'pooling'), (FEATURE, 'feature'),
          (HEAD, 'BN-neck / classifier'), (LOSS, 'training loss')]


# ------------------------------------------------------------------------------------------- the three figures

def baseline():
    c = Canvas(150, 48)
    title(c, 2, 46.5, 'Baseline: ResNet-50 + FPL',
          'every frame is encoded by the same ResNet-50; the feature pooling layer (FPL, --temporal mean | max) '
          'pools frame features and frame logits over time (--model_type resnet50_s1)')
    y, h = 17, 9.0
    cy = y + h / 2
    right = draw_clip(c, 5, y - 0.5)
    c.arrow((right + 0.5, cy), (right + 2.6, cy))
    # the per-frame network, drawn as a stack: one network, shared weights, every frame
    x0, net_w = right + 2.6, 63.5
    for k in (2, 1):
        c.box(x0 + 0.8 * k, y - 3.0 + 0.8 * k, net_w, h + 4.5, colours=('#f4f8fc', '#b0c7e0'), z=0)
    c.box(x0, y - 3.0, net_w, h + 4.5, colours=('#fbfdff', STAGE[1]), z=0)
    c.text(x0 + net_w / 2, y + h + 4.2, 'ResNet-50 applied to each of the S frames (shared weights, layer4 '
           'stride 1)', size=8, weight='bold', colour=STAGE[1], va='bottom')
    stages = [('layer1', ['B'] * 3, '256×64×32', None), ('layer2', ['B'] * 4, '512×32×16', None),
              ('layer3', ['B'] * 6, '1024×16×8', None), ('layer4', ['B'] * 3, '2048×16×8', None)]
    draw_backbone(c, x0 + 1.0, y, stages, arrow_gap=1.6)
    # per-frame pooling -> S frame features
    c.arrow((x0 + net_w, cy), (x0 + net_w + 2.6, cy))
    gx = x0 + net_w + 2.6
    c.box(gx, cy - 3.0, 6.0, 6.0, 'spatial\navg pool', colours=POOL, size=7)
    fx = gx + 8.2
    c.arrow((gx + 6.0, cy), (fx, cy))
    for k in range(4):
        c.box(fx + 0.9 * k, cy - 4.0 + 0.4 * k, 1.2, 8.0, colours=FEATURE, pad=0.15, z=2 + k)
    c.text(fx + 2.0, cy - 5.0, 'S × 2048\nframe features', size=7, va='top')
    # upper branch: FPL over features -> clip feature -> triplet loss
    px, uy, ly = fx + 7.5, cy + 8.0, cy - 8.0
    c.arrow((fx + 4.6, cy + 1.5), (px, uy))
    c.box(px, uy - 3.0, 8.0, 6.0, 'FPL\nmean / max', colours=POOL, size=7)
    draw_chain(c, px + 8.0, uy, [(6.5, 6.0, 'clip feature\n2048', FEATURE),
                                 (10.0, 6.0, 'triplet loss\n(batch hard, soft)', LOSS)], 2.2)
    # lower branch: BN-neck + FC per frame -> FPL over logits -> track ID loss; frame ID loss (optional)
    c.arrow((fx + 4.6, cy - 1.5), (px, ly))
    c.box(px, ly - 3.0, 8.0, 6.0, 'BN-neck + FC\nper frame', colours=HEAD, size=7)
    draw_chain(c, px + 8.0, ly, [(6.5, 6.0, 'FPL over\nframe logits', POOL),
                                 (10.0, 6.0, 'track ID loss\n(cross-entropy)', LOSS)], 2.2)
    c.elbow([(px + 4.0, ly - 3.0), (px + 4.0, ly - 8.5), (px + 18.9, ly - 8.5)], dashed=True)
    c.box(px + 18.9, ly - 11.5, 10.0, 6.0, 'frame ID loss\n(--frame_id_loss)', colours=LOSS, size=7,
          dashed=True)
    c.text(x0, 3.0, 'Test: the clip descriptor is the FPL (mean / max) of the S frames\' BN-neck features '
           '(2048), ranked by cosine similarity.', size=8, colour=NOTE, ha='left', va='center')
    legend(c, 132, 36, LEGEND)
    return c


def _nl_figure(name, subtitle, stages, note, kind, inset):
    c = Canvas(150, 64)
    title(c, 2, 62.5, name, subtitle)
    y, h = 34, 9.0
    cy = y + h / 2
    right = draw_clip(c, 5, y - 0.5)
    c.arrow((right + 0.5, cy), (right + 2.2, cy))
    right = draw_backbone(c, right + 2.2, y, stages)
    draw_head(c, right, cy)
    c.text(2, 24.5, note, size=8, colour=NOTE, ha='left', va='center')
    inset(c, 2, 1)
    block = (NONLOCAL, 'non-local block') if kind == 'NL' else (STRIPE_NL, 'stripe non-local block')
    legend(c, 126, 20.5, [LEGEND[0], block] + LEGEND[1:])
    return c


def nonlocal_inset(c, x, y):
    """The non-local block: z = x + BN(W(softmax(θᵀφ) g))."""
    c.box(x, y, 120, 20.5, colours=('#fffaf2', NONLOCAL[1]), pad=0.8, z=0)
    c.text(x + 1.5, y + 19.3, 'Non-local block (embedded Gaussian) over all T×H×W positions of the clip',
           size=8.5, weight='bold', ha='left', va='top', colour=NONLOCAL[1])
    cy = y + 8.5
    c.box(x + 2, cy - 3, 9, 6, 'x\nT×H×W×C', colours=FEATURE, size=7)
    for label, by in (('θ', cy + 5.5), ('φ', cy), ('g', cy - 5.5)):
        c.arrow((x + 11, cy), (x + 15, by))
        c.box(x + 15, by - 2, 10, 4, f'{label}: 1×1×1 conv\nC → C/2', colours=BOTTLENECK, size=6.5)
    c.elbow([(x + 25, cy + 5.5), (x + 34.5, cy + 5.5), (x + 34.5, cy + 3)])
    c.elbow([(x + 25, cy), (x + 29, cy)])
    c.box(x + 29, cy - 3, 11, 6, 'θᵀφ\nTHW × THW', colours=NONLOCAL, size=7)
    draw_chain(c, x + 40, cy, [(9, 6, 'softmax\n(no scaling)', NONLOCAL), (9, 6, '× g\nTHW × C/2', NONLOCAL),
                               (12, 6, 'W: 1×1×1 conv\n+ BN (init 0)', BOTTLENECK)], 3)
    c.elbow([(x + 25, cy - 5.5), (x + 59.5, cy - 5.5), (x + 59.5, cy - 3)])  # g into "× g"
    c.arrow((x + 79, cy), (x + 82.5, cy))
    c.ax.add_patch(Circle((x + 84, cy), 1.5, facecolor='white', edgecolor=INK, linewidth=1.1, zorder=3))
    c.text(x + 84, cy, '+', size=10)
    c.elbow([(x + 6.5, cy - 3), (x + 6.5, y + 1.3), (x + 84, y + 1.3), (x + 84, cy - 1.5)])
    c.arrow((x + 85.5, cy), (x + 89, cy))
    c.box(x + 89, cy - 3, 9, 6, 'z\nT×H×W×C', colours=FEATURE, size=7)
    c.text(x + 100.5, cy + 4.5, 'z = x at the start\n(zero-initialised BN).\nIn layer1, NVAN\n'
           'max-pools φ and g\n(1×2×2).', size=7, colour=NOTE, ha='left', va='top')


def stripe_inset(c, x, y):
    """Stripe non-local block within frame pairs, and the hierarchical temporal reduction."""
    c.box(x, y, 120, 20.5, colours=('#fff6f6', STRIPE_NL[1]), pad=0.8, z=0)
    c.text(x + 1.5, y + 19.3, 'Stripe non-local block (spatial reduction) within pairs of consecutive frames, '
           'and the hierarchical temporal reduction', size=8.5, weight='bold', ha='left', va='top',
           colour=STRIPE_NL[1])
    cy = y + 9.0
    for k in range(2):  # a frame pair, each frame cut into horizontal stripes
        fx, bands = x + 2.5 + k * 6.0, 8
        for s in range(bands):
            c.ax.add_patch(Rectangle((fx, cy - 5.5 + s * 11 / bands), 4.5, 11 / bands, zorder=2,
                                     facecolor=('#f8d7d7', '#eeb4b4')[s % 2], edgecolor='none'))
        c.ax.add_patch(Rectangle((fx, cy - 5.5), 4.5, 11, facecolor='none', edgecolor='#90a4ae', zorder=3))
    c.text(x + 7.75, cy - 6.3, 'frame pair, each\ncut into 16 stripes', size=6.5, colour=NOTE, va='top')
    draw_chain(c, x + 14, cy, [(10, 6, 'avg pool\neach stripe', POOL), (11, 6, '2×16 stripe\nvectors × C', FEATURE),
                               (14, 6, 'softmax(θᵀφ) g\n32 × 32 weights', STRIPE_NL),
                               (11.5, 6, 'W: 1×1×1 conv\n+ BN (init 0)', BOTTLENECK),
                               (13, 6, 'x + output,\nbroadcast per stripe', STRIPE_NL)], 3)
    # hierarchical temporal reduction: frames per clip through the stages
    hx, span = x + 98, 14.0
    c.line([(hx - 5.5, y + 2), (hx - 5.5, y + 16.5)], colour='#e0c0c0', width=0.8)
    for r, (t, label) in enumerate([(8, 'layer1-2'), (4, 'layer3'), (2, 'layer4')]):
        ry = cy + 4.5 - r * 5.5
        w = span / t
        for k in range(t):
            c.box(hx + k * w + 0.15, ry - 1.1, w - 0.3, 2.2, colours=(('#fde0c5', '#f4a6a6')[(k // 2) % 2],
                                                                    STRIPE_NL[1]), pad=0.15)
        c.text(hx - 0.8, ry, f'T={t}', size=6.5, ha='right')
        c.text(hx + span + 0.8, ry, label, size=6.5, colour=NOTE, ha='left')
        if r < 2:
            c.text(hx + span / 2, ry - 2.75, '↓ max-pool pairs', size=6, colour=POOL[1])


def nvan():
    stages = [('layer1', ['B'] * 3, '256×64×32', None),
              ('layer2', nonlocal_blocks(4, 2, 'NL'), '512×32×16', None),
              ('layer3', nonlocal_blocks(6, 3, 'NL'), '1024×16×8', None),
              ('layer4', ['B'] * 3, '2048×16×8', None)]
    return _nl_figure(
        'NVAN: ResNet-50 + 5 non-local blocks',
        'the S = 8 frames go through the backbone as one video (T = 8); every non-local block attends over all '
        'T×H×W positions (--model_type resnet50_NL --non_layers 0 2 3 0)',
        stages, 'Under each stage: channels × height × width per frame (input 256 × 128). '
        'Cost per 8-frame clip: 127.1 GFLOPs (baseline 64.9).', 'NL', nonlocal_inset)


def ste_nvan():
    stages = [('layer1', ['B'] * 3, '256×64×32', 'T=8'),
              ('layer2', nonlocal_blocks(4, 2, 'SNL'), '512×32×16', 'T=8, pairs'),
              ('pool', 'temporal\nmax pool\nT 8→4'),
              ('layer3', nonlocal_blocks(6, 3, 'SNL'), '1024×16×8', 'T=4, pairs'),
              ('pool', 'temporal\nmax pool\nT 4→2'),
              ('layer4', ['B'] * 3, '2048×16×8', 'T=2')]
    return _nl_figure(
        'STE-NVAN: stripe non-local blocks + hierarchical temporal reduction',
        'spatial reduction: attention between 16 horizontal stripes per frame instead of all H×W positions; '
        'temporal reduction: attention within\nframe pairs, and pairs max-pooled after layer2 and layer3 '
        '(--model_type resnet50_NL_stripe_hr --non_layers 0 2 3 0 --stripes 16 16 16 16)',
        stages, 'S NL = stripe non-local block; T = frames per clip at each stage. Cost per 8-frame 256 × 128 '
        'clip: 35.3 GFLOPs (NVAN 127.1, baseline 64.9).', 'SNL', stripe_inset)


FIGURES = {'baseline': baseline, 'NVAN': nvan, 'STE-NVAN': ste_nvan}


def main(argv=None):
    parser = argparse.ArgumentParser(description='Draw the architecture diagrams into fig/.')
    parser.add_argument('names', nargs='*', metavar='NAME',
                        help=f'figures to draw, among {", ".join(FIGURES)} (default: all)')
    parser.add_argument('--out_dir', default=HERE, help='output directory (default: the fig/ directory)')
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        parser.error(f'unknown figure {unknown[0]!r}; expected one of {", ".join(FIGURES)}')
    written = []
    for name in args.names or FIGURES:
        path = FIGURES[name]().save(os.path.join(args.out_dir, f'{name}.png'))
        print(f'{path}: {os.path.getsize(path) // 1024} KB')
        written.append(path)
    return written


if __name__ == '__main__':
    main()
