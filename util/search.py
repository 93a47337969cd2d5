"""Search a gallery of tracklet features: the tracklet features file, chunked cosine top-k, the picture.

The features file of extract_features.py is evaluate.py's ``--save_features`` file (features, labels, cams,
query_idx) plus ``paths``, the tracklet folders. ``np.savez`` stores its arrays uncompressed, so
:func:`open_features` maps the features from the file instead of reading them: a gallery of 100,000
tracklets (800 MB of float32 features) is scored ``chunk`` rows at a time in bounded memory.
"""
import os
import zipfile

import numpy as np

from util.errors import BROKEN_DEPENDENCY, DataError

SEARCH_CHUNK = 4096  # gallery rows scored at once: (Q, chunk) similarities, (chunk, D) features


# -- the tracklet features file ------------------------------------------------------------------------------

def save_tracklet_features(path, features, paths, labels, cams, test_sampling='chunks', **extra):
    """Write extract_features.py's file through evaluate.py's writer, so `evaluate.py --features` scores it.

    query_idx: every tracklet with a real identity (pid > 0; -1 is unknown or junk, 0 MARS's distractors),
    each ranked against all tracklets (itself included, which the junk rule skips), as the MARS protocol
    ranks a query against the whole test split. ``extra``: more (N,) arrays stored as given (the camera
    tracklets' track_ids, first_frame, last_frame, camera_names)."""
    from util.evaluation import save_features
    labels = np.asarray(labels, dtype=np.int64)
    save_features(path, features, labels, cams, np.flatnonzero(labels > 0), test_sampling=test_sampling,
                  paths=np.asarray([os.fspath(p) for p in paths], dtype=str), **extra)


def _member_memmap(path, name):
    """A read-only memmap of an uncompressed ``name`` (.npy) inside the .npz at ``path``, or None."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, 'rb') as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the local file header: name and extra-field lengths at bytes 26..29
        f.seek(info.header_offset + 30 + int.from_bytes(local[26:28], 'little')
               + int.from_bytes(local[28:30], 'little'))
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(f))
        if read_header is None:
            return None
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        return None
    return np.memmap(path, dtype=dtype, mode='r', shape=shape, order='F' if fortran else 'C', offset=offset)


def open_features(path, what='features file'):
    """Read a features file (extract_features.py's or evaluate.py --save_features'): dict of features
    ((N, D), memory-mapped when stored uncompressed), labels, cams (N,) and paths ((N,) or None)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f'{what} {path}: no such file')
    try:
        with np.load(path, allow_pickle=False) as data:
            if 'features' not in data.files:
                raise DataError(f'{what} {path}: no features array (found {", ".join(data.files) or "none"}); '
                                f'expected a file of extract_features.py or evaluate.py --save_features')
            out = {k: (data[k] if k in data.files else None) for k in ('labels', 'cams', 'paths')}
        features = _member_memmap(path, 'features.npy')
        if features is None:
            with np.load(path, allow_pickle=False) as data:
                features = data['features']
    except (DataError, *BROKEN_DEPENDENCY):
        raise
    except Exception as err:  # zipfile, pickle and format errors of a damaged file: one line for the user
        raise DataError(f'{what} {path}: not a readable .npz file ({type(err).__name__}: {err})') from None
    n = len(features)
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.floating):
        raise DataError(f'{what} {path}: expected float features (N, D), got {features.dtype} {features.shape}')
    for key in ('labels', 'cams', 'paths'):
        if out[key] is None:
            out[key] = None if key == 'paths' else np.full(n, -1, dtype=np.int64)
        elif out[key].shape != (n,):
            raise DataError(f'{what} {path}: {key} has shape {out[key].shape}, expected ({n},) for {n} features')
    out['features'] = features
    return out


# -- ranking -------------------------------------------------------------------------------------------------

def _unit(x):
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(invalid='ignore', divide='ignore'):
        return x / np.linalg.norm(x, axis=1, keepdims=True)


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
    q = _unit(query)                                                     # (Q, D)
    n = len(gallery)
    k = min(int(k), n)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    best_s = np.zeros((len(q), 0), dtype=np.float32)
    for lo in range(0, n, chunk):
        g = _unit(gallery[lo:lo + chunk])                                # (c, D)
        sims = np.concatenate([best_s, q @ g.T], axis=1)                 # (Q, k + c)
        index = np.concatenate([best_i, np.broadcast_to(np.arange(lo, lo + len(g)), (len(q), len(g)))], axis=1)
        best_i, best_s = _best(sims, index, k)
    return best_i, best_s


def check_dimensions(query, gallery, query_name, gallery_name):
    if query.shape[1] != gallery.shape[1]:
        raise DataError(f'{gallery_name}: {gallery.shape[1]}-d features, but the query {query_name} has '
                        f'{query.shape[1]}-d features (embed both with the same model)')


def reranked_topk(query, gallery, k, k1=20, k2=6, lambda_value=0.3, device='cpu'):
    """k-reciprocal re-ranking (util.rerank, SPEC 10) of the whole gallery: (Q, k) rows by re-ranked distance
    ascending (ties by gallery row), and their (Q, k) distances. Needs the (Q + N)^2 distances in memory."""
    import torch
    from util.rerank import k_reciprocal_distance
    probe, items = (torch.tensor(np.asarray(x, dtype=np.float32), device=device) for x in (query, gallery))
    try:
        dist = k_reciprocal_distance(probe, items, k1, k2, lambda_value).cpu().numpy()      # (Q, N)
    except ValueError as err:  # k1 / k2 too large for this probe + gallery, lambda out of range
        raise DataError(f'--rerank: {err}') from None
    order = np.argsort(dist, axis=1, kind='stable')[:, :min(int(k), dist.shape[1])]
    return order, np.take_along_axis(dist, order, 1)


# -- the picture ---------------------------------------------------------------------------------------------

def draw_search(path, query_frames, query_title, ranked, S, height=128, width=64, query_labels=None):
    """One PNG in the layout of util.visualize's ranked results: the query's S test frames over the first
    test frame of each ranked gallery tracklet.

    query_frames: the S frame paths (query_labels: a caption each, default f0..). ranked: [(first frame path,
    caption lines, kind)] in ranked order, kind 'good' / 'wrong' / 'junk' when the identities are known, else
    None (a neutral border)."""
    from util.checkpoint import atomic_save
    from util.frames import load_frame
    from util.pictures.ranks import KIND_COLOURS, QUERY_COLOUR, _Canvas, _font, ranked_image_size
    from PIL import Image

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
