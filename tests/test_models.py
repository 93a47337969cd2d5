"""Tests for models/: shapes, original key names, non-local equivalence with plain references,
checkpoints, configuration errors, pretrained weights, parameter and FLOP figures.

Small inputs (32x16 frames -> feature heights 8, 4, 2, 2) keep everything fast on two cores.
"""
import copy
import functools
import json
import os
import random
import re
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import models
import models.resnet as resnet
from benchmarks.bench_models import count_flops
from benchmarks.bench_models import main as model_cost_table
from models import (
    MODEL_TYPES,
    NonLocalBlock,
    StripeNonLocalBlock,
    attention_maps,
    build_model,
    checkpoint_num_class,
    load_checkpoint,
    non_local_blocks,
    original_state_dict,
    set_attention,
    to_channels_last,
)
from util.errors import CheckpointError, ModelConfigError

H, W = 32, 16
NL_TYPES = [t for t in MODEL_TYPES if t != 'resnet50_s1']
SMALL_STRIPES = (4, 2, 2, 2)
# shortest clips for non_layers (1, 2, 3, 1): pairs of pairs for hr, and pairs again in layer4 for stripe_hr
MIN_FRAMES = {'resnet50_NL': 4, 'resnet50_NL_stripe': 4, 'resnet50_NL_hr': 4, 'resnet50_NL_stripe_hr': 8}


@functools.lru_cache(maxsize=6)
def _built(model_type, non_layers, num_class):
    torch.manual_seed(0)
    return build_model(model_type, num_class, non_layers=non_layers, stripes=SMALL_STRIPES, pretrained='none',
                       height=H)


def small_model(model_type, non_layers=(1, 2, 3, 1), num_class=7):
    """A fresh copy of a small-input model (building ResNet-50 costs more than copying it)."""
    return copy.deepcopy(_built(model_type, tuple(non_layers), num_class))


@pytest.fixture(autouse=True, scope='module')
def one_thread_and_cache():
    # a single intra-op thread: two OpenMP threads stall badly when the two cores are shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    _built.cache_clear()


def clip_input(model_type, b=2, s=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, s, 3, H, W, generator=g)
    return x.flatten(0, 1) if model_type == 'resnet50_s1' else x


def wake_blocks(model, seed=0):
    """Give every non-local block a non-zero output BN so the attention shows in the output."""
    g = torch.Generator().manual_seed(seed)
    for _, block in non_local_blocks(model):
        bn = block.W[1]
        with torch.no_grad():
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=g) * 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.1)


# ------------------------------------------------------------------ the original's naming, restated

