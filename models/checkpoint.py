"""Checkpoints in the original release's format, checked against the model they are loaded into.

The original saved ``nn.DataParallel(CNN).state_dict()``: every key starts with 'module.'
(module.features.backbone.layer2.3.conv1.weight, module.bottleneck.weight, module.classifier.weight).
We save the same, so either code base loads the other's files, and load strictly, explaining a mismatch.

The four non-local types share parameter names and shapes for the same non_layers (the stripe count, the
temporal grouping, --temporal and --stride have no parameters); only resnet50_NL's layer1 blocks differ
(g.0 / phi.0). Weights alone can therefore load into a configuration they were not trained with. Our runs
record their configuration (save_best_weights: ``ckpt_best.json`` beside
``ckpt_best.pth``; the 'config' entry of last.pth), and a contradiction with the model is refused. The
original's released files carry none: for them only the key and shape checks apply.
"""
import hashlib
import io
import json
import os
from collections import OrderedDict

import torch
import torch.nn as nn

from util.errors import CheckpointError
from util.io import atomic_save, load_torch_file, write_text

from .network import CLASSIFIER_STD, VARIANTS, build_model, unwrap_model

CONFIG_FORMAT = 'ste-nvan-config-v1'


# -- the run configuration beside ckpt_best.pth --------------------------------------------------------------

def config_path(weights_path):
    """ckpt_best.pth -> ckpt_best.json."""
    return os.path.splitext(os.fspath(weights_path))[0] + '.json'


