"""Tracklets of several cameras -> global identities, and the multi-camera scores of the result.

Clustering: average-linkage agglomerative clustering (UPGMA) of the tracklet features under cannot-link
constraints. Two tracklets of one camera whose frame ranges overlap are different people: their distance is
infinite, so the average distance of any two clusters holding them is infinite and they never merge. The
closest pair of clusters merges while its average distance is below the threshold (ties: the pair of
smallest tracklet indices).

With cosine distances d(a, b) = 1 - <a, b> of L2-normalised features, the average distance of two clusters
is exactly 1 - <S_A, S_B> / (|A| |B|), S the sum of a cluster's features, so no pairwise matrix is kept;
and two clusters whose average distance is below the threshold t hold at least one pair of tracklets closer
than t. The clustering therefore only needs the pairs closer than t, found by matrix products of row
chunks against the rest (the upper triangle, chunk x N at a time): the same clusters as the plain N x N
algorithm (``average_linkage_dense``), in memory proportional to those pairs. A tracklet with more than
``max_neighbors`` such pairs keeps its closest ones (then the result is an approximation, reported).

The threshold, when not given, is chosen on the data: Otsu's threshold (the split of a histogram that
maximises the between-class variance) of the distances of sampled tracklets to their nearest allowed
neighbours, which mix same-person pairs (small) and different-person pairs (large).

Scores: multi-camera IDF1 / IDP / IDR (Ristani et al., ECCV 2016 workshop) as DukeMTMC and CityFlow report
them, computed by TrackEval's Identity metric on the cameras concatenated into one sequence (frames offset so
no two cameras share a frame number, box IoU >= 0.5 as similarity); and tracklet-level pairwise precision /
recall / F1 and the adjusted Rand index (Hubert and Arabie, 1985) against the ground-truth identity of
each tracklet.
"""
import contextlib
import heapq
import io

import numpy as np

from util.data.cameras import camera_number, read_tracks
from util.errors import DataError
from util.evaluation.features_file import FeaturesFile, check_rankable
from util.evaluation.metrics import unit_rows

CAMERA_KEYS = ('cams', 'track_ids', 'first_frame', 'last_frame')  # what a features file must carry
DENSE_RERANK_LIMIT = 4000  # --rerank builds the N x N matrix
RANDOM_DRAWS = 10  # the random-ids baseline: mean over this many draws

EDGE_CHUNK = 2048
CHUNK_ELEMENTS = 1 << 26  # at most this many similarities at once (256 MiB of float32), whatever N


