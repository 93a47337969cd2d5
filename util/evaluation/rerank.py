"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017), as the authors' released code in its float32 form (the one torchreid and fast-reid ship), in
vectorised torch code on the CPU or on CUDA.

The released algorithm, on the N = Q + G probe+gallery items (probe rows first):

1. original distance: squared Euclidean distance of the L2-normalised features (2 - 2 cos), each column
   divided by its maximum, then transposed; ``initial_rank`` = every row argsorted;
2. R(i) = the k-reciprocal neighbours of i: items j among i's k1 + 1 nearest that have i among their own
   k1 + 1 nearest. Each c in R(i) whose own k-reciprocal set R'(c) (k1 / 2 rounded half to even, + 1
   nearest) shares more than 2/3 of its items with R(i) adds R'(c) to i's set;
3. V[i] = exp(-distance) over that set, divided by its sum; query expansion: V[i] = mean of V over i's
   k2 nearest (when k2 > 1);
4. Jaccard distance of probe i to item j: 1 - m / (2 - m), m = sum over c of min(V[i, c], V[j, c]);
   final = (1 - lambda) * Jaccard + lambda * original, the (Q, G) probe-gallery block.

Here every step works on all items at once: the nearest lists come from ``torch.topk`` on blocks of rows
(no full sort), the reciprocal tests are gathers of those lists, V is a sparse matrix (at most
(k1 + 1)(k1/2 + 2) items per row before the query expansion), and the Jaccard sums run only over pairs of
nonzero entries of V sharing a column, as the released code's inverted index does. On the CPU the query
expansion's and the Jaccard's float32 sums add the same terms in the released code's order; only exp and
the weights' sums round differently (a few 1e-7 in the result).

Ties: the released code's ``np.argsort`` leaves the order of equal distances to numpy's sort algorithm. They
are common in MARS, where every query is also in the gallery, so each query has an exact twin. Here equal
distances are ordered by item index, as a stable sort does (and as ``rerank_reference`` does): topk takes
k + 1 items; where the k-th and the next distance differ, its first k are the stable sort's k, put in
(distance, index) order; rows where they are equal (a run of equal distances crosses the k-th place, and
which items are among the k nearest depends on the order) are ranked by exact (distance bits, index)
int64 keys. The distance matrix itself is made exactly symmetric, with 0 between identical features, so
identical items have identical rows, as the authors' ``cdist`` gives.

