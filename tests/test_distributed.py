"""util.distributed: 2 gloo processes on CPU against 1 process on the whole batch.

One spawn runs every multi-process check and saves its results; the tests compare them with single-process
references computed here. The tests that read the spawn's results are marked `serial`: one xdist group, so the
spawn (two processes on a free port) runs once, on one worker.
"""

import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from models import unwrap_model
from util.distributed import (
    CPUSyncBatchNorm,
    DistContext,
    _convert_cpu_sync_batchnorm,
    all_gather_with_grad,
    barrier,
    cleanup,
    gather_tensors,
    init_distributed,
    wrap_model,
)
from util.errors import ReIDError
from util.train.trainer import LossConfig, train_step

WORLD = 2
P, K, S, H, W = 4, 2, 2, 8, 4  # global batch: P ids x K clips of S frames
NUM_CLASS = 5
LR = {"sgd": 0.5, "adam": 1e-2}
# (optimiser, dtype, tolerance on parameters and BatchNorm buffers after two steps). The criterion is
# fp32 within 1e-5; fp64 shows the agreement is exact up to rounding. Adam is checked in fp64 only: it divides
# by |gradient|, which turns fp32 rounding in near-zero gradient entries into ~1e-5 parameter differences.
CONFIGS = [("sgd", torch.float32, 1e-5), ("sgd", torch.float64, 1e-10), ("adam", torch.float64, 1e-10)]

try:  # the project's loss once it exists; the SPEC definition otherwise
    from util.train.losses import batch_hard_triplet_soft as triplet
except ImportError:
    def triplet(x, labels):
        dist = ((x[:, None] - x[None]) ** 2).sum(-1).add(1e-12).sqrt()  # (B, B)
        same = labels[:, None] == labels[None]
        eye = torch.eye(len(x), dtype=torch.bool)
        d_ap = dist.masked_fill(~same | eye, float("-inf")).amax(1)
        d_an = dist.masked_fill(same, float("inf")).amin(1)
        return F.softplus(d_ap - d_an).mean()


class TinyClipNet(nn.Module):
    """conv + BN2d per frame, BN3d over the clip, pooled feature, BN-neck (BN1d, frozen bias), classifier."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn2d = nn.BatchNorm2d(6)
        self.bn3d = nn.BatchNorm3d(6)
        self.fc = nn.Linear(6, 8, bias=False)  # a bias before the BN-neck gets no gradient (translation-invariant loss)
        self.neck = nn.BatchNorm1d(8)
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(8, NUM_CLASS, bias=False)

    def forward(self, x):  # (B, S, 3, H, W)
        b, s = x.shape[:2]
        y = F.relu(self.bn2d(self.conv(x.flatten(0, 1))))  # (B*S, 6, H, W)
        y = y.view(b, s, *y.shape[1:]).transpose(1, 2)  # (B, 6, S, H, W)
        feat = self.fc(F.relu(self.bn3d(y)).mean((2, 3, 4)))  # (B, 8)
        return feat, self.classifier(self.neck(feat))


def global_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (P * K, S, 3, H, W), dtype=torch.uint8, generator=g)  # as the loader gives them
    labels = torch.arange(P).repeat_interleave(K)
    return x, labels


def local_rows(rank):
    n = P * K // WORLD
    return slice(rank * n, (rank + 1) * n)


# triplet + track ID loss on clip features, fp32
LOSSES = LossConfig(S=S, temporal="Done", frame_id_loss=False, track_id_loss=True)


def train_steps(model, clips, labels, opt_name, world_size=1, steps=2):
    """The training step (triplet on gathered features + ID loss on local logits, no rescaling); returns the
    total loss of each step as training logs it (averaged over ranks)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.SGD(params, lr=LR["sgd"], momentum=0.9, weight_decay=1e-4) if opt_name == "sgd"
           else torch.optim.Adam(params, lr=LR["adam"], weight_decay=5e-5))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    losses = [sum(train_step(model, opt, scaler, clips, labels, LOSSES, False, world_size=world_size).values())
              for _ in range(steps)]
    return torch.tensor(losses, dtype=torch.float64)


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    res = {"ctx": (ctx.rank, ctx.world_size, ctx.local_rank, str(ctx.device), ctx.is_main, ctx.distributed)}

    # (a) all_gather_with_grad: forward order, triplet gradient, and the adjoint on rank-dependent losses
    g = torch.Generator().manual_seed(2)
    feats, weights = torch.randn(P * K, 7, generator=g), torch.randn(P * K, 7, generator=g)
    labels = torch.arange(P).repeat_interleave(K)
    x = feats[local_rows(rank)].clone().requires_grad_(True)
    gathered = all_gather_with_grad(x)
    loss = triplet(gathered, labels)
    loss.backward()
    res.update(gathered=gathered.detach(), trip_loss=loss.detach(), trip_grad=x.grad)
    x = feats[local_rows(rank)].clone().requires_grad_(True)
    (all_gather_with_grad(x) * weights * (rank + 1)).sum().backward()
    res["weighted_grad"] = x.grad

    # (c) gather_tensors with unequal (and empty) shards
    res["gather_float"] = gather_tensors(torch.arange(3 + 2 * rank, dtype=torch.float32)[:, None] * (rank + 1)
                                         + torch.zeros(1, 4))
    res["gather_int"] = gather_tensors(torch.arange(2 * rank, dtype=torch.int64) + 10)
    barrier(ctx)

    # (b) one model, two ranks, half the batch each
    clips, clip_labels = global_batch()
    for opt_name, dtype, _ in CONFIGS:
        torch.manual_seed(0)
        model = wrap_model(TinyClipNet().to(dtype), ctx)
        res["bn_types"] = sorted({type(m).__name__ for m in unwrap_model(model).modules()
                                  if "Norm" in type(m).__name__})
        res["wrapper"] = type(model).__name__
        res[opt_name, dtype] = (train_steps(model, clips[local_rows(rank)], clip_labels[local_rows(rank)], opt_name,
                                            WORLD), copy.deepcopy(unwrap_model(model).state_dict()))
    torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    cleanup(ctx)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.serial
