"""ResNet-50 baseline, NVAN and STE-NVAN for video person re-identification.

Standalone: besides PyTorch and torchvision this package uses only util/errors.py (the error classes) and
util/io.py (atomic writes, torch.load of user files).

    model = build_model('resnet50_NL', num_class=625, non_layers=(0, 2, 3, 0), pretrained='imagenet')
    load_checkpoint(model, 'ckpt/NVAN.pth')          # the original release's files load unchanged
    model, notes = load_model('ckpt/NVAN.pth', 'resnet50_NL', non_layers=(0, 2, 3, 0))   # build + load
    torch.save(original_state_dict(model), 'ckpt_best.pth')
"""
from .checkpoint import (
                         checkpoint_num_class,
                         guess_config,
                         load_checkpoint,
                         load_model,
                         load_state,
                         original_state_dict,
                         read_checkpoint,
)
from .network import (
                         MODEL_TYPES,
                         ReIDNet,
                         attention_maps,
                         build_model,
                         non_local_blocks,
                         set_attention,
                         to_channels_last,
                         unwrap_model,
)
from .non_local import ATTENTION_IMPLS, NonLocalBlock, StripeNonLocalBlock
from .pooling import temporal_pool
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_clip
from .resnet import ResNet50, imagenet_weights_path

__all__ = [
    'build_model', 'load_model', 'load_checkpoint', 'load_state', 'original_state_dict', 'checkpoint_num_class',
    'read_checkpoint', 'guess_config', 'MODEL_TYPES', 'ReIDNet', 'attention_maps', 'non_local_blocks',
    'set_attention', 'to_channels_last', 'unwrap_model', 'temporal_pool', 'normalize_clip', 'IMAGENET_MEAN',
    'IMAGENET_STD', 'ATTENTION_IMPLS', 'NonLocalBlock', 'StripeNonLocalBlock', 'ResNet50', 'imagenet_weights_path',
]
