"""Data-parallel training over several processes and machines (DistributedDataParallel under torchrun).

torchrun starts one process per device and sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
MASTER_ADDR and MASTER_PORT in each; :func:`from_env` reads them and :func:`process_group` joins the
group (NCCL on CUDA, Gloo on CPU). A plain ``python -m multibox train`` sees none of them and runs as
a world of one, where every helper here does nothing.

Why W processes with batch B train like one process with batch W*B (same seed):

* data: :class:`multibox.data.pipeline.EpochBatchSampler` gives rank r every W-th position of the
  epoch's permutation, keyed by its global position, so at each step the ranks' samples together are
  exactly the one-process batch of W*B (and a sample's crop and flip depend on its key alone);
* gradients: each rank's loss is a mean over its B images and DDP averages the ranks' gradients, which
  is the gradient of the mean over the W*B images;
* batch norm, the one layer that would see only its rank's images: :func:`convert_batchnorm` makes it
  normalise with the statistics of the global batch (torch's SyncBatchNorm on CUDA; on CPU, where
  SyncBatchNorm refuses to run, :class:`GlobalBatchNorm`, which all-reduces sums through autograd).

What is left is floating-point summation order (tests/test_distributed.py states the tolerance).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from multibox.errors import UserError

T = TypeVar("T")
ENV_NAMES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (a world of one without torchrun)."""

    rank: int = 0  # global rank, 0 .. world_size - 1
    world_size: int = 1  # processes over all nodes
    local_rank: int = 0  # rank on this node: the CUDA device it drives
    local_world_size: int = 1  # processes on this node: they share its CPU cores

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows progress and writes checkpoints."""
        return self.rank == 0


def from_env(environ: dict[str, str] | None = None) -> World:
    """The World that torchrun's variables describe; defaults to a world of one."""
    environ = os.environ if environ is None else environ
    values = {}
    for name in ENV_NAMES:
        text = environ.get(name)
        try:
            values[name] = None if text is None else int(text)
        except ValueError:
            raise UserError(f"environment variable {name}={text!r}: expected an integer (set by torchrun)") from None
    world_size = values["WORLD_SIZE"] or 1
    local_world = values["LOCAL_WORLD_SIZE"] or (world_size if values["LOCAL_RANK"] is not None else 1)
    world = World(values["RANK"] or 0, world_size, values["LOCAL_RANK"] or 0, local_world)
    if not 0 <= world.rank < world.world_size:
        raise UserError(f"RANK={world.rank} is outside WORLD_SIZE={world.world_size}")
    return world


def local_device(device: torch.device, world: World) -> torch.device:
    """The device this process drives: cuda:LOCAL_RANK when several processes share a node's GPUs."""
    if device.type != "cuda" or device.index is not None or not world.distributed:
        return device
    if world.local_rank >= torch.cuda.device_count():
        raise UserError(f"LOCAL_RANK={world.local_rank} but this node has {torch.cuda.device_count()} "
                        f"CUDA devices: start at most that many processes per node (--nproc-per-node)")
    return torch.device("cuda", world.local_rank)


@contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """Join the process group for the duration (NCCL on CUDA, Gloo on CPU) and leave it afterwards.

    A group that already exists (a caller made it) is used and left alone.
    """
    if not world.distributed or dist.is_initialized():
        yield
        return
    device = local_device(device, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and broadcast_object_list use the current device
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank,
                            world_size=world.world_size, store=restart_store(world))
    try:
        yield
    finally:
        dist.destroy_process_group()


def restart_store(world: World) -> dist.Store | None:
    """The env:// store with keys of this torchrun restart only (None: no restart, the default store).

    After ``torchrun --max-restarts`` restarts the workers, the store still holds the failed
    generation's keys (the peers' Gloo addresses), and the new ranks would connect to the dead ones:
    a prefix per restart keeps the generations apart.
    """
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if not restart:
        return None
    store, _, _ = next(dist.rendezvous("env://", world.rank, world.world_size))
    return dist.PrefixStore(f"multibox/restart_{restart}", store)


