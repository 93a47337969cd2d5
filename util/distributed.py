"""Multi-process training with DistributedDataParallel, launched by ``torchrun``.

One process per GPU (or per CPU worker with gloo). Batch-hard mining and BatchNorm are defined over the
whole P x K batch, so a run on N processes must train the same model as a run on one:

* each rank holds P/N identities of the global batch (the sampler's job);
* BatchNorm layers are synchronised (``torch.nn.SyncBatchNorm`` on CUDA; :class:`CPUSyncBatchNorm` on CPU,
  because torch's SyncBatchNorm rejects CPU tensors);
* clip features are gathered with :func:`all_gather_with_grad` so the triplet loss mines over the global batch;
* DDP averages parameter gradients over ranks.

Gradient-scaling rule (why no loss needs rescaling)
---------------------------------------------------
Every collective here has its exact adjoint as backward (all-gather -> sum of the gradients over ranks, then
this rank's slice; all-reduce -> all-reduce). Autograd on rank r therefore delivers
d(sum_q loss_q)/d(rank r's activations), where loss_q is the loss that rank q backpropagates, and DDP then
divides the parameter gradients by N. The update thus equals a single-process step on the global batch exactly
when ``mean over ranks of loss_q == single-process loss``. Hence, with equal per-rank batch sizes:

1. triplet loss on the gathered global batch (the same value on every rank): backpropagate it as is (x 1);
2. ID cross-entropy (clip or frame level) as the mean over this rank's logits: as is (x 1).

A gather whose backward only kept this rank's own gradient (no sum over ranks) would need the global-batch
terms multiplied by N; ours does not. tests/test_distributed.py checks one optimiser step against one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from util.errors import ReIDError

_TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class DistContext:
    """Where this process sits: its rank among ``world_size`` processes and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def select_device(device_arg: str, local_rank: int = 0) -> torch.device:
    """The device of --device ('auto': the GPU of this process's LOCAL_RANK when CUDA is there, else the CPU)."""
    if device_arg not in ("auto", "cpu", "cuda"):
        raise ReIDError(f"--device: expected one of auto, cpu, cuda, got {device_arg!r}")
    if device_arg == "cuda" and not torch.cuda.is_available():
        raise ReIDError("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
    if device_arg == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise ReIDError(f"LOCAL_RANK {local_rank}: this machine has only {torch.cuda.device_count()} CUDA "
                        "device(s); start at most that many processes per node")
    return torch.device("cuda", local_rank)


def init_distributed(device_arg: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment, or run as a single process.

    Under ``torchrun`` with WORLD_SIZE > 1 this initialises the default group (NCCL on CUDA, gloo on CPU) and
    binds the process to ``cuda:LOCAL_RANK``; otherwise no group is created and world_size is 1.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_arg, local_rank)
    if world_size <= 1:
        return DistContext(rank=0, world_size=1, local_rank=local_rank, device=device, is_main=True)

    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise ReIDError(f"WORLD_SIZE={world_size} but {', '.join(missing)} not set: launch with torchrun")
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, is_main=rank == 0)


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if not ctx.distributed:
        return
    if ctx.device.type == "cuda":
        dist.barrier(device_ids=[ctx.device.index])
    else:
        dist.barrier()


def broadcast_object(obj, ctx: DistContext, src: int = 0):
    """Rank ``src``'s (picklable) ``obj`` on every rank (e.g. rank 0's verdict on the --ckpt lock)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=ctx.device if ctx.device.type == "cuda" else None)
    return box[0]


# ----------------------------------------------------------------------------------------------------------
# Collectives
# ----------------------------------------------------------------------------------------------------------

class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward is the adjoint: sum the gradient over ranks, keep our slice.

    torch.distributed.nn.functional.all_gather does the same but is deprecated in this torch and emulates the
    reduce-scatter with N scatters on gloo; an all-reduce of the (small) feature gradient is simpler.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        chunks = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(chunks, x)
        ctx.rows = slice(dist.get_rank() * x.shape[0], (dist.get_rank() + 1) * x.shape[0])
        return torch.cat(chunks)  # (N*b, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad[ctx.rows]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the adjoint of a sum over ranks is again a sum over ranks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        x = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` (b, ...) from every rank in rank order -> (world_size*b, ...), differentiably.

    Every rank must pass the same shape. The backward returns this rank's slice of the gradient summed over
    ranks (see the module docstring for why that needs no loss rescaling). Identity when not distributed.
    """
    return _AllGatherWithGrad.apply(t) if _is_distributed() else t


@torch.no_grad()
def gather_tensors(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` (n_r, ...) from every rank in rank order, on every rank; n_r may differ by rank.

    For evaluation features and labels: no gradient. Shards are padded to the largest one for the collective.
    """
    if not _is_distributed():
        return t
    t = t.contiguous()
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.empty_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = t.new_zeros((max(sizes), *t.shape[1:]))
    padded[: t.shape[0]] = t
    chunks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded)
    return torch.cat([c[:s] for c, s in zip(chunks, sizes)])


# ----------------------------------------------------------------------------------------------------------
# Synchronised BatchNorm on CPU
# ----------------------------------------------------------------------------------------------------------

class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm over the global batch of all ranks, for CPU tensors (gloo).

    torch.nn.SyncBatchNorm raises "expected input tensor to be on GPU" for CPU input, so CPU runs use this
    module instead: the per-channel mean and the biased variance come from two differentiable all-reduces
    (sum and count, then the centred sum of squares), which is exact rather than the one-pass
    E[x^2] - E[x]^2. Same parameters, buffers and state-dict keys as the BatchNorm it replaces; outside
    distributed training (or in eval mode) it is plain BatchNorm.
    """

    def __init__(self, *args, process_group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = self.process_group or dist.group.WORLD
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(group) > 1):
            return super().forward(x)
        self._check_input_dim(x)

        shape = (1, -1) + (1,) * (x.dim() - 2)  # broadcast per channel
        dims = [0] + list(range(2, x.dim()))
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # statistics in fp32 at least (AMP)
        count = xf.new_tensor([x.numel() // x.shape[1]])
        stats = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]), group)  # (C+1,) global sums, count
        n = stats[-1].detach()
        mean = stats[:-1] / n
        xc = xf - mean.view(shape)
        var = _AllReduceSum.apply((xc * xc).sum(dims), group) / n  # biased, as used for normalising
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            y = y * self.weight.view(shape)
        if self.bias is not None:
            y = y + self.bias.view(shape)

        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                unbiased = var * n / (n - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return y.to(x.dtype)


def _convert_cpu_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm{1,2,3}d in ``module`` by a CPUSyncBatchNorm sharing its tensors."""
    if isinstance(module, _BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats, bias=module.bias is not None,
                               process_group=process_group)
        if module.affine:
            new.weight = module.weight
            new.bias = module.bias
        new.running_mean = module.running_mean
        new.running_var = module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, _convert_cpu_sync_batchnorm(child, process_group))
    return module


# ----------------------------------------------------------------------------------------------------------
# Model wrapping
# ----------------------------------------------------------------------------------------------------------

def wrap_model(model: nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> nn.Module:
    """Move ``model`` to ``ctx.device``; when distributed, synchronise its BatchNorms and wrap it in DDP.

    BatchNorm1d/2d/3d all become SyncBatchNorm (CUDA) or CPUSyncBatchNorm (CPU); their state-dict keys do not
    change, so checkpoints are unaffected (save ``unwrap_model(model)``).
    """
    if not ctx.distributed:
        return model.to(ctx.device)
    if ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        model = _convert_cpu_sync_batchnorm(model)
    model = model.to(ctx.device)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)
