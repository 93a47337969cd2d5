"""The re-ID network: backbone features, BN-neck and classifier, and `build_model` for the five model types.

Module tree (and so the state_dict keys) mirrors the original release:
  features.backbone.*   ResNet-50 with NL_1..NL_4 (models.resnet.ResNet50)
  bottleneck.*          BatchNorm1d(2048), bias frozen at 0 ("BN-neck")
  classifier.weight     Linear(2048, num_class, bias=False), N(0, 0.001)
"""
from dataclasses import dataclass

import torch
import torch.nn as nn

from util.errors import ModelConfigError

from .non_local import NonLocalBlock, StripeNonLocalBlock, check_attention
from .resnet import STAGE_DEPTHS, ResNet50, frame_divisor, load_pretrained, read_pretrained, stage_heights

FEATURE_DIM = 2048


@dataclass(frozen=True)
class Variant:
    """How a non-local model type places and groups its blocks."""
    block: str               # 'normal' or 'stripe'
    subsample_layer1: bool   # phi / g max-pooled (1, 2, 2) in layer1 blocks
    group: tuple             # per stage: frames attended within (0: all frames of the clip)
    pool_after: tuple        # stages followed by max pooling of consecutive frame pairs


VARIANTS = {
    'resnet50_s1': None,  # frame-level baseline: plain ResNet-50, per-frame features
    'resnet50_NL': Variant('normal', True, (0, 0, 0, 0), ()),
    'resnet50_NL_stripe': Variant('stripe', False, (0, 0, 0, 0), ()),
    'resnet50_NL_hr': Variant('normal', False, (2, 0, 0, 0), (2, 3)),
    'resnet50_NL_stripe_hr': Variant('stripe', False, (2, 2, 2, 2), (2, 3)),
}
MODEL_TYPES = tuple(VARIANTS)
DEFAULT_NON_LAYERS = (0, 2, 3, 0)
DEFAULT_STRIPES = (16, 16, 16, 16)
CLASSIFIER_STD = 0.001  # the classifier's N(0, std) initialisation
# Smallest frames: layer3 maps of at least 2 x 1 positions (the backbone reduces frames 16x by layer3).
MIN_HEIGHT, MIN_WIDTH = 32, 16


class Features(nn.Module):
    """Backbone + average pooling: per-frame features (frame_level) or per-clip features."""

    def __init__(self, backbone, model_type, frame_level):
        super().__init__()
        self.backbone = backbone
        self.model_type = model_type
        self.frame_level = frame_level

    def check_frames(self, frames):
        _check_clip_length(self.model_type, frames, self.backbone.frame_divisor())

    def forward(self, x):
        if self.frame_level:
            if x.dim() != 4:
                raise ModelConfigError(f'{self.model_type} takes frames (B*S, 3, H, W), got shape {tuple(x.shape)}')
            fmap, _ = self.backbone(x)                       # (N, 2048, h, w)
            return fmap.mean(dim=(2, 3))                     # (N, 2048)
        if x.dim() != 5:
            raise ModelConfigError(f'{self.model_type} takes clips (B, S, 3, H, W), got shape {tuple(x.shape)}')
        b, s = x.shape[:2]
        self.check_frames(s)
        fmap, t = self.backbone(x.flatten(0, 1), s)          # (B*T', 2048, h, w)
        return fmap.unflatten(0, (b, t)).mean(dim=(1, 3, 4))  # (B, 2048)


class ReIDNet(nn.Module):
    """Features -> BN-neck -> classifier. Train: (features, logits); eval: BN-neck features."""

    def __init__(self, features, num_class, config):
        super().__init__()
        self.features = features
        self.bottleneck = nn.BatchNorm1d(FEATURE_DIM)
        self.bottleneck.bias.requires_grad_(False)  # no shift
        self.classifier = nn.Linear(FEATURE_DIM, num_class, bias=False)
        nn.init.normal_(self.classifier.weight, std=CLASSIFIER_STD)
        self.config = dict(config)
        self.model_type = config['model_type']
        self.temporal = config['temporal']
        self.frame_level = features.frame_level
        self.num_class = num_class

    def forward(self, x):
        feat = self.features(x)          # (B, 2048), or (B*S, 2048) for resnet50_s1
        bn = self.bottleneck(feat)
        if self.training:
            return feat, self.classifier(bn)
        return bn