def _rows_per_chunk(chunk, n):
    return max(1, min(int(chunk), CHUNK_ELEMENTS // max(1, n)))


# -- distances and constraints -------------------------------------------------------------------------------

def unit_features(features, source='features', chunk=8192):
    """float32 L2-normalised copy of (N, D) features (an array or a memmap), read `chunk` rows at a time; an
    empty set, a zero or a non-finite row is a DataError naming `source`."""
    check_rankable(features, source, nothing='nothing associated', chunk=chunk)
    out = np.empty(features.shape, dtype=np.float32)
    for lo in range(0, len(features), chunk):
        out[lo:lo + chunk] = unit_rows(np.asarray(features[lo:lo + chunk], dtype=np.float32))[0]
    return out


def cannot_link(cams, first, last, rows, cols):
    """(len(rows), len(cols)) bool: same camera and overlapping frame ranges (rows, cols: indices)."""
    return ((cams[rows][:, None] == cams[cols][None, :])
            & (first[rows][:, None] <= last[cols][None, :]) & (first[cols][None, :] <= last[rows][:, None]))


def otsu_threshold(values, bins=256):
    """Otsu's threshold of a 1-d sample: the cut of its histogram that maximises the between-class variance."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2 or values.min() == values.max():
        return float(values.max()) if len(values) else 0.5
    hist, edges = np.histogram(values, bins=bins)
    p = hist / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    total = m0[-1]
    with np.errstate(divide='ignore', invalid='ignore'):
        between = (total * w0 - m0) ** 2 / (w0 * (1 - w0))
    between[~np.isfinite(between)] = -1
    return float(edges[int(np.argmax(between)) + 1])


def choose_threshold(x, cams, first, last, k=10, sample=2000, seed=0, chunk=EDGE_CHUNK):
    """Otsu's threshold of the cosine distances of up to ``sample`` tracklets to their k nearest tracklets
    that may be linked to them (not themselves, not cannot-linked)."""
    n = len(x)
    if n < 2:
        return 0.5
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n, sample), replace=False))
    k = min(k, n - 1)
    found = []
    chunk = _rows_per_chunk(chunk, n)
    for lo in range(0, len(rows), chunk):
        r = rows[lo:lo + chunk]
        sims = x[r] @ x.T                                               # (c, N)
        sims[np.arange(len(r)), r] = -np.inf
        for clo in range(0, n, 8192):  # cannot-link pairs, in column blocks to bound the bool temporaries
            cols = np.arange(clo, min(n, clo + 8192))
            block = sims[:, clo:clo + 8192]
            block[cannot_link(cams, first, last, r, cols)] = -np.inf
        top = -np.partition(-sims, k - 1, axis=1)[:, :k]
        found.append(1 - top[np.isfinite(top)])
    return otsu_threshold(np.concatenate(found))


def threshold_edges(x, threshold, cams, first, last, max_neighbors=100, chunk=EDGE_CHUNK):
    """All pairs i < j closer than ``threshold`` in cosine distance and not cannot-linked: (i, j, d) arrays,
    and how many rows were capped to their ``max_neighbors`` closest. Rows in chunks against the columns
    after them: chunk x N similarities at a time, never N x N."""
    n = len(x)
    out_i, out_j, out_d, capped = [], [], [], 0
    chunk = _rows_per_chunk(chunk, n)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        d = 1 - x[lo:hi] @ x[lo:].T                                     # (c, N - lo), columns lo..N-1
        r = np.arange(lo, hi)
        mask = d < threshold
        mask &= np.arange(lo, n)[None, :] > r[:, None]                  # upper triangle
        ii, jj = np.nonzero(mask)
        i_abs, j_abs = r[ii], lo + jj
        keep = ~((cams[i_abs] == cams[j_abs]) & (first[i_abs] <= last[j_abs]) & (first[j_abs] <= last[i_abs]))
        ii, jj = ii[keep], jj[keep]
        dist = d[ii, jj]
        counts = np.bincount(ii, minlength=hi - lo)
        if max_neighbors and (counts > max_neighbors).any():
            order = np.lexsort((dist, ii))                              # by row, then distance
            ii, jj, dist = ii[order], jj[order], dist[order]
            start = np.concatenate([[0], np.cumsum(counts)[:-1]])
            rank = np.arange(len(ii)) - np.repeat(start, counts)
            sel = rank < max_neighbors
            capped += int((counts > max_neighbors).sum())
            ii, jj, dist = ii[sel], jj[sel], dist[sel]
        out_i.append(lo + ii)
        out_j.append(lo + jj)
        out_d.append(dist.astype(np.float64))
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    return cat(out_i, np.int64), cat(out_j, np.int64), cat(out_d, np.float64), capped


# -- clustering ----------------------------------------------------------------------------------------------

def _relabel(parent):
    """Global ids 1..K numbered in order of each cluster's first tracklet."""
    _, first_seen, inverse = np.unique(parent, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_seen))
    return order[inverse] + 1


def average_linkage(x, threshold, cams, first, last, max_neighbors=100, chunk=EDGE_CHUNK):
    """Cluster L2-normalised features x (N, D): global ids (N,) int64 from 1, and facts about the run.

    Exact average linkage of cosine distances with cannot-link constraints, stopped at ``threshold``
    (see the module's description), from the sparse graph of the pairs closer than the threshold."""
    n = len(x)
    cams, first, last = (np.asarray(a, dtype=np.int64) for a in (cams, first, last))
    ei, ej, ed, capped = threshold_edges(x, threshold, cams, first, last, max_neighbors, chunk)
    sums = x.astype(np.float64)                   # row c: the feature sum of cluster c (N x D, as x)
    size = np.ones(n, dtype=np.int64)
    members = {}                                  # cluster -> member indices (merged ones only)
    parent = np.arange(n)
    # links[c]: {other cluster: average distance} of the pairs below the threshold not known to be cannot-link;
    # best[c]: c's closest link as (distance, smaller label, larger label); the heap holds every cluster's
    # best (stale entries are skipped by their version), so its top is the closest pair overall
    links = {}
    for a, b, d in zip(ei.tolist(), ej.tolist(), ed.tolist()):
        links.setdefault(a, {})[b] = d
        links.setdefault(b, {})[a] = d
    best, version, heap = {}, np.zeros(n, dtype=np.int64), []
    merges = 0

    def mem(c):
        return members[c] if c in members else np.array([c])

    def push(c, entry):
        best[c] = entry
        version[c] += 1
        heapq.heappush(heap, (*entry, c, int(version[c])))

    def refresh(c):
        near = links.get(c)
        if not near:
            best.pop(c, None)
            version[c] += 1
            return
        d = min(near.values())
        ties = [o for o, v in near.items() if v == d]
        o = min(ties)  # equal distances: the pair of smallest labels
        push(c, (d, min(c, o), max(c, o)))

    for c in list(links):
        refresh(c)
    while heap:
        dist, a, b, c, ver = heapq.heappop(heap)
        if parent[c] != c or version[c] != ver:
            continue                                                    # stale entry
        if parent[a] != a or parent[b] != b:                            # (kept current by refresh: defensive)
            refresh(c)
            continue
        ma, mb = mem(a), mem(b)
        if cannot_link(cams, first, last, ma, mb).any():                # infinite distance from now on
            links[a].pop(b, None)
            links[b].pop(a, None)
            refresh(a)
            refresh(b)
            continue
        keep, gone = a, b                                               # a < b: the cluster keeps a's label
        sums[keep] += sums[gone]
        members[keep] = np.concatenate([ma, mb])
        members.pop(gone, None)
        size[keep] += size[gone]
        parent[gone] = keep
        merges += 1
        near = (links.pop(a).keys() | links.pop(b).keys()) - {a, b}
        best.pop(gone, None)
        version[gone] += 1
        others = np.fromiter(near, dtype=np.int64, count=len(near))
        link = (1 - sums[others] @ sums[keep] / (size[others] * size[keep])).tolist()
        mine = {}
        for o, d in zip(others.tolist(), link):
            theirs = links[o]
            theirs.pop(a, None)
            theirs.pop(b, None)
            if d < threshold:
                theirs[keep] = d
                mine[o] = d
            current = best.get(o)
            if current is not None and (current[2] if current[1] == o else current[1]) in (a, b):
                refresh(o)                                              # its closest was a or b
            elif d < threshold and (current is None or (d, min(o, keep), max(o, keep)) < current):
                push(o, (d, min(o, keep), max(o, keep)))
        links[keep] = mine
        refresh(keep)
    # every tracklet's root
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    return _relabel(root), dict(pairs=len(ei), capped_rows=capped, merges=merges)


def average_linkage_dense(dist, threshold):
    """The plain algorithm on a full (N, N) distance matrix (np.inf for cannot-link pairs): merge the closest
    pair of clusters (Lance-Williams average update; ties: smallest row, then column) while it is closer than
    ``threshold``. Global ids (N,) from 1. The reference for ``average_linkage``, and the clustering of
    re-ranked distances."""
    d = np.array(dist, dtype=np.float64)
    n = len(d)
    np.fill_diagonal(d, np.inf)
    size = np.ones(n)
    parent = np.arange(n)
    while n > 1:
        flat = int(np.argmin(d))
        a, b = divmod(flat, n)
        if not d[a, b] < threshold:
            break
        a, b = min(a, b), max(a, b)
        row = (size[a] * d[a] + size[b] * d[b]) / (size[a] + size[b])
        d[a], d[:, a] = row, row
        d[a, a] = np.inf
        d[b], d[:, b] = np.inf, np.inf
        size[a] += size[b]
        parent[parent == b] = a
    return _relabel(parent)


def cosine_cannot_link_matrix(x, cams, first, last):
    """Dense (N, N) cosine distances with np.inf on cannot-link pairs (small N only)."""
    d = 1 - (x @ x.T).astype(np.float64)
    idx = np.arange(len(x))
    d[cannot_link(np.asarray(cams), np.asarray(first), np.asarray(last), idx, idx)] = np.inf
    return d


def reranked_matrix(x, k1=20, k2=6, lambda_value=0.3):
    """All-pairs k-reciprocal re-ranked distances (Zhong et al., CVPR 2017; util.evaluation.rerank), symmetrised.

    util.evaluation.rerank scores a probe set against a gallery with the k-reciprocal sets of probe + gallery, so a
    pair's distance does not depend on how the set is split. Splitting by each bit of the index covers every
    pair; each split is scored in both directions and the two are averaged. 2 * log2(N) re-rankings."""
    import torch

    from util.evaluation.rerank import k_reciprocal_distance
    n = len(x)
    out = np.zeros((n, n), dtype=np.float64)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    idx = np.arange(n)
    for bit in range(max(1, int(np.ceil(np.log2(max(n, 2)))))):
        side = (idx >> bit) & 1
        for q, g in ((idx[side == 0], idx[side == 1]), (idx[side == 1], idx[side == 0])):
            if not len(q) or not len(g):
                continue
            try:
                block = k_reciprocal_distance(t[q], t[g], k1, k2, lambda_value).numpy()
            except ValueError as err:
                raise DataError(f'--rerank: {err}') from None
            out[np.ix_(q, g)] += block / 2
            out[np.ix_(g, q)] += block.T / 2
    return out


def dense_threshold(d, k=10):
    """Otsu's threshold of each tracklet's k smallest finite distances in a dense matrix."""
    d = np.array(d, dtype=np.float64)
    np.fill_diagonal(d, np.inf)
    k = max(1, min(k, len(d) - 1))
    top = np.partition(d, k - 1, axis=1)[:, :k]
    return otsu_threshold(top[np.isfinite(top)])


# -- scores --------------------------------------------------------------------------------------------------

def box_iou(a, b):
    """(len(a), len(b)) IoU of x, y, w, h boxes."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, inter / union, 0.0)


def _import_trackeval():
    with contextlib.redirect_stdout(io.StringIO()):  # its import prints optional-dependency notices
        import trackeval
    return trackeval


def _by_frame(part):
    """{frame: (ids, boxes)} of (frames, ids, boxes)."""
    if part is None or not len(part[0]):
        return {}
    frames, ids, boxes = (np.asarray(a) for a in part)
    order = np.argsort(frames, kind='stable')
    cuts = np.flatnonzero(np.diff(frames[order])) + 1
    return {int(frames[g[0]]): (ids[g], boxes[g].reshape(-1, 4)) for g in np.split(order, cuts)}


def _timeline(gt, pred):
    """One sequence from per-camera (frames, ids, boxes) of gt and predictions, keys = camera; frames of
    camera k offset by the last frame of the cameras before it (frames without boxes left out, as they
    count nothing). Yields (frame, gt ids, gt boxes, predicted ids, predicted boxes)."""
    offset = 0
    empty = (np.zeros(0, np.int64), np.zeros((0, 4)))
    for cam in sorted(set(gt) | set(pred)):
        g, p = _by_frame(gt.get(cam)), _by_frame(pred.get(cam))
        frames = sorted(set(g) | set(p))
        for f in frames:
            yield (offset + f, *g.get(f, empty), *p.get(f, empty))
        offset += max(frames, default=0)


def multi_camera_identity(gt, pred, threshold=0.5):
    """IDF1, IDP, IDR, IDTP, IDFP, IDFN of predictions against ground truth over all cameras at once.

    gt, pred: {camera: (frames (n,), ids (n,), boxes (n, 4) x, y, w, h)}; ids are global across cameras.
    TrackEval's Identity metric on one concatenated sequence, box IoU as the similarity."""
    trackeval = _import_trackeval()
    steps = list(_timeline(gt, pred))
    all_gt = np.concatenate([s[1] for s in steps]) if steps else np.zeros(0, np.int64)
    all_pr = np.concatenate([s[3] for s in steps]) if steps else np.zeros(0, np.int64)
    gt_ids, pr_ids = np.unique(all_gt), np.unique(all_pr)
    data = dict(num_timesteps=len(steps), num_gt_ids=len(gt_ids), num_tracker_ids=len(pr_ids),
                num_gt_dets=len(all_gt), num_tracker_dets=len(all_pr), gt_ids=[], tracker_ids=[],
                similarity_scores=[])
    for _, g, gb, p, pb in steps:
        data['gt_ids'].append(np.searchsorted(gt_ids, g).astype(int))
        data['tracker_ids'].append(np.searchsorted(pr_ids, p).astype(int))
        data['similarity_scores'].append(box_iou(gb, pb))
    metric = trackeval.metrics.Identity({'THRESHOLD': threshold, 'PRINT_CONFIG': False})
    res = metric.eval_sequence(data)
    return {k: float(res[k]) if k in metric.float_fields else int(res[k]) for k in metric.fields}


def tracklet_gt_ids(tracklets, gt, iou=0.5):
    """Ground-truth identity of each tracklet: the gt id its boxes match most often at IoU >= iou (the best
    IoU per frame), -1 when none matches. tracklets: [(camera, frames, boxes)]; gt as multi_camera_identity."""
    out = np.full(len(tracklets), -1, dtype=np.int64)
    for k, (cam, frames, boxes) in enumerate(tracklets):
        if cam not in gt:
            continue
        gf, gi, gb = gt[cam]
        votes = {}
        for f, box in zip(frames.tolist(), boxes):
            sel = np.flatnonzero(gf == f)
            if not len(sel):
                continue
            ious = box_iou(box[None], gb[sel])[0]
            best = int(np.argmax(ious))
            if ious[best] >= iou:
                votes[int(gi[sel[best]])] = votes.get(int(gi[sel[best]]), 0) + 1
        if votes:
            out[k] = max(sorted(votes), key=lambda i: votes[i])
    return out


def _pairs(counts):
    counts = np.asarray(counts, dtype=np.float64)
    return float((counts * (counts - 1) / 2).sum())


def pairwise_scores(pred, truth):
    """Pairwise precision / recall / F1 over all tracklet pairs and the adjusted Rand index.

    pred: global ids; truth: gt ids, -1 for a tracklet matching no person (a class of its own)."""
    pred, truth = np.asarray(pred), np.asarray(truth).copy()
    unknown = truth < 0
    truth[unknown] = truth.max(initial=0) + 1 + np.arange(int(unknown.sum()))
    _, p = np.unique(pred, return_inverse=True)
    _, t = np.unique(truth, return_inverse=True)
    table = np.zeros((p.max(initial=-1) + 1, t.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (p, t), 1)
    both, same_pred, same_true = _pairs(table), _pairs(table.sum(1)), _pairs(table.sum(0))
    total = _pairs([len(pred)])
    precision = both / same_pred if same_pred else 1.0
    recall = both / same_true if same_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    expected = same_pred * same_true / total if total else 0.0
    maximum = (same_pred + same_true) / 2
    ari = (both - expected) / (maximum - expected) if maximum != expected else 1.0
    return dict(pair_precision=precision, pair_recall=recall, pair_f1=f1, ari=ari)


# -- the command's steps: features files in, identities out, scores against the ground truth -----------------

def load_camera_features(paths):
    """Join features files: dict of features (N, D) float32 (unit rows), cams, track_ids, first_frame,
    last_frame (N,) int64, camera_names (N,) str."""
    parts = []
    for path in paths:
        data = FeaturesFile.read(path, 'features file', mmap=True, scoring=False)
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in CAMERA_KEYS if k not in z.files]
            if missing:
                raise DataError(f'features file {path}: no {", ".join(missing)} array(s); expected a file of '
                                f'extract_features.py on the crop folders of tracklets_from_video.py '
                                f'(<camera>_t<id>/f<frame>.jpg)')
            extra = {k: np.asarray(z[k]) for k in CAMERA_KEYS}
            names = np.asarray(z['camera_names']) if 'camera_names' in z.files else None
        n = len(data.features)
        for k, v in extra.items():
            if v.shape != (n,) or not np.issubdtype(v.dtype, np.integer):
                raise DataError(f'features file {path}: {k} is {v.dtype} {v.shape}, expected ({n},) integers')
        if (extra['cams'] < 0).any():
            raise DataError(f'features file {path}: camera numbers missing (-1) for some tracklets')
        extra['camera_names'] = names if names is not None else np.array([f'c{c}' for c in extra['cams']])
        extra['features'] = unit_features(data.features, f'features file {path}')
        parts.append(extra)
    dims = {p['features'].shape[1] for p in parts}
    if len(dims) > 1:
        raise DataError(f'--features: the files have features of different sizes {sorted(dims)} (embed them with '
                        f'one model)')
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    key = out['cams'] * (1 << 32) + out['track_ids']
    uniq, counts = np.unique(key, return_counts=True)
    if (counts > 1).any():
        dup = int(np.flatnonzero(key == uniq[counts > 1][0])[0])
        raise DataError(f'--features: camera {out["camera_names"][dup]} track {out["track_ids"][dup]} appears '
                        f'more than once')
    return out


def cluster(data, threshold=None, rerank=False, k1=20, k2=6, lambda_value=0.3, max_neighbors=100, seed=0):
    """Global ids (N,) from 1, the threshold used and facts about the run."""
    x, cams, first, last = data['features'], data['cams'], data['first_frame'], data['last_frame']
    if rerank:
        if len(x) > DENSE_RERANK_LIMIT:
            raise DataError(f'--rerank: {len(x)} tracklets, at most {DENSE_RERANK_LIMIT} (it needs the N x N '
                            f'matrix); cluster cosine distances instead')
        if len(x) < 3:
            raise DataError(f'--rerank: {len(x)} tracklets, at least 3 needed')
        k1, k2 = min(k1, len(x) - 1), min(k2, len(x) - 1)   # fewer tracklets than neighbours asked for
        d = reranked_matrix(x, k1, k2, lambda_value)
        idx = np.arange(len(x))
        d[cannot_link(cams, first, last, idx, idx)] = np.inf
        t = dense_threshold(d) if threshold is None else threshold
        return average_linkage_dense(d, t), t, dict(distance=f'k-reciprocal (k1 {k1}, k2 {k2})')
    t = choose_threshold(x, cams, first, last, seed=seed) if threshold is None else threshold
    ids, info = average_linkage(x, t, cams, first, last, max_neighbors=max_neighbors)
    info['distance'] = 'cosine'
    return ids, t, info


def scene_rows(scene_cams, data, ids):
    """Per scene camera: (name, Tracks, row mask of kept tracklets, their global ids)."""
    lookup = {(int(c), int(t)): int(g) for c, t, g in zip(data['cams'], data['track_ids'], ids)}
    out = []
    for name, _, tracks_path, _ in scene_cams:
        number = camera_number(name)
        tracks = read_tracks(tracks_path)
        gid = np.array([lookup.get((number, int(t)), 0) for t in tracks.ids], dtype=np.int64)
        out.append((name, number, tracks, gid))
    return out


def evaluate_scene(scene_cams, data, ids, seed=0):
    """results dict: the method's scores and those of the baselines: random ids (as many identities as the
    method found, uniformly drawn per tracklet; the mean of RANDOM_DRAWS draws) and one id per tracklet."""
    gt, tracker = {}, {}
    for name, _, tracks_path, gt_path in scene_cams:
        number = camera_number(name)
        g = read_tracks(gt_path, 'ground truth')
        gt[number] = (g.frame, g.ids, g.boxes)
        t = read_tracks(tracks_path)
        tracker[number] = t
    # each tracklet's boxes: the scene's rows of its track
    boxes = []
    for c, tid in zip(data['cams'].tolist(), data['track_ids'].tolist()):
        t = tracker.get(c)
        sel = t.ids == tid if t is not None else np.zeros(0, bool)
        boxes.append((c, t.frame[sel] if t is not None else np.zeros(0, np.int64),
                      t.boxes[sel] if t is not None else np.zeros((0, 4))))
    truth = tracklet_gt_ids(boxes, gt)

    def score(assignment):
        pred = {}
        lookup = {(c, t): g for c, t, g in zip(data['cams'].tolist(), data['track_ids'].tolist(), assignment)}
        for c, t in tracker.items():
            gid = np.array([lookup.get((c, int(i)), 0) for i in t.ids], dtype=np.int64)
            keep = gid > 0
            pred[c] = (t.frame[keep], gid[keep], t.boxes[keep])
        out = multi_camera_identity(gt, pred)
        out.update(pairwise_scores(assignment, truth))
        out['identities'] = int(len(np.unique(assignment)))
        return out

    n = len(ids)
    rng = np.random.default_rng(seed)
    k = max(1, len(np.unique(ids)))
    draws = [score((rng.integers(0, k, n) + 1).tolist()) for _ in range(RANDOM_DRAWS)]
    results = dict(method=score(np.asarray(ids).tolist()),
                   random={key: float(np.mean([d[key] for d in draws])) for key in draws[0]},
                   one_per_tracklet=score((np.arange(n) + 1).tolist()))
    results['random']['draws'] = RANDOM_DRAWS
    results['gt_identities'] = int(len(np.unique(np.concatenate([g[1] for g in gt.values()])))) if gt else 0
    results['tracklets_without_gt'] = int((truth < 0).sum())
    return results
