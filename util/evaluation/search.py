"""Search a gallery of tracklet features: chunked cosine top-k, re-ranked top-k, the picture.

A gallery features file (util.evaluation.features_file, read memory-mapped) of 100,000 tracklets (800 MB of
float32 features) is scored ``chunk`` rows at a time in bounded memory.
"""
import numpy as np

from util.errors import DataError
from util.evaluation.metrics import unit_rows

SEARCH_CHUNK = 4096  # gallery rows scored at once: (Q, chunk) similarities, (chunk, D) features


# -- ranking -------------------------------------------------------------------------------------------------

def _rank_keys(sims, index):
    """int64 keys ordering (similarity descending, gallery row ascending): unique, so a partial sort of them
    is exact whatever the ties. The float32 bits are mapped to integers in the order of the floats."""
    bits = np.where(np.isnan(sims), -np.inf, sims).astype(np.float32).view(np.int32)   # zero features last
    ordered = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)
    return -ordered * (1 << 32) + index


def _best(sims, index, k):
    """The k best columns of each row of (Q, M) similarities and their gallery rows: (Q, k), (Q, k)."""
    keys = _rank_keys(sims, index)
    if keys.shape[1] > k:
        keys = np.take_along_axis(keys, np.argpartition(keys, k - 1, axis=1)[:, :k], 1)
    keys.sort(axis=1)
    ordered = (-(keys >> 32)).astype(np.int32)
    sims = np.where(ordered < 0, ordered ^ np.int32(0x7FFFFFFF), ordered).view(np.float32)
    return keys & 0xFFFFFFFF, sims


def cosine_topk(query, gallery, k, chunk=SEARCH_CHUNK):
    """The k gallery rows most cosine-similar to each query: (Q, k) int64 rows, (Q, k) float32 similarities.

    The gallery (an array or a memmap) is read ``chunk`` rows at a time and merged into a running top-k, so
    memory is O(Q * (chunk + k) + chunk * D) whatever the gallery size; the result equals a full sort
    (similarity descending, ties by gallery row)."""
    q = unit_rows(np.asarray(query, dtype=np.float32))[0]                # (Q, D)
    n = len(gallery)
    k = min(int(k), n)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    best_s = np.zeros((len(q), 0), dtype=np.float32)
    for lo in range(0, n, chunk):
        g = unit_rows(np.asarray(gallery[lo:lo + chunk], dtype=np.float32))[0]  # (c, D)
        sims = np.concatenate([best_s, q @ g.T], axis=1)                 # (Q, k + c)
        index = np.concatenate([best_i, np.broadcast_to(np.arange(lo, lo + len(g)), (len(q), len(g)))], axis=1)
        best_i, best_s = _best(sims, index, k)
    return best_i, best_s


def check_dimensions(query, gallery, query_name, gallery_name):
    if query.shape[1] != gallery.shape[1]:
        raise DataError(f'{gallery_name}: {gallery.shape[1]}-d features, but the query {query_name} has '
                        f'{query.shape[1]}-d features (embed both with the same model)')


def reranked_topk(query, gallery, k, k1=20, k2=6, lambda_value=0.3, device='cpu'):
    """k-reciprocal re-ranking (util.evaluation.rerank, SPEC 10) of the whole gallery: (Q, k) rows by re-ranked distance
    ascending (ties by gallery row), and their (Q, k) distances. Needs the (Q + N)^2 distances in memory."""
    import torch

    from util.evaluation.rerank import k_reciprocal_distance
    probe, items = (torch.tensor(np.asarray(x, dtype=np.float32), device=device) for x in (query, gallery))
    try:
        dist = k_reciprocal_distance(probe, items, k1, k2, lambda_value).cpu().numpy()      # (Q, N)
    except ValueError as err:  # k1 / k2 too large for this probe + gallery, lambda out of range
        raise DataError(f'--rerank: {err}') from None
    order = np.argsort(dist, axis=1, kind='stable')[:, :min(int(k), dist.shape[1])]
    return order, np.take_along_axis(dist, order, 1)