# ---------------------------------------------------------------- construction and validation

def _int_tuple(value, name, default):
    if value is None:
        return default
    try:
        values = tuple(int(v) for v in value)
        if any(int(v) != v for v in value):
            raise ValueError
    except (TypeError, ValueError):
        raise ModelConfigError(f'{name} must be 4 integers (one per stage, layer1..layer4), got {value!r}') from None
    if len(values) != 4:
        raise ModelConfigError(
            f'{name} must be 4 integers (one per stage, layer1..layer4), got {len(values)}: {list(values)}')
    return values


def check_config(model_type, non_layers=None, stripes=None, temporal=None, stride=1, height=256, width=None,
                 S=None, attention='sdpa'):
    """Check a model configuration before anything is built or read; ModelConfigError says what is wrong.

    The one validation of the five types' options (build_model calls it; the command line calls it before any
    work). None means the default (non_layers (0, 2, 3, 0), stripes (16, 16, 16, 16), temporal 'mean' for
    resnet50_s1 and 'Done' otherwise); width and S are checked when given. Returns the normalised
    (non_layers, stripes, temporal).
    """
    if model_type not in VARIANTS:
        raise ModelConfigError(f"unknown model_type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")
    variant = VARIANTS[model_type]
    if temporal is None:
        temporal = 'mean' if variant is None else 'Done'
    if stride not in (1, 2):
        raise ModelConfigError(f'stride (of layer4) must be 1 or 2, got {stride!r}')
    check_attention(attention)
    if not isinstance(height, int) or height < MIN_HEIGHT or (width is not None and width < MIN_WIDTH):
        size = f'{height!r} x {width!r}' if width is not None else f'height {height!r}'
        raise ModelConfigError(f'frames must be at least {MIN_HEIGHT} x {MIN_WIDTH} pixels (height x width), '
                               f'got {size}')
    if variant is None:
        if temporal not in ('mean', 'max'):
            raise ModelConfigError(
                f"resnet50_s1 pools frame features with temporal 'mean' or 'max' (FPL), got {temporal!r}; "
                "'Done' is for the non-local types")
        return (0, 0, 0, 0), DEFAULT_STRIPES, temporal
    if temporal != 'Done':
        raise ModelConfigError(f"{model_type} pools inside the network: temporal must be 'Done', got {temporal!r}")
    non_layers = _int_tuple(non_layers, 'non_layers', DEFAULT_NON_LAYERS)
    for i, (n, depth) in enumerate(zip(non_layers, STAGE_DEPTHS)):
        if not 0 <= n <= depth:
            raise ModelConfigError(
                f'non_layers[{i}]={n}: layer{i + 1} has {depth} bottleneck blocks, so 0..{depth} non-local blocks')
    stripes = _int_tuple(stripes, 'stripes', DEFAULT_STRIPES)
    if variant.block == 'stripe':
        for i, (n, s, h) in enumerate(zip(non_layers, stripes, stage_heights(height, stride))):
            if n and (s < 1 or h % s):
                raise ModelConfigError(
                    f'stripes[{i}]={s} does not divide the layer{i + 1} feature height {h} '
                    f'(input height {height}); use a divisor of {h}')
    if S is not None:
        _check_clip_length(model_type, S, frame_divisor(non_layers, variant.group, variant.pool_after))
    return non_layers, stripes, temporal


def _check_clip_length(model_type, S, divisor):
    if S < 1 or S % divisor:
        raise ModelConfigError(
            f'{model_type} needs S (frames per clip) divisible by {divisor}: it attends within and '
            f'max-pools pairs of consecutive frames; got S={S}')


