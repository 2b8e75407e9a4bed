"""Training in several processes (torchrun): who this process is, and the few collectives training needs.

torchrun, or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``, starts one process per GPU (or several on the CPU). A process so started
trains distributed even alone (world size 1: process groups and DistributedDataParallel, as
on a cluster with one GPU); without those variables everything here is a no-op and training
runs as one plain process.

- The default process group is always Gloo. It exists before the recipe's device is known,
  so every failure, even a bad recipe, can be agreed on (``agree``) and reported once by rank
  0, and it carries the small CPU traffic (metric sums, skipped-file names). On CUDA a second
  group over NCCL (``device_group``) carries the gradients and everything else on the GPU.
- Both groups get the recipe's ``distributed.timeout_s``: a process that waits that long for
  the others raises instead of hanging for PyTorch's default half hour. A process that dies
  closes its connections, so under torchrun the others stop within seconds anyway.
- Metric accumulators are summed over processes, never averaged: each process evaluates a
  disjoint share of the validation set (no padding), so the sums are those of one process
  evaluating all of it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset

from ..offline.metrics import DepthMetrics, FaceAttributeMetrics, SegmentationMetrics
from .config import ConfigError
from .tasks import PROG, TrainingError

DEFAULT_TIMEOUT_S = 600.0


def is_peer_lost(error: BaseException) -> bool:
    """Did a collective fail because another process died or hung? PyTorch raises DistError
    subclasses for some of these, and a plain RuntimeError from inside Gloo or NCCL
    ("Connection closed by peer", "Timed out ...") for others."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("gloo" in text or "NCCL" in text or "ProcessGroup" in text)


class AgreedError(Exception):
    """Raised on every process when one or more processes failed during a phase that they
    check together; ``message`` says which process failed and why, ``usage`` whether it is a
    recipe error (exit code 2) rather than a failure (1)."""

    def __init__(self, message: str, usage: bool) -> None:
        super().__init__(message)
        self.usage = usage


def environment() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the launcher's environment; (0, 1, 0) without one."""
    values = []
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = os.environ.get(name)
        try:
            values.append(default if text is None else int(text))
        except ValueError:
            raise TrainingError(f"environment variable {name}={text!r} is not an integer") from None
    rank, world_size, local_rank = values
    if world_size < 1 or not 0 <= rank < world_size:
        raise TrainingError(f"RANK={rank} and WORLD_SIZE={world_size} from the environment do not fit together")
    return rank, world_size, local_rank