def _bn(prefix):
    return [f'{prefix}.{n}' for n in ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')]


def original_keys(model_type, non_layers):
    """state_dict keys of the original CNN, in order, written from the original's module layout."""
    keys = ['features.backbone.conv1.weight'] + _bn('features.backbone.bn1')
    for i, depth in enumerate((3, 4, 6, 3)):
        for j in range(depth):
            p = f'features.backbone.layer{i + 1}.{j}'
            for k in (1, 2, 3):
                keys += [f'{p}.conv{k}.weight'] + _bn(f'{p}.bn{k}')
            if j == 0:
                keys += [f'{p}.downsample.0.weight'] + _bn(f'{p}.downsample.1')
        if model_type == 'resnet50_s1':
            continue
        for n in range(non_layers[i]):
            p = f'features.backbone.NL_{i + 1}.{n}'
            sub = '.0' if (model_type == 'resnet50_NL' and i == 0) else ''
            g, theta, phi = ([f'{p}.{m}{s}.weight', f'{p}.{m}{s}.bias']
                             for m, s in (('g', sub), ('theta', ''), ('phi', sub)))
            w = [f'{p}.W.0.weight', f'{p}.W.0.bias'] + _bn(f'{p}.W.1')
            keys += g + w + theta + phi if 'stripe' not in model_type else g + theta + phi + w
    return keys + _bn('bottleneck') + ['classifier.weight']


@pytest.mark.parametrize('non_layers', [(0, 2, 3, 0), (1, 2, 3, 1)])
@pytest.mark.parametrize('model_type', MODEL_TYPES)
def test_state_dict_keys_equal_original(model_type, non_layers):
    with torch.device('meta'):
        model = build_model(model_type, 625, non_layers=non_layers, pretrained='none')
    state = original_state_dict(model)
    assert list(state) == ['module.' + k for k in original_keys(model_type, non_layers)]
    for key, value in state.items():
        if '.NL_' in key and key.endswith(('theta.weight', 'phi.weight', 'phi.0.weight')):
            c = value.shape[1]
            assert value.shape == (c // 2, c, 1, 1, 1)
    assert state['module.classifier.weight'].shape == (625, 2048)


def test_spec_example_keys_present():
    with torch.device('meta'):
        model = build_model('resnet50_NL', 625, non_layers=(0, 2, 3, 0), pretrained='none')
    keys = set(original_state_dict(model))
    for k in ('module.features.backbone.layer2.3.conv1.weight', 'module.features.backbone.NL_2.0.theta.weight',
              'module.features.backbone.NL_2.0.W.1.running_mean', 'module.bottleneck.weight',
              'module.classifier.weight'):
        assert k in keys


# ------------------------------------------------------------------ figures of SPEC section 3

@pytest.mark.parametrize('model_type, expected', [('resnet50_s1', 24_792_128)] +
                         [(t, 32_150_592) for t in NL_TYPES])
def test_parameter_counts(model_type, expected):
    with torch.device('meta'):
        model = build_model(model_type, 625, pretrained='none')
    n = sum(p.numel() for p in model.parameters())
    assert n == expected
    assert round(n / 1e6, 2) == (24.79 if model_type == 'resnet50_s1' else 32.15)


@pytest.mark.parametrize('model_type, gflops', [('resnet50_s1', 64.9), ('resnet50_NL', 127.1),
                                                ('resnet50_NL_stripe_hr', 35.3)])
def test_flops_per_clip_match_spec(model_type, gflops):
    assert round(count_flops(model_type, device='meta') / 1e9, 1) == gflops


def test_flops_sdpa_counted_like_explicit():
    model = small_model('resnet50_NL', non_layers=(0, 1, 0, 0)).eval()
    x = clip_input('resnet50_NL', b=1, s=2)
    counts = {}
    for impl in ('sdpa', 'explicit'):
        set_attention(model, impl)
        counts[impl] = count_flops(model=model, x=x)
    assert counts['sdpa'] == counts['explicit'] > 0


# ------------------------------------------------------------------ shapes and modes

@pytest.mark.parametrize('model_type', MODEL_TYPES)
def test_output_shapes_train_and_eval(model_type):
    model = small_model(model_type, num_class=5)
    x = clip_input(model_type, b=2, s=8)
    rows = 16 if model_type == 'resnet50_s1' else 2
    model.train()
    feat, logits = model(x)
    assert feat.shape == (rows, 2048) and logits.shape == (rows, 5)
    model.eval()
    with torch.no_grad():
        bn = model(x)
    assert bn.shape == (rows, 2048)
    assert model.model_type == model_type
    assert model.frame_level == (model_type == 'resnet50_s1')
    assert model.temporal == ('mean' if model_type == 'resnet50_s1' else 'Done')


def test_head_init():
    model = small_model('resnet50_NL')
    assert not model.bottleneck.bias.requires_grad and torch.all(model.bottleneck.bias == 0)
    assert torch.all(model.bottleneck.weight == 1)
    assert model.classifier.bias is None
    assert 0.0005 < model.classifier.weight.std().item() < 0.002
    assert model.bottleneck.bias not in {p for p in model.parameters() if p.requires_grad}


def test_bottlenecks_start_as_identity_without_pretrained_weights():
    """zero_init_residual: the last BN of every residual branch starts at 0 (pretrained weights replace it,
    see test_imagenet_cached_file_and_pretrained_path)."""
    backbone = small_model('resnet50_NL').features.backbone
    blocks = [m for m in backbone.modules() if isinstance(m, resnet.Bottleneck)]
    assert len(blocks) == 3 + 4 + 6 + 3
    for b in blocks:
        assert torch.all(b.bn3.weight == 0) and torch.all(b.bn2.weight == 1) and torch.all(b.bn3.bias == 0)
    x = torch.randn(2, 1024, 4, 2)
    assert torch.equal(backbone.layer3[1].eval()(x), torch.relu(x))  # no downsample: relu(x + 0)


@pytest.mark.parametrize('model_type', NL_TYPES)
def test_non_local_blocks_are_identity_at_init(model_type):
    model = small_model(model_type)
    blocks = non_local_blocks(model)
    assert len(blocks) == 1 + 2 + 3 + 1
    g = torch.Generator().manual_seed(1)
    for name, block in blocks:
        c = block.channels
        x = torch.randn(2, c, 2, 8, 4, generator=g)
        for train in (True, False):
            block.train(train)
            assert torch.equal(block(x), x), name


@pytest.mark.parametrize('model_type', ['resnet50_NL', 'resnet50_NL_stripe'])
def test_clip_features_are_mean_of_frame_features_at_init(model_type):
    """With identity blocks and no temporal pooling, a clip feature is the mean of its frames' features."""
    nl = small_model(model_type).eval()
    s1 = small_model('resnet50_s1').eval()
    s1.load_state_dict({k: v for k, v in nl.state_dict().items() if '.NL_' not in k})
    x = clip_input(model_type, b=2, s=4)
    with torch.no_grad():
        clip = nl.features(x)
        frames = s1.features(x.flatten(0, 1)).view(2, 4, -1).mean(1)
    torch.testing.assert_close(clip, frames, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ equivalence with plain references

def ref_non_local(block, x):
    """The original NonLocalBlock.forward: explicit softmax(theta^T phi) g with views and permutes."""
    b, d = x.size(0), block.inter_channels
    g = block.g(x).view(b, d, -1).permute(0, 2, 1)
    theta = block.theta(x).view(b, d, -1).permute(0, 2, 1)
    phi = block.phi(x).view(b, d, -1)
    f = torch.softmax(torch.matmul(theta, phi), dim=-1)
    y = torch.matmul(f, g).permute(0, 2, 1).contiguous().view(b, d, *x.shape[2:])
    return x + block.W(y)


def ref_stripe(block, x):
    """The original Stripe_NonLocalBlock.forward: adaptive pooling of (b*c*t, stripes, h/s, w), repeat back."""
    b, c, t, h, w = x.shape
    s, d = block.stripes, block.inter_channels
    pooled = F.adaptive_avg_pool2d(x.reshape(b * c * t, s, h // s, w), 1).reshape(b, c, t, s, 1)
    g = block.g(pooled).reshape(b, d, -1).permute(0, 2, 1)
    theta = block.theta(pooled).reshape(b, d, -1).permute(0, 2, 1)
    phi = block.phi(pooled).reshape(b, d, -1)
    y = torch.matmul(torch.softmax(torch.matmul(theta, phi), dim=-1), g)
    y = y.permute(0, 2, 1).contiguous().reshape(b, d, t, s, 1)
    wy = block.W(y).repeat(1, 1, 1, 1, h // s * w).reshape(b, c, t, h, w)
    return x + wy


# frames each stage's blocks attend within (None: all current frames) and stages followed by pair pooling
ORIGINAL_GROUPING = {
    'resnet50_NL': ((None,) * 4, ()),
    'resnet50_NL_stripe': ((None,) * 4, ()),
    'resnet50_NL_hr': ((2, None, None, None), (2, 3)),
    'resnet50_NL_stripe_hr': ((2, 2, 2, 2), (2, 3)),
}


def ref_features(model, x):
    """The original ResNet_Video_nonlocal* forward + AdaptiveAvgPool3d(1), restated with reshape(-1, group)."""
    bb = model.features.backbone
    groups, pools = ORIGINAL_GROUPING[model.model_type]
    ref_block = ref_stripe if 'stripe' in model.model_type else ref_non_local
    b, t = x.shape[:2]
    x = bb.maxpool(bb.bn1(bb.conv1(x.reshape(b * t, *x.shape[2:]))))
    for i in range(4):
        layer, nls = getattr(bb, f'layer{i + 1}'), getattr(bb, f'NL_{i + 1}')
        idx = sorted(len(layer) - (k + 1) for k in range(len(nls)))
        counter = 0
        for j in range(len(layer)):
            x = layer[j](x)
            if counter < len(idx) and j == idx[counter]:
                _, c, h, w = x.shape
                x5 = x.reshape(-1, groups[i] or t, c, h, w).permute(0, 2, 1, 3, 4)
                x = ref_block(nls[counter], x5).permute(0, 2, 1, 3, 4).reshape(-1, c, h, w)
                counter += 1
        if i + 1 in pools:
            _, c, h, w = x.shape
            x = torch.max(x.reshape(-1, 2, c, h, w), dim=1)[0]
            t //= 2
    _, c, h, w = x.shape
    x = x.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
    return nn.AdaptiveAvgPool3d(1)(x).reshape(b, -1)


@pytest.mark.parametrize('model_type', NL_TYPES)
def test_features_equal_original_forward(model_type):
    # float64: a random untrained ResNet amplifies float32 rounding too much for a tight comparison
    model = small_model(model_type).double().eval()
    wake_blocks(model)
    x = clip_input(model_type, b=2, s=MIN_FRAMES[model_type]).double()
    with torch.no_grad():
        ref = ref_features(model, x)
        for impl in ('explicit', 'sdpa'):
            set_attention(model, impl)
            torch.testing.assert_close(model.features(x), ref, rtol=1e-9, atol=1e-9)


def assert_grads_close(actual, expected, rel):
    """Gradients equal up to `rel` of the largest gradient: some (g.bias, phi.bias, W.0.bias) are zero in
    exact arithmetic (softmax and the following BatchNorm cancel them) and hold only rounding noise."""
    scale = max(g.abs().max().item() for g in expected.values())
    for name, g in expected.items():
        torch.testing.assert_close(actual[name], g, rtol=rel, atol=rel * scale, msg=name)


@pytest.mark.parametrize('kind', ['normal', 'subsample', 'stripe'])
def test_block_sdpa_equals_explicit_forward_and_grad(kind):
    torch.manual_seed(0)
    c = 64
    block = StripeNonLocalBlock(c, 4) if kind == 'stripe' else NonLocalBlock(c, subsample=kind == 'subsample')
    wake_blocks(nn.ModuleList([block]))
    x0 = torch.randn(3, c, 4, 8, 6)
    results = {}
    for impl in ('sdpa', 'explicit'):
        block.zero_grad()
        block.attention = impl
        x = x0.clone().requires_grad_(True)
        out = block(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results[impl] = (out, x.grad, {n: p.grad.clone() for n, p in block.named_parameters()})
    ref = (ref_stripe if kind == 'stripe' else ref_non_local)(block, x0)
    torch.testing.assert_close(results['explicit'][0], ref, rtol=1e-4, atol=1e-5)
    (out_s, gx_s, gp_s), (out_e, gx_e, gp_e) = results['sdpa'], results['explicit']
    torch.testing.assert_close(out_s, out_e, rtol=1e-5, atol=1e-5)
    assert_grads_close({'x': gx_s, **gp_s}, {'x': gx_e, **gp_e}, rel=1e-5)


def _graph_names(t):
    names, todo, seen = set(), [t.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    return names


def test_sdpa_runs_a_fused_kernel():
    """Transposed views would make SDPA fall back to the math path (full attention matrix in memory)."""
    torch.manual_seed(0)
    block = NonLocalBlock(16)
    x = torch.randn(2, 16, 2, 4, 4, requires_grad=True)
    names = _graph_names(block(x))
    assert any('FlashAttention' in n or 'EfficientAttention' in n for n in names), names
    assert not any(n.startswith(('SoftmaxBackward', 'SafeSoftmaxBackward')) for n in names), names
    block.attention = 'explicit'
    assert any(n.startswith('SoftmaxBackward') for n in _graph_names(block(x)))


@pytest.mark.parametrize('model_type', ['resnet50_NL', 'resnet50_NL_hr', 'resnet50_NL_stripe_hr'])
def test_model_sdpa_equals_explicit_training_step(model_type):
    """Whole network in train mode, incl. layer1 subsampling (resnet50_NL) and pairwise temporal grouping
    with normal and stripe blocks (the hr types): features,
    and gradients of the input and of every non-local parameter (ResNet weights frozen to save time;
    their gradients follow from the same upstream gradients). float64: batch statistics of a random
    network amplify float32 rounding too much for a tight comparison (blocks are compared in float32 above)."""
    model = small_model(model_type).double().train()
    wake_blocks(model)
    for name, p in model.named_parameters():
        p.requires_grad_('.NL_' in name)
    x0 = clip_input(model_type, b=2, s=MIN_FRAMES[model_type]).double()
    results = {}
    for impl in ('sdpa', 'explicit'):
        set_attention(model, impl)
        model.zero_grad()
        x = x0.clone().requires_grad_(True)
        feat, logits = model(x)
        (feat.square().mean() + logits.logsumexp(1).mean()).backward()
        results[impl] = (feat.detach(), x.grad, {n: p.grad.clone() for n, p in model.named_parameters()
                                                 if p.grad is not None})
    (f_s, gx_s, gp_s), (f_e, gx_e, gp_e) = results['sdpa'], results['explicit']
    torch.testing.assert_close(f_s, f_e, rtol=1e-9, atol=1e-9)
    assert len(gp_e) == 7 * 10  # every non-local parameter (5 convs/BN x weight, bias) got a gradient
    assert_grads_close(gp_s, gp_e, rel=1e-9)
    assert_grads_close({'x': gx_s}, {'x': gx_e}, rel=1e-9)


def test_attention_weights_shapes_and_rows():
    model = small_model('resnet50_NL_stripe_hr', non_layers=(1, 1, 1, 1)).eval()
    maps = {name: w for name, _, _, w in attention_maps(model, clip_input('resnet50_NL_stripe_hr', b=2, s=8))}
    # pairs of frames everywhere; 8 -> 4 -> 2 frames after layer2 / layer3
    # stripes (4, 2, 2, 2): 2 frames x stripes tokens per group
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        'features.backbone.NL_1.0': (8, 8, 8), 'features.backbone.NL_2.0': (8, 4, 4),
        'features.backbone.NL_3.0': (4, 4, 4), 'features.backbone.NL_4.0': (2, 4, 4)}
    for v in maps.values():
        torch.testing.assert_close(v.sum(-1), torch.ones(v.shape[:2]))

    nvan = small_model('resnet50_NL', non_layers=(1, 1, 0, 0)).eval()
    maps = {name: w for name, _, _, w in attention_maps(nvan, clip_input('resnet50_NL', b=2, s=4))}
    assert tuple(maps['features.backbone.NL_1.0'].shape) == (2, 4 * 8 * 4, 4 * 4 * 2)  # keys subsampled
    assert tuple(maps['features.backbone.NL_2.0'].shape) == (2, 4 * 4 * 2, 4 * 4 * 2)


def test_attention_weights_reproduce_block_output():
    torch.manual_seed(0)
    block = NonLocalBlock(16)
    wake_blocks(nn.ModuleList([block]))
    block.eval()
    x = torch.randn(2, 16, 3, 4, 2)
    a = block.attention_weights(x)                                     # (2, 24, 24), (t, h, w) order
    v = block.g(x).flatten(2).transpose(1, 2)
    y = (a @ v).transpose(1, 2).reshape(2, 8, 3, 4, 2)
    torch.testing.assert_close(block(x), x + block.W(y))


# ------------------------------------------------------------------ checkpoints

def meta_model(model_type, non_layers=(0, 2, 3, 0), num_class=9):
    with torch.device('meta'):
        return build_model(model_type, num_class, non_layers=non_layers, pretrained='none')


def save_shapes_only(model, path, drop=()):
    """An original-format file with the model's keys and shapes, each tensor a stride-0 view of one
    element so the file stays tiny; enough for the key and shape checks that run before loading."""
    state = {k: torch.zeros(()).expand(v.shape) for k, v in original_state_dict(model).items()
             if not any(d in k for d in drop)}
    torch.save(state, path)


@pytest.mark.parametrize('fmt', ['original', 'plain', 'dict'])
def test_checkpoint_round_trip(tmp_path, fmt):
    src = small_model('resnet50_NL_stripe_hr').eval()
    wake_blocks(src)
    state = original_state_dict(src)
    obj = {'original': state, 'plain': src.state_dict(),
           'dict': {'model': state, 'config': src.config}}[fmt]
    path = tmp_path / 'ckpt.pth'
    torch.save(obj, path)
    dst = small_model('resnet50_NL_stripe_hr').eval()
    load_checkpoint(dst, path)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    if fmt == 'original':
        x = clip_input('resnet50_NL_stripe_hr', b=1, s=8)
        with torch.no_grad():
            assert torch.equal(src(x), dst(x))
    assert checkpoint_num_class(path) == 7


def test_original_state_dict_unwraps_wrappers(tmp_path):
    model = meta_model('resnet50_NL')
    expected = list(original_state_dict(model))
    assert list(original_state_dict(nn.DataParallel(model))) == expected == list(nn.DataParallel(model).state_dict())

    class Compiled(nn.Module):  # what torch.compile returns: the module under _orig_mod
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner
    assert list(original_state_dict(nn.DataParallel(Compiled(model)))) == expected


def test_original_state_dict_is_in_the_default_layout():
    """A channels_last model saves standard-layout tensors with the same values (files do not depend on
    --channels_last)."""
    model = small_model('resnet50_NL')
    reference = original_state_dict(model)
    to_channels_last(model)
    assert not model.features.backbone.conv1.weight.is_contiguous()
    state = original_state_dict(model)
    assert list(state) == list(reference)
    assert all(v.is_contiguous() and v.device.type == 'cpu' and torch.equal(v, reference[k]) for k, v in state.items())


def test_checkpoint_of_other_configuration_is_explained(tmp_path):
    path = tmp_path / 'nvan.pth'
    save_shapes_only(meta_model('resnet50_NL', non_layers=(1, 2, 3, 0)), path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(meta_model('resnet50_NL', non_layers=(0, 2, 3, 0)), path)
    msg = str(e.value)
    assert '\n' not in msg
    assert msg.startswith(f'checkpoint {path} does not fit resnet50_NL --non_layers 0 2 3 0, 9 classes: ')
    assert 'unexpected keys 13 (features.backbone.NL_1.0.g.0.weight' in msg
    assert msg.endswith('the file looks like --model_type resnet50_NL --non_layers 1 2 3 0, 9 classes')

    save_shapes_only(meta_model('resnet50_NL_hr', non_layers=(1, 2, 3, 0)), path)
    with pytest.raises(CheckpointError, match=r'looks like --model_type resnet50_NL_stripe or resnet50_NL_hr or '
                                              r'resnet50_NL_stripe_hr --non_layers 1 2 3 0 \(stripes are not'):
        load_checkpoint(meta_model('resnet50_NL', non_layers=(1, 2, 3, 0)), path)

    save_shapes_only(meta_model('resnet50_s1'), path)
    with pytest.raises(CheckpointError, match=r'missing keys 84 .*looks like --model_type resnet50_s1, 9 classes'):
        load_checkpoint(meta_model('resnet50_NL_stripe', non_layers=(1, 2, 3, 1)), path)
    with pytest.raises(CheckpointError,
                       match=r'shapes file vs model 1 \(classifier.weight \(9, 2048\) vs \(4, 2048\)\)'):
        load_checkpoint(meta_model('resnet50_s1', num_class=4), path)
    assert checkpoint_num_class(path) == 9



def test_checkpoint_without_num_batches_tracked_loads(tmp_path):
    """Files written by torch < 0.4.1 lack num_batches_tracked; BatchNorm fills it in."""
    model = small_model('resnet50_s1')
    save_shapes_only(model, tmp_path / 'old.pth', drop=('num_batches_tracked',))
    load_checkpoint(model, tmp_path / 'old.pth')
    assert torch.all(model.classifier.weight == 0) and torch.all(model.features.backbone.bn1.running_var == 0)


def test_checkpoint_config_mismatch_and_bad_files(tmp_path):
    path = tmp_path / 'c.pth'
    hr = meta_model('resnet50_NL_hr')
    state = {k: torch.zeros(()).expand(v.shape) for k, v in original_state_dict(hr).items()}
    torch.save({'model': state, 'config': hr.config}, path)
    with pytest.raises(CheckpointError, match=r"its configuration \(saved in the file\) differs in --model_type "
                                              r"\(file resnet50_NL_hr, model resnet50_NL_stripe_hr\); the file was "
                                              r"saved by --model_type resnet50_NL_hr --non_layers 0 2 3 0 "
                                              r"--temporal Done$"):
        load_checkpoint(meta_model('resnet50_NL_stripe_hr'), path)
    with pytest.raises(CheckpointError, match='no such file'):
        load_checkpoint(hr, tmp_path / 'missing.pth')
    torch.save([1, 2], tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match='expected a state dict'):
        load_checkpoint(hr, tmp_path / 'list.pth')


@pytest.mark.parametrize('content, reason', [
    (b'not a checkpoint', r'not a PyTorch file: it starts with bytes 6e 6f 74 20 61 20 63 68, where torch.save '
                          r'writes a zip archive \(50 4b 03 04\) or a pickle \(80\)\)$'),
    (bytes([7]) + random.Random(0).randbytes(2000), r'not a PyTorch file: it starts with bytes 07 '),
    (b'', r'the file is empty\)$'),
    ('module', r'holds pickled Python objects \(torch.nn.modules.linear.Linear\), not only tensors: save '
               r'model.state_dict\(\) instead\)$'),
    ('truncated', r'RuntimeError: PytorchStreamReader failed'),
])
def test_unreadable_checkpoint_is_one_line(tmp_path, content, reason):
    """Instead of torch's paragraphs of weights_only advice: what the file is, in one line."""
    path = tmp_path / 'c.pth'
    if content == 'module':
        torch.save(nn.Linear(2, 2), path)
    elif content == 'truncated':
        torch.save({'w': torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    for read in (checkpoint_num_class, lambda p: load_checkpoint(meta_model('resnet50_s1'), p)):
        with pytest.raises(CheckpointError) as err:
            read(path)
        message = str(err.value)
        assert '\n' not in message and message.startswith(f'checkpoint {path}: cannot be read as a PyTorch file (')
        assert re.search(reason, message), message


def test_non_finite_checkpoint_tensor_is_refused(tmp_path):
    model = meta_model('resnet50_s1')
    state = {k: torch.zeros(()).expand(v.shape) for k, v in original_state_dict(model).items()}
    state['module.bottleneck.running_var'] = torch.tensor([1.0, float('nan'), float('inf'), 2.0]).repeat(512)
    state['module.classifier.weight'] = torch.full((9, 2048), float('-inf'))
    torch.save(state, tmp_path / 'nan.pth')
    with pytest.raises(CheckpointError, match=r'nan.pth: tensor module.bottleneck.running_var holds 1024 NaN or '
                                              r'infinite values of 2048 \(and 1 more tensors\); the run that wrote '
                                              r'it diverged'):
        load_checkpoint(model, tmp_path / 'nan.pth')
    with pytest.raises(CheckpointError,
                       match=r'pretrained.pth: tensor bn1.weight holds 64 NaN or infinite values of 64;'):
        pretrained = {k[len('module.features.backbone.'):]: v for k, v in state.items() if 'backbone' in k}
        pretrained['bn1.weight'] = torch.full((64,), float('nan'))
        torch.save(pretrained, tmp_path / 'pretrained.pth')
        build_model('resnet50_s1', 9, pretrained=str(tmp_path / 'pretrained.pth'))


def _best_file(tmp_path, model, config, name='ckpt_best.pth'):
    """ckpt_best.pth + ckpt_best.json as a training run writes them (tiny stride-0 tensors)."""
    from models.checkpoint import save_best_weights
    state = {k: torch.zeros(()).expand(v.shape) for k, v in original_state_dict(model).items()}
    save_best_weights(tmp_path / name, state, config)
    return tmp_path / name


@pytest.mark.filterwarnings('ignore:for .*copying from a non-meta parameter')  # loading into shape-only models
def test_best_weights_keep_the_original_format_and_carry_their_configuration(tmp_path):
    nl = meta_model('resnet50_NL_stripe', non_layers=(1, 2, 3, 0))
    config = dict(nl.config, S=4, height=32, width=16, num_class=9)
    path = _best_file(tmp_path, nl, config)
    state = torch.load(path)  # what the original code does: a plain 'module.' state dict
    assert isinstance(state, dict) and list(state) == list(original_state_dict(nl))
    record = json.loads((tmp_path / 'ckpt_best.json').read_text())
    assert {k: record[k] for k in config} == json.loads(json.dumps(config))
    assert record['weights'] == 'ckpt_best.pth' and len(record['weights_sha256']) == 64

    assert load_checkpoint(nl, path) == []
    assert load_checkpoint(nl, path, inputs={'S': 4, 'height': 32, 'width': 16, 'lr': 1}) == []
    assert load_checkpoint(nl, path, inputs={'S': 8, 'height': 64, 'width': 16}) == [
        f'note: {path} was trained with --S 4 --height 32 --width 16; this run uses --S 8 --height 64 --width 16']
    # weights alone fit every non-local type with the same non_layers; the recorded configuration does not
    for model_type, differ in [('resnet50_NL_hr', '--model_type (file resnet50_NL_stripe, model resnet50_NL_hr)'),
                               ('resnet50_NL_stripe_hr', '--model_type (file resnet50_NL_stripe, model '
                                                         'resnet50_NL_stripe_hr)')]:
        other = meta_model(model_type, non_layers=(1, 2, 3, 0))
        with pytest.raises(CheckpointError, match=re.escape(f'its configuration (in ckpt_best.json) differs in '
                                                            f'{differ}; the file was saved by --model_type '
                                                            'resnet50_NL_stripe --non_layers 1 2 3 0 --stripes 16 16 '
                                                            '16 16 --temporal Done, 9 classes')):
            load_checkpoint(other, path)
    with torch.device('meta'):
        striped = build_model('resnet50_NL_stripe', 9, non_layers=(1, 2, 3, 0), stripes=(8, 8, 8, 8),
                              pretrained='none')
    with pytest.raises(CheckpointError, match=r'differs in --stripes \(file 16 16 16 16, model 8 8 8 8\);'):
        load_checkpoint(striped, path)

    # the baseline: --temporal and --stride have no parameters either
    s1 = meta_model('resnet50_s1')
    path = _best_file(tmp_path, s1, dict(s1.config, S=4, height=32, width=16, num_class=9), 's1.pth')
    with torch.device('meta'):
        pooled_max = build_model('resnet50_s1', 9, temporal='max', stride=2, pretrained='none')
    with pytest.raises(CheckpointError, match=r"differs in --temporal \(file mean, model max\), --stride \(file 1, "
                                              r"model 2\); the file was saved by --model_type resnet50_s1 "
                                              r"--temporal mean, 9 classes$"):
        load_checkpoint(pooled_max, path)

    # a .json that does not describe the weights beside it is not used, and says so
    torch.save(original_state_dict(s1), tmp_path / 's1.pth')
    assert load_checkpoint(pooled_max, tmp_path / 's1.pth') == [
        f'note: {tmp_path / "s1.json"} describes other weights than {tmp_path / "s1.pth"} (checksum differs); '
        'the configuration is not checked']
    (tmp_path / 's1.json').write_text('{"format": "something else"}')
    assert 'is not readable' in load_checkpoint(pooled_max, tmp_path / 's1.pth')[0]


def test_load_ckpt_of_another_training_set_reinitialises_the_classifier(tmp_path):
    src = small_model('resnet50_NL', num_class=7)
    wake_blocks(src)
    path = tmp_path / 'src.pth'
    torch.save(original_state_dict(src), path)
    dst = small_model('resnet50_NL', num_class=5)
    with torch.no_grad():
        dst.classifier.weight.fill_(1.0)
    with pytest.raises(CheckpointError, match=r'classifier.weight \(7, 2048\) vs \(5, 2048\)'):
        load_checkpoint(dst, path)  # evaluate.py: any mismatch is an error
    torch.manual_seed(0)
    notes = load_checkpoint(dst, path, new_classifier=True)
    assert notes == [f'note: {path} has a classifier of 7 classes, this training set 5: classifier '
                     're-initialised, every other weight loaded']
    for k, v in src.state_dict().items():
        if k != 'classifier.weight':
            assert torch.equal(dst.state_dict()[k], v), k
    weight = dst.classifier.weight
    assert weight.shape == (5, 2048) and abs(weight.std().item() - 0.001) < 1e-4 and abs(weight.mean().item()) < 1e-4
    torch.manual_seed(0)
    assert torch.equal(nn.init.normal_(torch.empty(5, 2048), std=0.001), weight)  # as build_model draws it

    # any other mismatch stays an error
    other = small_model('resnet50_NL', non_layers=(0, 2, 3, 0), num_class=5)
    with pytest.raises(CheckpointError, match=r'unexpected keys'):
        load_checkpoint(other, path, new_classifier=True)
    torch.save({'model': original_state_dict(src), 'config': dict(src.config, num_class=7)}, path)
    assert len(load_checkpoint(dst, path, new_classifier=True)) == 1
    with pytest.raises(CheckpointError, match=r'classes \(file 7, model 5\)'):
        load_checkpoint(dst, path)


# ------------------------------------------------------------------ configuration errors

@pytest.mark.parametrize('kwargs, match', [
    (dict(model_type='resnet50'), "unknown model_type 'resnet50'; expected one of resnet50_s1, resnet50_NL"),
    (dict(non_layers=(0, 2, 3)), r'non_layers must be 4 integers .* got 3: \[0, 2, 3\]'),
    (dict(non_layers=(4, 2, 3, 0)), r'non_layers\[0\]=4: layer1 has 3 bottleneck blocks'),
    (dict(non_layers=(0, 2, 7, 0)), r'non_layers\[2\]=7: layer3 has 6 bottleneck blocks'),
    (dict(model_type='resnet50_NL_stripe', stripes=(16, 10, 16, 16)),
     r'stripes\[1\]=10 does not divide the layer2 feature height 32 \(input height 256\)'),
    (dict(model_type='resnet50_NL_stripe_hr', stripes=(16, 16, 32, 16)),
     r'stripes\[2\]=32 does not divide the layer3 feature height 16'),
    (dict(model_type='resnet50_NL_stripe', stripes=(16, 16, 16)), r'stripes must be 4 integers'),
    (dict(model_type='resnet50_NL_hr', S=6), r'resnet50_NL_hr needs S \(frames per clip\) divisible by 4.*S=6'),
    (dict(model_type='resnet50_NL_stripe_hr', S=6), r'divisible by 4'),
    (dict(model_type='resnet50_NL_stripe_hr', non_layers=(0, 2, 3, 1), S=4), r'divisible by 8.*S=4'),
    (dict(model_type='resnet50_NL', temporal='mean'), r"temporal must be 'Done'"),
    (dict(model_type='resnet50_s1', temporal='Done'), r"temporal 'mean' or 'max'"),
    (dict(stride=3), 'stride'),
    (dict(attention='flash'), 'attention must be one of sdpa, explicit'),
])
def test_invalid_configurations(kwargs, match):
    kwargs = {'model_type': 'resnet50_NL', **kwargs}
    with torch.device('meta'), pytest.raises(ModelConfigError, match=match):
        build_model(num_class=10, pretrained='none', **kwargs)


def test_invalid_configurations_ignored_where_unused():
    with torch.device('meta'):
        build_model('resnet50_s1', 10, non_layers=None, stripes=None, pretrained='none')
        build_model('resnet50_NL', 10, stripes=(7, 7, 7, 7), pretrained='none')    # stripes unused by NL
        build_model('resnet50_NL_stripe', 10, non_layers=(0, 2, 0, 0), stripes=(1, 16, 5, 5), pretrained='none')
        build_model('resnet50_NL', 10, S=6, pretrained='none')


def test_forward_errors():
    hr = small_model('resnet50_NL_hr', non_layers=(0, 1, 0, 0)).eval()
    with torch.no_grad(), pytest.raises(ModelConfigError, match=r'divisible by 4.*got S=6'):
        hr(torch.zeros(1, 6, 3, H, W))
    with pytest.raises(ModelConfigError, match=r'takes clips \(B, S, 3, H, W\)'):
        hr(torch.zeros(6, 3, H, W))
    s1 = small_model('resnet50_s1').eval()
    with pytest.raises(ModelConfigError, match=r'resnet50_s1 takes frames \(B\*S, 3, H, W\)'):
        s1(torch.zeros(1, 6, 3, H, W))
    block = StripeNonLocalBlock(8, 3)
    with pytest.raises(ModelConfigError, match='feature height 8 is not divisible by stripes=3'):
        block(torch.zeros(1, 8, 2, 8, 4))


# ------------------------------------------------------------------ pretrained weights

def test_imagenet_offline_fails_at_once_naming_the_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setattr(resnet, '_reachable', lambda *a, **k: False)
    expected = os.path.join(str(tmp_path), 'hub', 'checkpoints', 'resnet50-0676ba61.pth')
    assert models.imagenet_weights_path() == expected
    with torch.device('meta'), pytest.raises(CheckpointError) as e:
        build_model('resnet50_s1', 10, pretrained='imagenet')
    msg = str(e.value)
    assert expected in msg and '--pretrained none' in msg and '--pretrained PATH' in msg and '\n' not in msg


def test_imagenet_cached_file_and_pretrained_path(tmp_path, monkeypatch):
    torchvision = pytest.importorskip('torchvision')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setattr(resnet, '_reachable', lambda *a, **k: pytest.fail('no network probe with a cached file'))
    reference = torchvision.models.resnet50().state_dict()
    path = models.imagenet_weights_path()
    os.makedirs(os.path.dirname(path))
    torch.save(reference, path)
    # a path, in the layout of older torchvision files (no num_batches_tracked)
    old = str(tmp_path / 'old.pth')
    torch.save({k: v for k, v in reference.items() if not k.endswith('num_batches_tracked')}, old)
    for pretrained in ('imagenet', old):
        backbone = build_model('resnet50_NL', 10, pretrained=pretrained).features.backbone.state_dict()
        for k, v in reference.items():
            if not k.startswith('fc.'):
                assert torch.equal(backbone[k], v), (pretrained, k)
    del reference['layer4.2.bn3.weight']
    torch.save(reference, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match=r'not a torchvision ResNet-50 state dict \(1 missing keys'):
        build_model('resnet50_s1', 10, pretrained=str(tmp_path / 'bad.pth'))
    with pytest.raises(CheckpointError, match='no such file'):
        build_model('resnet50_s1', 10, pretrained=str(tmp_path / 'nothing.pth'))


def test_model_cost_table_without_training(capsys):
    assert model_cost_table(['--no_train', '--types', 'resnet50_s1', 'resnet50_NL_stripe_hr']) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith('| resnet50')]
    assert rows == ['| resnet50_s1 | 24.79 | 64.9 | - | - | - |',
                    '| resnet50_NL_stripe_hr | 32.15 | 35.3 | - | - | - |']


def test_models_package_stands_alone_with_the_error_and_io_modules(tmp_path):
    """models/ copied into another project beside util/errors.py and util/io.py only: it builds every part,
    saves the original key format and loads it back strictly, without importing any other project module."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copytree(os.path.join(root, 'models'), tmp_path / 'models', ignore=shutil.ignore_patterns('__pycache__'))
    (tmp_path / 'util').mkdir()
    (tmp_path / 'util' / '__init__.py').write_text('')
    for name in ('errors.py', 'io.py'):
        shutil.copy(os.path.join(root, 'util', name), tmp_path / 'util' / name)
    code = ("import sys, torch, models, models.export\n"
            "config = dict(stripes=(2, 2, 2, 2), height=64, S=4)\n"
            "m = models.build_model('resnet50_NL_stripe_hr', 5, pretrained='none', **config)\n"
            "torch.save(models.original_state_dict(m), 'w.pth')\n"
            "m2, notes = models.load_model('w.pth', 'resnet50_NL_stripe_hr', **config)\n"
            "assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))\n"
            "print(models.__file__)\n"
            "print(' '.join(sorted(k for k in sys.modules if k.split('.')[0] == 'util')))\n")
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': str(tmp_path), 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, util_modules = proc.stdout.splitlines()
    assert where == str(tmp_path / 'models' / '__init__.py')
    assert util_modules.split() == ['util', 'util.errors', 'util.io']
