"""ResNet-50 over the frames of video clips, with non-local blocks and hierarchical temporal reduction.

One backbone serves all five model types. A clip batch travels through it as frames (B*T, C, H, W),
the T frames of a clip consecutive. Per stage i (1..4) it can
  * insert a non-local block after each of the last ``non_layers[i-1]`` bottlenecks, attending
    within groups of ``group[i-1]`` consecutive frames (0: all frames of the clip at that stage);
  * max-pool consecutive frame pairs after the stage (T -> T/2), for the stages in ``pool_after``.

Module names follow torchvision and the original release (conv1, bn1, layer1..layer4, NL_1..NL_4),
so torchvision ImageNet weights and the released checkpoints load without renaming.
"""
import os
import socket
import threading

import torch
import torch.nn as nn

from util.errors import BROKEN_DEPENDENCY, CheckpointError
from util.io import load_torch_file

from .non_local import NonLocalBlock, StripeNonLocalBlock

STAGE_DEPTHS = (3, 4, 6, 3)
STAGE_PLANES = (64, 128, 256, 512)
IMAGENET_URL = 'https://download.pytorch.org/models/resnet50-0676ba61.pth'  # torchvision IMAGENET1K_V1


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (stride on the 3x3 conv)."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _make_stage(inplanes, planes, depth, stride):
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * Bottleneck.expansion))
    blocks = [Bottleneck(inplanes, planes, stride, downsample)]
    blocks += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(1, depth)]
    return nn.Sequential(*blocks)


class ResNet50(nn.Module):
    """ResNet-50 backbone over clip frames with optional non-local blocks and frame-pair pooling.

    Args:
        last_stride: stride of layer4 (1 keeps a 16x8 map for 256x128 input).
        non_layers: non-local blocks per stage, placed after the last bottlenecks of the stage.
        block: 'normal' (NonLocalBlock) or 'stripe' (StripeNonLocalBlock).
        stripes: stripe count per stage (stripe blocks only).
        subsample_layer1: max-pool phi and g of the layer1 blocks by (1, 2, 2) (NVAN).
        group: per stage, frames each non-local block attends within (0: the whole clip).
        pool_after: stages (1..4) followed by max pooling of consecutive frame pairs.
        attention: 'sdpa' or 'explicit' (see models.non_local).
    """

    def __init__(self, last_stride=1, non_layers=(0, 0, 0, 0), block='normal', stripes=(16, 16, 16, 16),
                 subsample_layer1=False, group=(0, 0, 0, 0), pool_after=(), attention='sdpa'):
        super().__init__()
        self.non_layers = tuple(non_layers)
        self.group = tuple(group)
        self.pool_after = tuple(pool_after)
        # the original stem has no ReLU between bn1 and maxpool; kept so released weights give the same features
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, depth) in enumerate(zip(STAGE_PLANES, STAGE_DEPTHS)):
            stride = 1 if i == 0 else (last_stride if i == 3 else 2)
            self.add_module(f'layer{i + 1}', _make_stage(inplanes, planes, depth, stride))
            inplanes = planes * Bottleneck.expansion
            if block == 'stripe':
                nl = [StripeNonLocalBlock(inplanes, stripes[i], attention) for _ in range(non_layers[i])]
            else:
                nl = [NonLocalBlock(inplanes, subsample_layer1 and i == 0, attention) for _ in range(non_layers[i])]
            self.add_module(f'NL_{i + 1}', nn.ModuleList(nl))
        self.out_channels = inplanes
        self._init_resnet()

    def _init_resnet(self):
        # torchvision's init for the ResNet part, with zero_init_residual: every bottleneck starts as the
        # identity, which trains from random initialisation much faster (Goyal et al. 2017). It matters only
        # without pretrained weights (the original always loads ImageNet weights, which replace all of it).
        # Non-local blocks keep PyTorch's default conv init and their zero output BN, as in the original.
        for name, m in self.named_modules():
            if name.startswith('NL_'):
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def stages(self):
        return [(getattr(self, f'layer{i}'), getattr(self, f'NL_{i}')) for i in range(1, 5)]

    def frame_divisor(self):
        return frame_divisor(self.non_layers, self.group, self.pool_after)

    @staticmethod
    def _apply_non_local(block, x, group):
        bt, c, h, w = x.shape
        clip = x.view(bt // group, group, c, h, w).transpose(1, 2)   # (B*T/group, C, group, H, W)
        return block(clip).transpose(1, 2).reshape(bt, c, h, w)

    def forward(self, x, frames=1):
        """x: (B*T, 3, H, W), the T = `frames` frames of each clip consecutive.
        Returns the feature map (B*T', 2048, h, w) and T' (T after frame-pair pooling)."""
        x = self.maxpool(self.bn1(self.conv1(x)))
        t = frames
        for i, (layer, nl_blocks) in enumerate(self.stages()):
            first_nl = len(layer) - len(nl_blocks)
            for j, bottleneck in enumerate(layer):
                x = bottleneck(x)
                if j >= first_nl:
                    x = self._apply_non_local(nl_blocks[j - first_nl], x, self.group[i] or t)
            if i + 1 in self.pool_after:
                bt, c, h, w = x.shape
                # max (not amax) routes the gradient of a tie to one frame, as the original does
                x = x.view(bt // 2, 2, c, h, w).max(dim=1).values        # (B*T/2, C, h, w)
                t //= 2
        return x, t


# ---------------------------------------------------------------- pretrained weights

def imagenet_weights_path():
    """Where torchvision caches the IMAGENET1K_V1 ResNet-50 weights (honours TORCH_HOME)."""
    return os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(IMAGENET_URL))


def _reachable(host, port=443, timeout=3.0):
    """True if a TCP connection to host opens within `timeout` seconds (DNS included)."""
    ok = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def _imagenet_state_dict():
    path = imagenet_weights_path()
    if os.path.isfile(path):
        return _read_state_dict(path, 'ImageNet weights')
    host = IMAGENET_URL.split('/')[2]
    if not _reachable(host):
        raise CheckpointError(
            f"pretrained='imagenet': torchvision's ResNet-50 weights are not at {path} and {host} cannot be "
            f"reached; copy the file there (or set TORCH_HOME), or pass --pretrained none (random init) "
            f"or --pretrained PATH (a ResNet-50 state dict)")
    try:
        return torch.hub.load_state_dict_from_url(IMAGENET_URL, map_location='cpu', check_hash=True)
    except BROKEN_DEPENDENCY:
        raise
    except Exception as e:  # noqa: BLE001 - any download failure (network, disk, hash) becomes one line
        raise CheckpointError(
            f"pretrained='imagenet': downloading {IMAGENET_URL} to {path} failed ({e}); "
            f"pass --pretrained none or --pretrained PATH") from None


def _read_state_dict(path, what):
    if not os.path.isfile(path):
        raise CheckpointError(f'{what} {path}: no such file (--pretrained takes imagenet, none or the path '
                              f'of a ResNet-50 state dict)')
    state = load_torch_file(path, what)
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict):
        raise CheckpointError(f'{what} {path}: expected a state dict, found {type(state).__name__}')
    return state


