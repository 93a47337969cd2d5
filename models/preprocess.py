"""The network's input: uint8 RGB frames normalised with the ImageNet statistics of torchvision's ResNet-50
weights (the original release's transforms.Normalize), on the device, one batch at a time."""
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_clip(x, device=None, dtype=torch.float32, non_blocking=True):
    """uint8 (..., 3, H, W) -> ImageNet-normalised float on ``device``, in ``dtype``.

    Computed in float32 with the operations of ToTensor (``/255``) and Normalize (``-mean``, ``/std``),
    then cast, so the float32 result equals the original per-frame PIL -> ToTensor -> Normalize pipeline.
    """
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f'normalize_clip expects (..., 3, H, W) images, got shape {tuple(x.shape)}')
    if device is not None:
        x = x.to(device, non_blocking=non_blocking)
    mean, std = _mean_std(x.device)
    y = x.to(torch.float32).div(255).sub_(mean).div_(std)
    return y if dtype == torch.float32 else y.to(dtype)


_MEAN_STD = {}


def _mean_std(device):
    if device not in _MEAN_STD:
        _MEAN_STD[device] = tuple(torch.tensor(v, dtype=torch.float32, device=device).view(3, 1, 1)
                                  for v in (IMAGENET_MEAN, IMAGENET_STD))
    return _MEAN_STD[device]