``rerank_reference`` at the end is the plain restatement of the released loops in float32 numpy, for tests
and benchmarks; it shares no code with the fast path.
"""
import numbers

import torch

__all__ = ['k_reciprocal_distance', 'pairwise_distance', 'rerank_distance']

_BLOCK_ELEMENTS = 1 << 23  # bound on the elements of the dense temporaries of one block of rows
_PAIR_ELEMENTS = 1 << 21  # and on the entries of the sparse products' index arrays (int64) of one block


# ----------------------------------------------------------------------------------------------------------
# public functions


def k_reciprocal_distance(probe, gallery, k1=20, k2=6, lambda_value=0.3):
    """Re-ranked probe-to-gallery distances.

    probe (Q, D), gallery (G, D): float features on one device (CPU or CUDA), L2-normalised here.
    Returns the (Q, G) float32 re-ranked distance on that device (smaller = closer). On the CPU the result
    is deterministic; on CUDA the sums use atomic adds, so their last bits may differ between runs.
    Raises ValueError for k1 < 1, k2 < 1, k1 >= Q + G, k2 > Q + G, lambda outside [0, 1], or
    mismatched shapes / devices.
    """
    _check_features(probe, gallery)
    n = len(probe) + len(gallery)
    _check_parameters(n, k1, k2, lambda_value)
    dist = pairwise_distance(probe, gallery)  # (N, N), symmetric: ours to normalise in place
    return _rerank(dist, dist, len(probe), k1, k2, lambda_value)


def pairwise_distance(probe, gallery, block=2048):
    """(N, N) float32 squared Euclidean distances 2 - 2 cos of the L2-normalised probe+gallery features.

    Exactly symmetric (each pair computed once, clamped at 0), 0 on the diagonal and between identical
    feature rows, and identical rows for identical features (MARS's query / gallery twins), as the
    authors' ``cdist`` gives; the matrix product runs on blocks of the upper triangle only.
    """
    _check_features(probe, gallery)
    feats = torch.cat([probe, gallery]).float()  # (N, D)
    n = len(feats)
    # groups of identical features, found before the (N, N) matrix exists to keep the peak memory down
    _, group = torch.unique(feats, dim=0, return_inverse=True)
    unit = torch.nn.functional.normalize(feats, dim=1)
    del feats
    dist = torch.empty(n, n, dtype=torch.float32, device=unit.device)
    for a in range(0, n, block):
        for b in range(a, n, block):
            d = torch.mm(unit[a:a + block], unit[b:b + block].T).mul_(-2).add_(2).clamp_(min=0)
            if a == b:  # (B, B) block of the diagonal: the smaller of the two roundings of each pair
                d = torch.minimum(d, d.T)
                d.fill_diagonal_(0)
            else:
                dist[b:b + block, a:a + block] = d.T
            dist[a:a + block, b:b + block] = d
    del unit
    # identical features: copy the first one's row and column, so twins tie exactly everywhere
    index = torch.arange(n, device=dist.device)
    first = torch.full((int(group.max()) + 1,), n, device=dist.device).scatter_reduce_(0, group, index, 'amin')
    dup = torch.nonzero(first[group] != index)[:, 0]
    if len(dup):
        source = first[group[dup]]
        dist[dup] = dist[source]
        dist[:, dup] = dist[:, source]
    return dist


def rerank_distance(dist, num_query, k1=20, k2=6, lambda_value=0.3):
    """Re-ranking from a precomputed original distance (before its normalisation).

    dist: (N, N) symmetric float distances of the probe+gallery set to itself, probe rows first, as
    ``pairwise_distance`` returns (left unchanged); num_query: Q. Returns the (Q, N - Q) re-ranked distance.
    For a symmetric matrix the released code's division of each column by its maximum followed by the
    transpose is each row divided by its own maximum, which is what is computed here.
    """
    if not isinstance(dist, torch.Tensor) or dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f'dist: expected a square (N, N) tensor, got {_describe(dist)}')
    n = dist.shape[0]
    if not isinstance(num_query, numbers.Integral) or not 0 < num_query < n:
        raise ValueError(f'num_query: expected 1..{n - 1} (probe rows of the {n} x {n} distance), got {num_query}')
    _check_parameters(n, k1, k2, lambda_value)
    rows = torch.linspace(0, n - 1, min(n, 16), device=dist.device).long()  # a cheap look at the symmetry
    if not torch.equal(dist[rows], dist[:, rows].T):
        raise ValueError('dist: expected a symmetric matrix (distances of one set to itself)')
    source = dist.float()
    out = source if source is not dist else torch.empty_like(source)  # a float32 copy is ours to overwrite
    return _rerank(source, out, num_query, k1, k2, lambda_value)


# ----------------------------------------------------------------------------------------------------------
# checks


def _describe(x):
    if isinstance(x, torch.Tensor):
        return f'a {x.dtype} tensor of shape {tuple(x.shape)} on {x.device}'
    return f'{type(x).__name__}'


def _check_features(probe, gallery):
    for name, x in (('probe', probe), ('gallery', gallery)):
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point() or len(x) == 0:
            raise ValueError(f'{name}: expected a non-empty (rows, D) float tensor, got {_describe(x)}')
    if probe.shape[1] != gallery.shape[1]:
        raise ValueError(f'probe and gallery: feature sizes differ ({probe.shape[1]} and {gallery.shape[1]})')
    if probe.device != gallery.device:
        raise ValueError(f'probe and gallery: on different devices ({probe.device} and {gallery.device})')


def _check_parameters(n, k1, k2, lambda_value):
    for name, k in (('k1', k1), ('k2', k2)):
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f'{name}: expected an integer >= 1, got {k!r}')
    if k1 >= n:
        raise ValueError(f'k1: expected less than the {n} probe+gallery items, got {k1}')
    if k2 > n:
        raise ValueError(f'k2: expected at most the {n} probe+gallery items, got {k2}')
    if isinstance(lambda_value, bool) or not isinstance(lambda_value, numbers.Real) or not 0 <= lambda_value <= 1:
        raise ValueError(f'lambda_value: expected a number in [0, 1], got {lambda_value!r}')


# ----------------------------------------------------------------------------------------------------------
# fast path


def _rerank(dist, out, num_query, k1, k2, lambda_value):
    """dist: (N, N) symmetric original distance; out: (N, N) float32 for its normalised rows (dist itself
    to normalise in place). Returns the (Q, N - Q) re-ranked distance."""
    k_half = int(round(k1 / 2))  # half to even, as np.around
    nearest = _normalise_and_rank(dist, out, max(k1 + 1, k2))  # (N, K) in (distance, index) order
    dist = out
    near, near_half = nearest[:, :k1 + 1], nearest[:, :k_half + 1]
    keep, keep_half = _reciprocal(near), _reciprocal(near_half)  # (N, k1 + 1), (N, k_half + 1) bool
    rows, cols, vals = _encoding(dist, near, keep, near_half, keep_half)  # V's nonzeros, row-major
    if k2 != 1:
        rows, cols, vals = _query_expansion(rows, cols, vals, nearest[:, :k2])
    return _jaccard_blend(dist, rows, cols, vals, num_query, lambda_value)


def _normalise_and_rank(dist, out, k):
    """Each row of dist divided by its maximum into out (for a symmetric matrix, the released code's
    columns divided by their maxima and transposed), and each row's k nearest: (N, k) int64 indices in
    (distance, index) order, on blocks of rows."""
    n = dist.shape[1]
    block = max(1, _BLOCK_ELEMENTS // n)
    bad = torch.zeros((), dtype=torch.bool, device=dist.device)
    nearest = []
    for s in range(0, n, block):
        d = dist[s:s + block]  # (B, N)
        top = d.amax(dim=1, keepdim=True)  # NaN if the row has one
        bad |= ~(top.isfinite() & (top > 0)).all() | (d.amin() < 0)
        nearest.append(_smallest(torch.div(d, top, out=out[s:s + block]), k))
    if bad:
        raise ValueError('distance matrix: expected finite non-negative distances, not all 0 in any row '
                         '(are the features finite and not all equal?)')
    return torch.cat(nearest)


def _smallest(d, k):
    """(B, N) distances -> (B, k) int64 indices of each row's k smallest, ordered by (distance, index)."""
    n = d.shape[1]
    # one more than needed: where the k-th and the next distance differ, topk's k are the stable sort's
    vals, idx = d.topk(min(k + 1, n), dim=1, largest=False, sorted=True)
    # a run of equal distances crosses the k-th place where the k-th and the next distance are equal
    tie = torch.nonzero(vals[:, k - 1] == vals[:, k])[:, 0] if k < n else idx[:0, 0]
    idx, vals = idx[:, :k], vals[:, :k]
    # order the k by (distance, index): sort by index, then a stable sort by distance
    idx, perm = idx.sort(dim=1)
    vals = vals.gather(1, perm)
    vals, perm = vals.sort(dim=1, stable=True)
    idx = idx.gather(1, perm)
    if len(tie):  # rank these rows by exact keys
        idx[tie] = _smallest_exact(d[tie], k)
    return idx


def _smallest_exact(d, k):
    """(R, N) non-negative distances -> (R, k) indices of the k smallest in (distance, index) order, from
    int64 keys (the float32 bit pattern, monotone for non-negative floats, above the index)."""
    bits = (d.contiguous().view(torch.int32) & 0x7FFFFFFF).to(torch.int64)  # -0.0 -> +0.0
    key = (bits << 32) | torch.arange(d.shape[1], device=d.device)
    return key.topk(k, dim=1, largest=False, sorted=True).values & 0xFFFFFFFF


def _reciprocal(near):
    """(N, k) nearest lists -> (N, k) bool: near[i, m] has i among its own k nearest."""
    rows = torch.arange(len(near), device=near.device)[:, None, None]
    return (near[near] == rows).any(dim=2)  # near[near]: (N, k, k)


def _encoding(dist, near, keep, near_half, keep_half):
    """V, the k-reciprocal feature of every item: weights exp(-d) / sum over its expanded k-reciprocal
    set. Returns its nonzeros (rows, cols, vals) in row-major order, columns ascending."""
    n, k = near.shape
    kh = near_half.shape[1]
    block = max(1, _BLOCK_ELEMENTS // (k * k * kh))
    rows, cols, vals = [], [], []
    for s in range(0, n, block):
        r, rk = near[s:s + block], keep[s:s + block]  # R(i): (B, k1 + 1) items, which are reciprocal
        cand, cand_keep = near_half[r], keep_half[r]  # R'(c) of each c in the list: (B, k1 + 1, kh)
        in_r = ((cand[..., None] == r[:, None, None, :]) & rk[:, None, None, :]).any(dim=3)
        common = (in_r & cand_keep).sum(dim=2).double()  # |R'(c) & R(i)|: (B, k1 + 1)
        size = cand_keep.sum(dim=2).double()
        adds = rk & (common > 2. / 3 * size)  # the released code's float64 test
        c = torch.cat([r, cand.flatten(1)], dim=1)  # (B, (k1 + 1)(kh + 2)): R(i), then every R'(c)
        valid = torch.cat([rk, (cand_keep & adds[..., None]).flatten(1)], dim=1)
        c = torch.where(valid, c, n).sort(dim=1).values
        valid = c < n
        valid[:, 1:] &= c[:, 1:] != c[:, :-1]  # a set: drop repeats
        w = torch.where(valid, torch.exp(-dist[s:s + block].gather(1, c.clamp(max=n - 1))), 0.)
        w = w / w.sum(dim=1, keepdim=True)
        i, m = torch.nonzero(valid, as_tuple=True)
        rows.append(i + s)
        cols.append(c[i, m])
        vals.append(w[i, m])
    return torch.cat(rows), torch.cat(cols), torch.cat(vals)


def _entries(start, count, select):
    """Sparse rows given by start (R,), count (R,) -> (owner, pos) of the entries of the rows select (M,),
    in order: pos indexes the entry arrays, owner the position in select. (index_select throughout: on
    the CPU it is several times faster than indexing with a tensor.)"""
    c = count.index_select(0, select)
    owner = torch.repeat_interleave(c)
    shift = start.index_select(0, select) - (torch.cumsum(c, 0) - c)  # first entry less the run's start
    return owner, torch.arange(len(owner), device=select.device) + shift.index_select(0, owner)


def _query_expansion(rows, cols, vals, nearest):
    """V[i] = mean of V over i's k2 nearest (nearest (N, k2)), on V's nonzeros (rows, cols, vals) in
    row-major order; returns the expanded V's the same way."""
    n, k2 = nearest.shape
    count = torch.bincount(rows, minlength=n)
    start = torch.cumsum(count, 0) - count
    block = max(1, _PAIR_ELEMENTS // (k2 * max(1, int(count.max()))))
    out = []
    for s in range(0, n, block):
        owner, pos = _entries(start, count, nearest[s:s + block].flatten())  # in (i, m, column) order
        key = (owner.div(k2, rounding_mode='floor') + s) * n + cols.index_select(0, pos)  # row, column
        key, order = torch.sort(key, stable=True)  # equal keys keep the order of the k2 nearest
        key, slot = torch.unique_consecutive(key, return_inverse=True)
        total = torch.zeros(len(key), dtype=torch.float32, device=key.device)
        total.index_add_(0, slot, vals.index_select(0, pos.index_select(0, order)))  # in that order, as np.mean
        out.append((key.div(n, rounding_mode='floor'), key.remainder(n), total / k2))
    return tuple(torch.cat(x) for x in zip(*out))


def _jaccard_blend(dist, rows, cols, vals, num_query, lambda_value):
    """(1 - lambda) * Jaccard + lambda * dist over the (Q, G) probe-gallery block. V given by its nonzeros
    (rows, cols, vals) in row-major order. m[i, j] = sum over c of min(V[i, c], V[j, c]) is accumulated
    over the pairs of nonzeros sharing a column c, in the released code's order (c ascending)."""
    n, q = dist.shape[0], num_query
    g = n - q
    device = dist.device
    # the gallery rows of each column (the released code's inverted index): V[Q:] by column
    n_probe = int(torch.searchsorted(rows, q))  # rows are sorted: probe rows' nonzeros come first
    g_cols = cols[n_probe:]
    order = torch.sort(g_cols, stable=True).indices + n_probe  # by column, rows ascending within
    col_rows, col_vals = rows.index_select(0, order) - q, vals.index_select(0, order)
    col_count = torch.bincount(g_cols, minlength=n)
    col_start = torch.cumsum(col_count, 0) - col_count

    # the probe rows' nonzeros, and how many (probe nonzero, gallery nonzero) pairs each makes
    p_rows, p_cols, p_vals = rows[:n_probe], cols[:n_probe], vals[:n_probe]
    row_end = torch.cumsum(torch.bincount(p_rows, minlength=q), 0)
    pairs = torch.cumsum(torch.zeros(q, dtype=torch.int64, device=device)
                         .index_add_(0, p_rows, col_count.index_select(0, p_cols)), 0)
    # blocks of whole probe rows of about _PAIR_ELEMENTS pairs and at most that many (rows, G) sums
    max_rows = max(1, _PAIR_ELEMENTS // g)
    bounds = [0]
    while bounds[-1] < q:
        a = bounds[-1]
        fits = int(torch.searchsorted(pairs, (pairs[a - 1] if a else 0) + _PAIR_ELEMENTS, right=True))
        bounds.append(min(max(fits, a + 1), a + max_rows, q))
    row_end = row_end.tolist()
    out = torch.empty(q, g, dtype=torch.float32, device=device)
    for a, b in zip(bounds[:-1], bounds[1:]):
        e0, e1 = (row_end[a - 1] if a else 0), row_end[b - 1]
        owner, at = _entries(col_start, col_count, p_cols[e0:e1])  # (T,) pairs of nonzeros
        target = ((p_rows[e0:e1] - a) * g).index_select(0, owner) + col_rows.index_select(0, at)
        term = torch.minimum(p_vals[e0:e1].index_select(0, owner), col_vals.index_select(0, at))
        m = torch.zeros((b - a) * g, dtype=torch.float32, device=device).index_add_(0, target, term)
        m = m.view(b - a, g)
        # in place, with the released code's roundings: 1 - m / (2 - m), then (1 - lambda) J + lambda d
        jaccard = m.div_(torch.sub(2., m)).neg_().add_(1)
        torch.mul(dist[a:b, q:], lambda_value, out=out[a:b]).add_(jaccard.mul_(1 - lambda_value))
    return out
