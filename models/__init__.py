"""ResNet-50 baseline, NVAN and STE-NVAN for video person re-identification.

    model = build_model('resnet50_NL', num_class=625, non_layers=(0, 2, 3, 0), pretrained='imagenet')
    load_checkpoint(model, 'ckpt/NVAN.pth')          # the original release's files load unchanged
    torch.save(original_state_dict(model), 'ckpt_best.pth')
"""
from .checkpoint import (
                         checkpoint_num_class,
                         guess_config,
                         load_checkpoint,
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
from .resnet import ResNet50, imagenet_weights_path

__all__ = ['build_model', 'to_channels_last', 'load_checkpoint', 'load_state', 'original_state_dict',
           'checkpoint_num_class', 'read_checkpoint', 'guess_config', 'MODEL_TYPES', 'ReIDNet', 'attention_maps',
           'non_local_blocks', 'set_attention', 'unwrap_model', 'ATTENTION_IMPLS', 'NonLocalBlock',
           'StripeNonLocalBlock', 'ResNet50', 'imagenet_weights_path']
