"""Validation during training: the test split's features of the current network, scored on the main process."""
from util.evaluation.extract import extract_features, gather_features
from util.evaluation.scoring import score


class Validator:
    """validator(net) -> MarsResult of `net` on the test split `db` (main process; None on the others).

    loader: this process's test loader (a shard of the tracklets under torchrun); S, temporal: clip length
    and frame pooling; amp, channels_last: as in training; rank_size: gallery items ranked per query (0: all);
    ctx: the DistContext; description: names the features in the error of a non-finite one.
    """

    def __init__(self, loader, db, S, temporal, amp, channels_last, rank_size, ctx, description='validation features'):
        self.loader, self.db, self.S, self.temporal = loader, db, S, temporal
        self.amp, self.channels_last, self.rank_size, self.ctx = amp, channels_last, rank_size, ctx
        self.description = description

    def __call__(self, net):
        ctx = self.ctx
        feats, labels, cams = extract_features(net, self.loader, self.S, ctx.device, self.temporal,
                                               frame_level=net.frame_level, amp=self.amp,
                                               channels_last=self.channels_last, progress=ctx.is_main)
        feats, labels, cams = gather_features(feats, labels, cams, ctx)
        if not ctx.is_main:
            return None
        return score(feats.numpy(), labels.numpy(), cams.numpy(), self.db.query_idx, self.rank_size,
                     self.db.gallery_idx, source=self.description, device=ctx.device)