def active() -> bool:
    """Whether this process trains as one of several."""
    return dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (e.g. for rank 0 to finish writing a checkpoint)."""
    if active():
        dist.barrier()


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0 only, its result sent to every rank (pickled; tensors come back on the CPU).

    Used for the k-means priors: one fit, and bit-identical priors on every rank and node even where
    the nodes' CPUs would round differently.
    """
    if not active():
        return compute()
    box = [compute() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (a one-element list without a group)."""
    if not active():
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def mean_over_ranks(tensor: Tensor) -> Tensor:
    """The element-wise mean of ``tensor`` over ranks (a copy; the input itself without a group).

    A NaN on any rank makes the mean NaN on all of them, so all ranks stop together.
    """
    if not active():
        return tensor
    return sum_over_ranks(tensor.detach()) / dist.get_world_size()  # SUM then divide: Gloo has no AVG


def rank_and_size() -> tuple[int, int]:
    """(this process's rank, the number of ranks) of the process group; (0, 1) without one."""
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def sum_over_ranks(tensor: Tensor) -> Tensor:
    """The element-wise sum of ``tensor`` over ranks (a copy; the input itself without a group)."""
    if not active():
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on at least one (e.g. the wall-clock budget is spent)."""
    if not active():
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def rank_seed(seed: int, rank: int, step: int) -> int:
    """A seed for rank ``rank``'s global RNG (dropout) that differs between ranks and restarts."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def wrap(model: nn.Module, device: torch.device, synced_buffers: bool) -> nn.Module:
    """The model in DDP when distributed, else the model itself.

    synced_buffers: batch-norm statistics are already global (converted batch norm), so DDP need not
    broadcast rank 0's buffers before every forward pass.
    """
    if not active():
        return model
    ids = [device.index] if device.type == "cuda" else None
    # torch >= 2.14 renamed broadcast_buffers (buffers are broadcast once at construction either way)
    name = "forward_sync_buffers" if "forward_sync_buffers" in DDP_PARAMETERS else "broadcast_buffers"
    return DistributedDataParallel(model, device_ids=ids, **{name: not synced_buffers})


DDP_PARAMETERS = inspect.signature(DistributedDataParallel.__init__).parameters


# ------------------------------------------------------------------------------------------ batch norm


def convert_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm over the global batch: SyncBatchNorm on CUDA, :class:`GlobalBatchNorm` elsewhere.

    Parameters and buffers are shared with the replaced layers and keep their names, so checkpoints
    load into the plain model.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            setattr(model, name, GlobalBatchNorm.replacing(child))
        else:
            convert_batchnorm(child, device)
    return model


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: d(sum_r x_r)/dx_r reaches every rank."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of all ranks' batches together (any device).

    input Tensor[N, C, ...] -> Tensor[N, C, ...]. In training with a process group, the per-channel
    mean and (biased) variance come from two autograd-aware all-reduces of sums, so the backward pass
    also carries every rank's share of the gradient through the statistics, as SyncBatchNorm does.
    Otherwise it is plain batch norm.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    @classmethod
    def replacing(cls, bn: nn.modules.batchnorm._BatchNorm) -> GlobalBatchNorm:
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        if bn.affine:
            new.weight, new.bias = bn.weight, bn.bias
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
        return new.train(bn.training)

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and active()):
            return super().forward(input)
        x = input.float()  # statistics in fp32 also under autocast
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        sums = _SumOverRanks.apply(torch.cat([x.sum(dims), count]))  # [C + 1]: sums and element count
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply(centred.square().sum(dims)) / n  # two passes: no E[x^2] - E[x]^2 cancellation
        self._update_running(mean.detach(), var.detach(), n.detach())
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        """Running statistics as nn.BatchNorm keeps them (unbiased variance), from the global batch."""
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean.to(self.running_mean), factor)
        self.running_var.lerp_((var * n / (n - 1).clamp(min=1)).to(self.running_var), factor)


__all__ = ["World", "from_env", "local_device", "process_group", "active", "barrier", "from_main",
           "gather_objects", "mean_over_ranks", "any_rank", "rank_seed", "wrap", "convert_batchnorm",
           "GlobalBatchNorm"]
