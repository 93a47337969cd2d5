"""Frame-level temporal pooling (FPL) of the baseline: the S per-frame rows of a clip pooled into one."""
from util.errors import ModelConfigError

TEMPORAL_MODES = ('mean', 'max', 'Done')


def temporal_pool(t, S, mode):
    """Pool per-frame rows into per-clip rows (frame-level pooling, FPL).

    t: (B*S, D) with the S frames of each clip on consecutive rows -> (B, D).
    mode 'mean' or 'max' pools over the S frames; 'Done' returns ``t`` unchanged (the clip models
    already reduce time themselves).
    """
    if mode == 'Done':
        return t
    if mode not in TEMPORAL_MODES:
        raise ModelConfigError(f"--temporal: expected one of {', '.join(TEMPORAL_MODES)}, got {mode!r}")
    if S < 1 or t.shape[0] % S != 0:
        raise ModelConfigError(f'temporal pooling: {t.shape[0]} frame rows do not split into clips of S={S}')
    clips = t.reshape(t.shape[0] // S, S, *t.shape[1:])  # (B, S, D)
    if mode == 'mean':
        return clips.mean(dim=1)
    # max over frames with the gradient to a single frame per element, as torch.max(dim) does
    return clips.max(dim=1).values