def launched() -> bool:
    """Was this process started by a launcher? torchrun says so with ``TORCHELASTIC_RUN_ID``;
    other launchers (SLURM or Kubernetes scripts) set the rendezvous variables themselves."""
    return "TORCHELASTIC_RUN_ID" in os.environ or all(name in os.environ
                                                      for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


@dataclass
class Distributed:
    """This process's place in the job. ``Distributed()`` is the single-process default."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S
    device_group: Any = field(default=None, repr=False)  # None: the default group
    launched: bool = False  # started by a launcher: distributed even with a world size of 1

    @property
    def enabled(self) -> bool:
        return self.launched or self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def where(self) -> str:
        """The prefix of this process's own messages ("" in a single process)."""
        return f"[rank {self.rank}/{self.world_size}] " if self.enabled else ""

    # -- lifetime --------------------------------------------------------------------
    def start(self) -> None:
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("gloo", timeout=timedelta(seconds=self.timeout_s),
                                    rank=self.rank, world_size=self.world_size)

    def use_device(self, device: torch.device, backend: str) -> None:
        """Open the group for ``device``'s tensors: NCCL for ``backend`` nccl, else the Gloo default."""
        if self.enabled and backend == "nccl":
            self.device_group = dist.new_group(backend="nccl", timeout=timedelta(seconds=self.timeout_s))

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    # -- agreeing --------------------------------------------------------------------
    def agree(self, error: BaseException | None) -> None:
        """Every process calls this after a phase; if any of them failed, all raise
        ``AgreedError`` with the failures' messages (identical ones said once)."""
        if not self.enabled:
            return
        report = None if error is None else (str(error), isinstance(error, ConfigError))
        reports: list[Any] = [None] * self.world_size
        dist.all_gather_object(reports, report)
        failed = [(rank, r) for rank, r in enumerate(reports) if r is not None]
        if not failed:
            return
        messages = {message for _, (message, _) in failed}
        if len(messages) == 1 and len(failed) == self.world_size:
            text = messages.pop()
        else:
            text = "; ".join(f"rank {rank}: {message}" for rank, (message, _) in failed)
        raise AgreedError(text, usage=any(usage for _, (_, usage) in failed))

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any (e.g. a stop request one process got)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(value)
        return bool(value.item() > 0)

    def check_equal(self, what: str, values: torch.Tensor) -> None:
        """Raise on every process unless ``values`` is identical on all of them (state that
        must never drift apart, e.g. the task weights)."""
        if not self.enabled:
            return
        values = values.detach().double().cpu().flatten().view(torch.int64)  # bits: NaN equals NaN
        gathered = [torch.empty_like(values) for _ in range(self.world_size)]
        dist.all_gather(gathered, values)
        differing = [rank for rank, other in enumerate(gathered) if not torch.equal(other, gathered[0])]
        if differing:
            raise TrainingError(f"{what} differ between processes (rank 0 vs {differing}); this is a bug, "
                                "please report it")

    # -- sums and averages -----------------------------------------------------------
    def _group(self, tensor: torch.Tensor) -> Any:
        return self.device_group if tensor.device.type != "cpu" else None

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the processes, in place; returns it."""
        if self.enabled:
            dist.all_reduce(tensor, group=self._group(tensor))
        return tensor

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` over the processes (a new tensor)."""
        if not self.enabled:
            return values
        return self.sum_(values.detach().clone()) / self.world_size

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """What DistributedDataParallel does for the model, for parameters outside it (the task
        balancer's): a parameter without a gradient here counts as a zero gradient."""
        if not self.enabled:
            return
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            self.sum_(p.grad).div_(self.world_size)

    def consolidate(self, tensors: Sequence[torch.Tensor], everywhere: bool = False) -> None:
        """Per-process running sums (e.g. DWA's epoch losses) -> their total, on rank 0 only
        (zeros elsewhere, so the sum over processes stays the total: a checkpoint, written by
        rank 0, holds all of it) or, with ``everywhere``, on every process."""
        if not self.enabled:
            return
        for tensor in tensors:
            self.sum_(tensor)
            if not everywhere and not self.is_main:
                tensor.zero_()

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (batch-norm statistics) everywhere: DistributedDataParallel copies
        them at the start of each forward, so after the last step each process holds its own."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, 0, group=self._group(buffer))

    def gather(self, value: Any) -> list[Any]:
        """``value`` from every process, in rank order (picklable values; small ones)."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    # -- sharing out data and summing metrics ----------------------------------------
    def shard(self, dataset: Dataset) -> Dataset:
        """This process's share of an evaluation set: samples rank, rank + W, ... with no
        padding, so that no sample is counted twice."""
        if not self.enabled:
            return dataset
        return Subset(dataset, range(self.rank, len(dataset), self.world_size))  # type: ignore[arg-type]

    def sum_metrics(self, *metrics: Any) -> None:
        """Sum the accumulators of metric objects over the processes, in place."""
        if not self.enabled:
            return
        for metric in metrics:
            if isinstance(metric, SegmentationMetrics):
                self.sum_(metric.confusion)
            elif isinstance(metric, DepthMetrics):
                keys = sorted(metric._sums)
                sums = self.sum_(torch.tensor([metric._sums[k] for k in keys] + [metric.count], dtype=torch.float64))
                metric._sums.update(zip(keys, sums[:-1].tolist()))
                metric.count = int(sums[-1].item())
            elif isinstance(metric, FaceAttributeMetrics):
                self.sum_metrics(metric.race, metric.gender)
                sums = self.sum_(torch.tensor([metric.age_error, metric.count], dtype=torch.float64))
                metric.age_error, metric.count = float(sums[0]), int(sums[1].item())
            else:
                raise TypeError(f"{PROG}: cannot sum {type(metric).__name__} over processes")


SINGLE = Distributed()