def test_init_distributed_from_torchrun_env(ranks):
    for r, res in enumerate(ranks):
        assert res["ctx"] == (r, WORLD, r, "cpu", r == 0, True)


@pytest.mark.serial
def test_all_gather_with_grad_matches_single_process(ranks):
    g = torch.Generator().manual_seed(2)
    feats, weights = torch.randn(P * K, 7, generator=g), torch.randn(P * K, 7, generator=g)
    labels = torch.arange(P).repeat_interleave(K)
    x = feats.clone().requires_grad_(True)
    ref_loss = triplet(x, labels)
    ref_loss.backward()
    for r, res in enumerate(ranks):
        assert torch.equal(res["gathered"], feats)  # rank order
        torch.testing.assert_close(res["trip_loss"], ref_loss.detach(), rtol=0, atol=1e-6)
        # every rank backpropagates the same global loss, so its slice collects WORLD copies of the gradient;
        # DDP's average over ranks then gives exactly the single-process gradient
        torch.testing.assert_close(res["trip_grad"], WORLD * x.grad[local_rows(r)], rtol=1e-6, atol=1e-7)
        # adjoint: rank q backpropagates sum(gathered * weights * (q+1)) -> gradient sum_q (q+1) * weights
        torch.testing.assert_close(res["weighted_grad"], 3 * weights[local_rows(r)], rtol=1e-6, atol=1e-6)


@pytest.mark.serial
def test_gather_tensors_unequal_shards(ranks):
    expected_float = torch.cat([torch.arange(3.0)[:, None] * 1, torch.arange(5.0)[:, None] * 2]).expand(-1, 4)
    for res in ranks:
        assert torch.equal(res["gather_float"], expected_float)
        assert torch.equal(res["gather_int"], torch.tensor([10, 11]))


@pytest.mark.serial
@pytest.mark.parametrize("opt_name, dtype, tol", CONFIGS)
def test_one_step_equals_single_process(ranks, opt_name, dtype, tol):
    clips, labels = global_batch()
    torch.manual_seed(0)
    model = TinyClipNet().to(dtype)
    start = copy.deepcopy(model.state_dict())
    ref_losses = train_steps(model, clips, labels, opt_name)
    ref = model.state_dict()
    # the step moves the parameters well beyond the tolerance, so a wrong gradient scale would show
    assert max((ref[k] - start[k]).abs().max() for k in ("conv.weight", "fc.weight", "classifier.weight")) > 1e-2
    # the loss every rank logs (its triplet on the global batch, the ID loss averaged over ranks) is the
    # single-process loss (the scaling rule)
    for res in ranks:
        torch.testing.assert_close(res[opt_name, dtype][0], ref_losses, rtol=0, atol=tol)
        assert res["bn_types"] == ["CPUSyncBatchNorm"]
        assert res["wrapper"] == "DistributedDataParallel"
        state = res[opt_name, dtype][1]
        assert list(state) == list(ref)  # BatchNorm conversion keeps the state-dict keys
        for k in ref:  # parameters and BatchNorm running statistics
            assert (state[k].double() - ref[k].double()).abs().max() < tol, k


# ---------------------------------------------------------------------------------------------------------
# single process
# ---------------------------------------------------------------------------------------------------------

def _clear_torchrun_env(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)


def test_single_process_context(monkeypatch):
    _clear_torchrun_env(monkeypatch)
    ctx = init_distributed("cpu")
    assert ctx == DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), is_main=True)
    assert not ctx.distributed
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert init_distributed("auto").device.type == expected
    t = torch.randn(3, 2, requires_grad=True)
    assert all_gather_with_grad(t) is t and gather_tensors(t) is t
    model = TinyClipNet()
    assert wrap_model(model, ctx) is model
    barrier(ctx)
    cleanup(ctx)


def test_device_errors(monkeypatch):
    _clear_torchrun_env(monkeypatch)
    with pytest.raises(ReIDError, match=r"^--device: expected one of auto, cpu, cuda, got 'gpu'$"):
        init_distributed("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ReIDError, match=r"^--device cuda: CUDA is not available"):
            init_distributed("cuda")


def test_incomplete_torchrun_env(monkeypatch):
    _clear_torchrun_env(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ReIDError, match=r"^WORLD_SIZE=2 but LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"):
        init_distributed("cpu")


def test_cpu_sync_batchnorm_conversion_single_process():
    torch.manual_seed(0)
    model = TinyClipNet()
    model.neck.running_mean.fill_(0.3)
    converted = _convert_cpu_sync_batchnorm(copy.deepcopy(model))
    assert {type(m) for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)} \
        == {CPUSyncBatchNorm}
    assert not converted.neck.bias.requires_grad
    sd, ref_sd = converted.state_dict(), model.state_dict()
    assert list(sd) == list(ref_sd) and all(torch.equal(sd[k], ref_sd[k]) for k in sd)
    # without a process group it is plain BatchNorm, in training and in eval mode
    x = global_batch()[0].float()
    for train in (True, False):
        model.train(train), converted.train(train)
        for a, b in zip(model(x), converted(x)):
            assert torch.equal(a, b)


def test_unwrap_model():
    model = TinyClipNet()
    assert unwrap_model(model) is model
    assert unwrap_model(nn.DataParallel(model)) is model
    assert unwrap_model(torch.compile(model)) is model  # compiled lazily: nothing is compiled here
