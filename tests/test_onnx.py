"""ONNX export: for every model type, onnxruntime on the CPU gives PyTorch's eval features (what
evaluate.py computes from the same uint8 clips) within 1e-4 relative, at batch sizes other than the traced
one; export_onnx.py writes a file that does so, and refuses a checkpoint that does not fit its flags."""
import io

import numpy as np
import onnxruntime
import pytest
import torch
from helpers import random_checkpoint

import export_onnx
from models import build_model, load_checkpoint
from models.export import ClipEmbedder, onnx_features, relative_difference
from models.export import export_onnx as export
from util.cli.options import run_main
from util.evaluation.extract import clip_features, prepare_clips

S, H, W = 4, 32, 16
NL = dict(non_layers=(1, 1, 1, 0), stripes=(2, 2, 2, 2))  # small, and valid for S=4 in every type


def small_model(model_type):
    torch.manual_seed(0)
    kw = {} if model_type == 'resnet50_s1' else NL
    model = build_model(model_type, 5, pretrained='none', height=H, S=S, **kw)
    for m in model.modules():  # eval statistics away from the identity, so that the test can fail
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            if m.weight is not None:
                m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def cpu_session(model):
    """An onnxruntime CPU session of an exported model (bytes or a path) on one intra-op thread: the test
    processes share the cores (onnxruntime's default pool, one spinning thread per core, oversubscribes them)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(model, options, providers=['CPUExecutionProvider'])


def eval_features(model, clips):
    """evaluate.py's features of uint8 clips: normalisation, the network, resnet50_s1's frame pooling."""
    with torch.no_grad():
        x = prepare_clips(clips, model.frame_level, torch.device('cpu'))
        return clip_features(model, x, S, model.temporal, model.frame_level, 'none', torch.device('cpu')).numpy()


@pytest.mark.parametrize('model_type', ['resnet50_s1', 'resnet50_NL_stripe_hr'] + [
    pytest.param(t, marks=pytest.mark.slow) for t in ('resnet50_NL', 'resnet50_NL_stripe', 'resnet50_NL_hr')])
def test_onnxruntime_equals_pytorch(model_type):
    model = small_model(model_type)
    f = io.BytesIO()
    export(model, f, S, H, W)
    session = cpu_session(f.getvalue())
    assert [(i.name, i.type, i.shape[1:]) for i in session.get_inputs()] == [('clips', 'tensor(uint8)', [S, 3, H, W])]
    assert isinstance(session.get_inputs()[0].shape[0], str)  # the dynamic batch axis
    gen = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        clips = torch.randint(0, 256, (batch, S, 3, H, W), dtype=torch.uint8, generator=gen)
        out, ref = onnx_features(session, clips.numpy()), eval_features(model, clips)
        assert out.shape == (batch, 2048) and out.dtype == np.float32
        assert relative_difference(out, ref) < 1e-4
        np.testing.assert_allclose(ClipEmbedder(model)(clips).detach().numpy(), ref, rtol=0, atol=1e-5)
    assert relative_difference(out[1:], out[:1]) > 1e-3  # the features depend on the clip


def test_max_pooling_baseline_exports_its_temporal_mode():
    model = build_model('resnet50_s1', 5, temporal='max', pretrained='none', height=H).eval()
    f = io.BytesIO()
    export(model, f, S, H, W)
    session = cpu_session(f.getvalue())
    clips = torch.randint(0, 256, (2, S, 3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    assert relative_difference(onnx_features(session, clips.numpy()), eval_features(model, clips)) < 1e-4


def test_export_onnx_script(tmp_path, capsys):
    ckpt = random_checkpoint(tmp_path / 'ckpt.pth', 'resnet50_NL_stripe_hr', height=H, **NL)
    flags = ['--load_ckpt', str(ckpt), '--model_type', 'resnet50_NL_stripe_hr', '--temporal', 'Done',
             '--non_layers', '1', '1', '1', '0', '--stripes', '2', '2', '2', '2', '--S', str(S), '--height', str(H),
             '--width', str(W)]
    assert export_onnx.main(flags + ['--out', str(tmp_path / 'm.onnx')]) == 0
    out = capsys.readouterr().out
    assert 'max relative difference' in out and float(out.split('difference ')[1].split()[0]) < 1e-4
    model = build_model('resnet50_NL_stripe_hr', 3, pretrained='none', height=H, S=S, **NL)
    load_checkpoint(model, ckpt)
    session = cpu_session(str(tmp_path / 'm.onnx'))
    clips = torch.randint(0, 256, (2, S, 3, H, W), dtype=torch.uint8)
    assert relative_difference(onnx_features(session, clips.numpy()), eval_features(model.eval(), clips)) < 1e-4

    code = run_main(export_onnx.main, flags[:3] + ['resnet50_NL', '--temporal', 'Done', '--S', str(S), '--height',
                                                   str(H), '--width', str(W), '--out', str(tmp_path / 'bad.onnx')])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and 'does not fit resnet50_NL --non_layers 0 2 3 0' in err
    assert not (tmp_path / 'bad.onnx').exists()