def build_model(model_type, num_class, non_layers=DEFAULT_NON_LAYERS, stripes=DEFAULT_STRIPES, temporal=None,
                stride=1, pretrained='imagenet', height=256, S=None, attention='sdpa'):
    """Build one of MODEL_TYPES.

    Args:
        model_type: 'resnet50_s1' (frame-level baseline) or a non-local type (see MODEL_TYPES).
        num_class: rows of the classifier (training identities).
        non_layers: non-local blocks per stage (placed after the last bottlenecks); None: (0, 2, 3, 0).
            Ignored by resnet50_s1.
        stripes: stripe count per stage for the stripe types; None: (16, 16, 16, 16).
        temporal: 'mean' / 'max' for resnet50_s1 (the caller pools the per-frame outputs), 'Done' for the
            non-local types; None picks 'mean' / 'Done'.
        stride: layer4 stride.
        pretrained: 'imagenet' (torchvision IMAGENET1K_V1, fc dropped), 'none', or a path to a ResNet-50
            state dict (fc keys ignored).
        height: input frame height, used to check that stripe counts divide the feature heights.
        S: frames per clip, if known, to check it now (the hierarchical types need S divisible by 4).
        attention: 'sdpa' (scaled_dot_product_attention) or 'explicit' (reference softmax(q k^T) v).
    """
    if not isinstance(num_class, int) or num_class < 1:
        raise ModelConfigError(f'num_class must be a positive integer, got {num_class!r}')
    non_layers, stripes, temporal = check_config(model_type, non_layers, stripes, temporal, stride, height,
                                                 attention=attention)
    variant = VARIANTS[model_type]
    weights, source = read_pretrained(pretrained)
    if variant is None:
        backbone = ResNet50(last_stride=stride)
    else:
        backbone = ResNet50(last_stride=stride, non_layers=non_layers, block=variant.block, stripes=stripes,
                            subsample_layer1=variant.subsample_layer1, group=variant.group,
                            pool_after=variant.pool_after, attention=attention)
    if weights is not None:
        load_pretrained(backbone, weights, source)
    features = Features(backbone, model_type, frame_level=variant is None)
    if S is not None and variant is not None:
        features.check_frames(S)
    config = dict(model_type=model_type, non_layers=list(non_layers), stripes=list(stripes), temporal=temporal,
                  stride=stride)
    return ReIDNet(features, num_class, config)


# ---------------------------------------------------------------- helpers

def unwrap_model(model):
    """The plain network inside DataParallel / DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, '_orig_mod'):
            model = model._orig_mod
        else:
            return model


def to_channels_last(model):
    """channels_last layout for the 2-D convolutions only: Module.to(memory_format=channels_last) refuses the
    5-D weights of the non-local blocks' Conv3d, and their 1x1x1 kernels gain nothing from it."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.to(memory_format=torch.channels_last)
    return model


def non_local_blocks(model):
    """[(name, block)] of every non-local block, in forward order (names like features.backbone.NL_2.0)."""
    return [(n, m) for n, m in unwrap_model(model).named_modules()
            if isinstance(m, (NonLocalBlock, StripeNonLocalBlock))]


def set_attention(model, impl):
    """Switch every non-local block to 'sdpa' or 'explicit' attention."""
    check_attention(impl)
    for _, block in non_local_blocks(model):
        block.attention = impl


def attention_maps(model, x):
    """Run `model` in eval mode on its input x, e.g. clips (B, S, 3, H, W), and return what every non-local
    block saw, in the order they run: [(name, block, block input (B', C, T, h, w), weights (B', Nq, Nk))].

    B' = B * (frames per clip at that stage / frames per group): one row block per attention group, groups in
    clip order. Position ordering: see NonLocalBlock / StripeNonLocalBlock.attention_weights.
    """
    captured = []

    def capture(name):
        return lambda block, args: captured.append((name, block, args[0].detach(),
                                                    block.attention_weights(args[0]).detach()))

    hooks = [block.register_forward_pre_hook(capture(name)) for name, block in non_local_blocks(model)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return captured