def read_pretrained(pretrained):
    """(state dict, description) for pretrained 'imagenet' or a path; (None, None) for 'none'.
    Read before the network is built so that a missing file fails at once."""
    if pretrained in (None, 'none'):
        return None, None
    if pretrained == 'imagenet':
        return _imagenet_state_dict(), 'ImageNet weights'
    path = os.fspath(pretrained)
    return _read_state_dict(path, 'pretrained weights'), f'pretrained weights {path}'


def load_pretrained(backbone, state, source='pretrained weights'):
    """Copy a torchvision ResNet-50 state dict into the ResNet part of `backbone`.

    fc.* keys are ignored; every other torchvision key must be present with the same shape.
    """
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith('fc.')}
    target = {k: v for k, v in backbone.state_dict().items() if not k.startswith('NL_')}
    # older torchvision files carry no BatchNorm num_batches_tracked; it plays no part in the forward pass
    missing = sorted(k for k in set(target) - set(state) if not k.endswith('num_batches_tracked'))
    unexpected = sorted(set(state) - set(target))
    wrong = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f'{source}: not a torchvision ResNet-50 state dict ({len(missing)} missing keys '
            f'{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} shape mismatches {wrong[:3]})')
    with torch.no_grad():
        for k, v in target.items():
            if k in state:
                v.copy_(state[k])


def stage_heights(height, last_stride=1):
    """Feature-map heights after layer1..layer4 for an input of `height` rows (256 -> 64, 32, 16, 16)."""
    def down(h, stride):                            # 3x3 / 7x7 convs and the max pool, padded
        return (h - 1) // stride + 1
    h1 = down(down(height, 2), 2)                   # conv1, maxpool
    h2 = down(h1, 2)
    h3 = down(h2, 2)
    return h1, h2, h3, down(h3, last_stride)


def frame_divisor(non_layers, group, pool_after):
    """Smallest d such that clip lengths divisible by d are valid (frame pairs never straddle clips)."""
    divisor, reduction = 1, 1
    for i, n in enumerate(non_layers):
        if n and group[i]:
            divisor = max(divisor, reduction * group[i])
        if i + 1 in pool_after:
            reduction *= 2
            divisor = max(divisor, reduction)
    return divisor
