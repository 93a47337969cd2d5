"""The eval network as one self-contained function of raw clips, for ONNX export.

``ClipEmbedder(model)`` maps uint8 RGB clips (B, S, 3, H, W), what a camera pipeline has, to the (B, 2048)
eval features evaluate.py computes: the ImageNet normalisation (util.data.loaders.normalize_clip) is inside, and
resnet50_s1 pools its S frame features with its --temporal mode (models.pooling.temporal_pool) inside.
"""
import os
import warnings

import numpy as np
import torch
import torch.nn as nn

from models.pooling import temporal_pool
from models.preprocess import normalize_clip

from .network import unwrap_model


class ClipEmbedder(nn.Module):
    """uint8 (B, S, 3, H, W) -> float32 (B, 2048) eval features of a ReIDNet (which it puts in eval mode)."""

    def __init__(self, model):
        super().__init__()
        self.net = unwrap_model(model)
        self.eval()  # the exporter restores the wrapper's mode (recursively) after tracing

    def forward(self, clips):
        x = normalize_clip(clips)                                   # float32 (B, S, 3, H, W)
        if not self.net.frame_level:
            return self.net(x)                                      # (B, 2048)
        s = clips.shape[1]
        return temporal_pool(self.net(x.flatten(0, 1)), s, self.net.temporal)  # (B*S, 2048) -> (B, 2048)


ONNX_OPSET = 17


def export_onnx(model, f, S, height, width, opset=ONNX_OPSET):
    """Write the ClipEmbedder of ``model`` to ``f`` (a path or a binary file) as ONNX: input ``clips`` uint8
    (batch, S, 3, height, width), output ``features`` float32 (batch, 2048), the batch axis dynamic.

    torch.onnx's TorchScript exporter traces one forward pass; S, height and width are fixed in the graph
    (the tracer's warnings about them are expected and silenced). The exporter's constant folding is off: it
    takes most of the export time and onnxruntime folds the same constants when it loads the file."""
    embedder = ClipEmbedder(model).cpu()
    example = torch.zeros((2, S, 3, height, width), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # TracerWarning on the shape checks, the exporter's deprecation notice
        torch.onnx.export(embedder, (example,), f, input_names=['clips'], output_names=['features'],
                          dynamic_axes={'clips': {0: 'batch'}, 'features': {0: 'batch'}}, opset_version=opset,
                          dynamo=False, do_constant_folding=False)
    return embedder


def onnx_features(session, clips):
    """Features of uint8 clips (B, S, 3, H, W) (numpy or tensor) from an onnxruntime session: (B, 2048)."""
    return session.run(['features'], {'clips': np.ascontiguousarray(np.asarray(clips, dtype=np.uint8))})[0]


def relative_difference(a, b):
    """max |a - b| / max |b|: the difference relative to the features' scale."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-12))


def check_onnx(path, model, S, height, width, batch=2, seed=0):
    """Run the ONNX file with onnxruntime on the CPU and PyTorch on the same random clips (a batch size other
    than the exported example's, to exercise the dynamic axis): the max relative difference."""
    import onnxruntime
    session = onnxruntime.InferenceSession(os.fspath(path), providers=['CPUExecutionProvider'])
    clips = torch.randint(0, 256, (batch + 1, S, 3, height, width), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = ClipEmbedder(model).cpu()(clips).numpy()
    return relative_difference(onnx_features(session, clips.numpy()), expected)