def save_best_weights(path, state, config):
    """Write the weights (a state dict) to `path` and the run configuration with the file's checksum to
    config_path(path), both atomically. The weights file stays a plain state dict (the original code loads
    it); the checksum lets a reader tell whether the .json describes the .pth beside it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    atomic_save(data, path, write=lambda d, f: f.write(d))
    record = {'format': CONFIG_FORMAT, **config, 'weights': os.path.basename(os.fspath(path)),
              'weights_sha256': hashlib.sha256(data).hexdigest()}
    write_text(config_path(path), json.dumps(record, indent=1) + '\n')


def read_weights_config(path):
    """(run configuration or None, note or None) from the .json beside a weights file. The note says why a
    .json that is there was not used (unreadable, or it describes other weights)."""
    side = config_path(path)
    if not os.path.isfile(side):
        return None, None
    try:
        with open(side) as f:
            record = json.load(f)
        if not isinstance(record, dict) or record.get('format') != CONFIG_FORMAT:
            raise ValueError('not a run configuration of this project')
    except (OSError, ValueError) as err:
        return None, f'note: {side} is not readable ({err}); the configuration of {path} is not checked'
    with open(path, 'rb') as f:
        digest = hashlib.file_digest(f, 'sha256').hexdigest()
    if digest != record.get('weights_sha256'):
        return None, (f'note: {side} describes other weights than {path} (checksum differs); the '
                      'configuration is not checked')
    return {k: v for k, v in record.items() if k not in ('format', 'weights', 'weights_sha256')}, None

_WRAPPER_PREFIXES = ('module.', '_orig_mod.')
_SHOW = 3
# Recorded run settings that are not part of the model: a difference is reported, not refused (scoring
# with another clip length or frame size than the training run's is a legitimate experiment).
INPUT_KEYS = ('S', 'height', 'width')


def _strip_prefixes(key):
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def _read(path):
    """(state dict with plain keys, run configuration or None, where the configuration comes from, note)."""
    path = os.fspath(path)
    obj = load_torch_file(path, 'checkpoint')
    config, source, note = None, None, None
    if isinstance(obj, dict) and isinstance(obj.get('model'), dict):
        config = obj.get('config') if isinstance(obj.get('config'), dict) else None
        source = 'saved in the file'
        obj = obj['model']
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path}: expected a state dict (or a dict with key 'model' holding one)")
    if config is None:
        config, note = read_weights_config(path)
        source = 'in ' + os.path.basename(path).rsplit('.', 1)[0] + '.json'
    return OrderedDict((_strip_prefixes(k), v) for k, v in obj.items()), config, source, note


def read_checkpoint(path):
    """(state dict with plain keys, run configuration dict or None) from a checkpoint file.

    Accepts the original's 'module.'-prefixed state dicts, plain state dicts, and dicts holding one
    of those under 'model' (optionally with a 'config' entry); for a plain state dict the configuration
    is the .json beside it (ckpt_best.pth -> ckpt_best.json) when that describes this very file."""
    state, config, _, _ = _read(path)
    return state, config


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


def load_checkpoint(model, path, inputs=None, new_classifier=False):
    """Load a checkpoint into `model` strictly (original 'module.' keys or plain keys).

    Raises CheckpointError listing missing / unexpected / mis-shaped keys and the configuration the
    file most likely needs, or the differences between the file's recorded configuration and the model.
    `inputs` (a mapping holding S, height, width, e.g. vars(args)) is compared with the recorded run.
    With new_classifier=True a classifier of another number of classes is re-initialised instead of
    refused (fine-tuning on another training set); every other weight still loads strictly.
    Returns the notes for the user (one line each; empty when there is nothing to say)."""
    state, config, source, note = _read(path)
    notes = load_state(model, state, config, os.fspath(path), inputs=inputs, new_classifier=new_classifier,
                       config_source=source)
    return ([note] if note else []) + notes


def load_state(model, state, config, path, inputs=None, new_classifier=False, config_source='saved in the file'):
    """load_checkpoint for a state dict already read (`path` names it in messages); returns the notes."""
    net = unwrap_model(model)
    state = OrderedDict((_strip_prefixes(k), v) for k, v in state.items())
    expected = net.state_dict()
    # BatchNorm fills num_batches_tracked when absent (files from torch < 0.4.1)
    missing = [k for k in expected if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [k for k, v in expected.items() if k in state and state[k].shape != v.shape]
    new_rows = (new_classifier and mis_shaped == ['classifier.weight']
                and state['classifier.weight'].shape[1:] == expected['classifier.weight'].shape[1:])
    problems = []
    if config:
        differ = _config_differences(config, net, classes=not new_classifier)
        if differ:
            problems.append(f'its configuration ({config_source}) differs in ' + ', '.join(differ))
    if not problems:
        if missing:
            problems.append('missing keys ' + _listing(missing))
        if unexpected:
            problems.append('unexpected keys ' + _listing(unexpected))
        if mis_shaped and not new_rows:
            problems.append('shapes file vs model ' + _listing(
                [f'{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}' for k in mis_shaped]))
    if problems:
        hint = f'was saved by {_describe_config(config)}' if config else f'looks like {guess_config(state)}'
        raise CheckpointError(f'checkpoint {path} does not fit {_describe_model(net)}: {"; ".join(problems)}; '
                              f'the file {hint}')
    notes = []
    if new_rows:
        rows = state.pop('classifier.weight').shape[0]
        net.load_state_dict(state, strict=False)  # strict for every other key: checked above
        nn.init.normal_(net.classifier.weight, std=CLASSIFIER_STD)
        notes.append(f'note: {path} has a classifier of {rows} classes, this training set {net.num_class}: '
                     f'classifier re-initialised, every other weight loaded')
    else:
        net.load_state_dict(state, strict=True)
    if config and inputs:
        saved = {k: config[k] for k in INPUT_KEYS if config.get(k) is not None and inputs.get(k) is not None}
        if any(saved[k] != inputs[k] for k in saved):
            notes.append(f'note: {path} was trained with ' + ' '.join(f'--{k} {v}' for k, v in saved.items())
                         + '; this run uses ' + ' '.join(f'--{k} {inputs[k]}' for k in saved))
    return notes


def _config_differences(config, net, classes=True):
    """'--flag (file X, model Y)' for each model setting the recorded configuration contradicts."""
    own = dict(getattr(net, 'config', {}))
    own['num_class'] = net.classifier.out_features if hasattr(net, 'classifier') else None
    file_type, own_type = config.get('model_type'), own.get('model_type')
    keys = ['model_type', 'temporal', 'stride']
    if file_type != 'resnet50_s1' and own_type != 'resnet50_s1':
        keys.append('non_layers')
    if 'stripe' in str(file_type) and 'stripe' in str(own_type):
        keys.append('stripes')
    if classes:
        keys.append('num_class')
    return [f'--{k} (file {_text(config[k])}, model {_text(own.get(k))})' if k != 'num_class' else
            f'classes (file {config[k]}, model {own.get(k)})'
            for k in keys if k in config and own.get(k) is not None and _norm(config[k]) != _norm(own.get(k))]


def _describe_config(config):
    text = f"--model_type {config.get('model_type')}"
    for key in ('non_layers', 'stripes'):
        if config.get(key) is not None and config.get('model_type') != 'resnet50_s1' and \
                (key != 'stripes' or 'stripe' in str(config.get('model_type'))):
            text += f' --{key} ' + _text(config[key])
    if config.get('temporal') is not None:
        text += f" --temporal {config['temporal']}"
    if config.get('stride') not in (None, 1):
        text += f" --stride {config['stride']}"
    if config.get('num_class') is not None:
        text += f", {config['num_class']} classes"
    return text


def _text(value):
    return ' '.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


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


def load_model(path, model_type, non_layers=None, stripes=None, temporal=None, stride=1, height=256, S=None,
               attention='sdpa', inputs=None):
    """Build the network a checkpoint was trained as and load its weights strictly: (model, notes).

    The classifier size comes from the file; every weight comes from it, so the backbone gets no ImageNet
    initialisation. The other arguments are build_model's. `inputs` (S, height, width of this use) is compared
    with the configuration the file records, as in load_checkpoint; `notes` are its one-line remarks.

        model, notes = load_model('ckpt_best.pth', 'resnet50_NL_stripe_hr', non_layers=(0, 2, 3, 0), S=8)
    """
    model = build_model(model_type, checkpoint_num_class(path), non_layers=non_layers, stripes=stripes,
                        temporal=temporal, stride=stride, pretrained='none', height=height, S=S,
                        attention=attention)
    return model, load_checkpoint(model, path, inputs=inputs)
