"""Checkpoints in the original release's format.

The original saved ``nn.DataParallel(CNN).state_dict()``: every key starts with 'module.'
(module.features.backbone.layer2.3.conv1.weight, module.bottleneck.weight, module.classifier.weight).
We save the same, so either code base loads the other's files, and load strictly, explaining a mismatch.

Note: the four non-local types share parameter names and shapes for the same non_layers (the stripe
count and the temporal grouping have no parameters); only resnet50_NL's layer1 blocks differ (g.0 /
phi.0). A file can therefore load into a non-local type it was not trained with; a dict checkpoint
with a 'config' entry (model_type, non_layers, stripes) is checked against the model as well.
"""
import os
from collections import OrderedDict

import torch

from util.errors import CheckpointError
from .network import VARIANTS, unwrap_model

_WRAPPER_PREFIXES = ('module.', '_orig_mod.')
_SHOW = 3


def _strip_prefixes(key):
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def read_checkpoint(path):
    """(state dict with plain keys, config dict or None) from a checkpoint file.

    Accepts the original's 'module.'-prefixed state dicts, plain state dicts, and dicts holding one
    of those under 'model' (optionally with a 'config' entry)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint {path}: no such file')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is one line for the user
        raise CheckpointError(
            f'checkpoint {path}: cannot be read as a PyTorch file ({type(e).__name__}: {e})') from None
    config = None
    if isinstance(obj, dict) and isinstance(obj.get('model'), dict):
        config = obj.get('config') if isinstance(obj.get('config'), dict) else None
        obj = obj['model']
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path}: expected a state dict (or a dict with key 'model' holding one)")
    return OrderedDict((_strip_prefixes(k), v) for k, v in obj.items()), config


def guess_config(state):
    """Describe the model a state dict was made for: 'resnet50_NL --non_layers 0 2 3 0, 625 classes'."""
    if not any(k.startswith('features.backbone.') for k in state):
        return 'not a model of this project or of the original release (no features.backbone.* keys)'
    counts = []
    for i in range(1, 5):
        prefix = f'features.backbone.NL_{i}.'
        counts.append(len({k[len(prefix):].split('.')[0] for k in state if k.startswith(prefix)}))
    if not any(counts):
        types = ['resnet50_s1']
    elif counts[0] and 'features.backbone.NL_1.0.g.0.weight' in state:
        types = ['resnet50_NL']          # only NVAN subsamples its layer1 blocks
    elif counts[0]:
        types = ['resnet50_NL_stripe', 'resnet50_NL_hr', 'resnet50_NL_stripe_hr']
    else:
        types = [t for t in VARIANTS if t != 'resnet50_s1']
    text = '--model_type ' + ' or '.join(types)
    if any(counts):
        text += ' --non_layers ' + ' '.join(map(str, counts))
        if any('stripe' in t for t in types):
            text += ' (stripes are not stored in checkpoints: the paper uses 16 16 16 16)'
    weight = state.get('classifier.weight')
    if weight is not None:
        text += f', {weight.shape[0]} classes'
    return text


def _describe_model(net):
    cfg = getattr(net, 'config', {})
    text = cfg.get('model_type', type(net).__name__)
    if cfg.get('model_type') not in (None, 'resnet50_s1'):
        text += ' --non_layers ' + ' '.join(map(str, cfg['non_layers']))
        if 'stripe' in cfg['model_type']:
            text += ' --stripes ' + ' '.join(map(str, cfg['stripes']))
    if hasattr(net, 'classifier'):
        text += f', {net.classifier.out_features} classes'
    return text


def _listing(keys):
    shown = ', '.join(keys[:_SHOW])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > _SHOW else ''})"


def load_checkpoint(model, path):
    """Load a checkpoint into `model` strictly (original 'module.' keys or plain keys).

    Raises CheckpointError listing missing / unexpected / mis-shaped keys and the configuration the
    file most likely needs."""
    net = unwrap_model(model)
    state, config = read_checkpoint(path)
    expected = net.state_dict()
    # BatchNorm fills num_batches_tracked when absent (files from torch < 0.4.1)
    missing = [k for k in expected if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append('missing keys ' + _listing(missing))
    if unexpected:
        problems.append('unexpected keys ' + _listing(unexpected))
    if mis_shaped:
        problems.append('shapes file vs model ' + _listing(mis_shaped))
    own = getattr(net, 'config', None)
    if config and own and not problems:
        keys = ('model_type', 'non_layers') + (('stripes',) if 'stripe' in own['model_type'] else ())
        differ = [k for k in keys if k in config and _norm(config[k]) != _norm(own.get(k))]
        if differ:
            problems.append('saved config ' + ', '.join(f'{k}={config[k]}' for k in differ))
    if problems:
        hint = f'was saved by {_describe_config(config)}' if config else f'looks like {guess_config(state)}'
        raise CheckpointError(
            f'checkpoint {os.fspath(path)} does not fit {_describe_model(net)}: {"; ".join(problems)}; '
            f'the file {hint}')
    net.load_state_dict(state, strict=True)


def _describe_config(config):
    text = f"--model_type {config.get('model_type')}"
    for key in ('non_layers', 'stripes'):
        if config.get(key) is not None and (key != 'stripes' or 'stripe' in str(config.get('model_type'))):
            text += f' --{key} ' + ' '.join(map(str, config[key]))
    return text


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def original_state_dict(model):
    """State dict with the original's 'module.'-prefixed keys (what nn.DataParallel(CNN) saved);
    DataParallel / DistributedDataParallel / torch.compile wrappers are unwrapped first. Tensors are on the
    CPU in the default memory layout, so a file saved from a GPU run (or with --channels_last) opens with a
    plain torch.load anywhere."""
    def portable(t):  # meta tensors (shape-only models) stay where they are
        return (t if t.device.type == 'meta' else t.cpu()).contiguous()
    return OrderedDict(('module.' + k, portable(v)) for k, v in unwrap_model(model).state_dict().items())


def checkpoint_num_class(path):
    """Number of classifier rows (training identities) of a checkpoint."""
    state, _ = read_checkpoint(path)
    weight = state.get('classifier.weight')
    if weight is None or weight.dim() != 2:
        raise CheckpointError(f'checkpoint {os.fspath(path)}: no classifier.weight; {guess_config(state)}')
    return int(weight.shape[0])
