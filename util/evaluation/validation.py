"""Validation during training: the test split's features of the current network, scored on the main process."""
from util.evaluation.extract import extract_features, gather_features
from util.evaluation.metrics import format_protocols
from util.evaluation.scoring import score_all


class Validator:
    """validator(net) -> MarsResult of `net` on the test split `db` (main process; None on the others).

    loader: this process's test loader (a shard of the tracklets under torchrun); S, temporal: clip length
    and frame pooling; amp, channels_last: as in training; rank_size: gallery items ranked per query (0: all);
    ctx: the DistContext; description: names the features in the error of a non-finite one; ap_rule: the AP
    rule; attributes: {'clothes' | 'location' | 'scale': (N,) ids} whose protocols are printed too.
    """

    def __init__(self, loader, db, S, temporal, amp, channels_last, rank_size, ctx, description='validation features',
                 ap_rule='trapezoid', attributes=None):
        self.loader, self.db, self.S, self.temporal = loader, db, S, temporal
        self.amp, self.channels_last, self.rank_size, self.ctx = amp, channels_last, rank_size, ctx
        self.description, self.ap_rule, self.attributes = description, ap_rule, attributes

    def __call__(self, net):
        ctx = self.ctx
        feats, labels, cams = extract_features(net, self.loader, self.S, ctx.device, self.temporal,
                                               frame_level=net.frame_level, amp=self.amp,
                                               channels_last=self.channels_last, progress=ctx.is_main)
        feats, labels, cams = gather_features(feats, labels, cams, ctx)
        if not ctx.is_main:
            return None
        protocols = score_all(feats.numpy(), labels.numpy(), cams.numpy(), self.db.query_idx, self.rank_size,
                              self.db.gallery_idx, source=self.description, device=ctx.device, ap_rule=self.ap_rule,
                              attributes=self.attributes)
        if len(protocols) > 1:
            print(format_protocols(protocols))
        return protocols['overall']
