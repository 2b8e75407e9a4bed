"""What changes with the number of training processes: each process's device, the backend,
SyncBatchNorm, the batch each process takes, and a resume on another number of processes.

Batch size: ``data.batch_size`` is per process (per GPU), as in torchvision's reference
scripts, so the global batch grows with the processes; ``data.global_batch_size`` instead
fixes the global batch and divides it among them. The learning rate is the recipe's unless
``distributed.scale_lr`` scales it with the global batch (``optimisation.lr_scale``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, MutableMapping

import torch
from torch import nn

from ..inference.device import resolve_device
from .config import Config, ConfigError
from .distributed import Distributed
from .tasks import TrainingError


def process_device(config: Config, dist: Distributed) -> torch.device:
    """The recipe's device; with several processes on CUDA, this process's GPU (LOCAL_RANK)."""
    device = resolve_device(config["device"])
    if not dist.enabled or device.type != "cuda":
        return device
    if device.index is not None and str(config["device"]) != "auto":
        raise ConfigError(f"device {config['device']!r} names one GPU, but {dist.world_size} processes each take "
                          "their own (cuda:LOCAL_RANK): set device: cuda")
    if dist.local_rank >= torch.cuda.device_count():
        raise TrainingError(f"LOCAL_RANK {dist.local_rank}, but this machine has {torch.cuda.device_count()} GPU(s): "
                            "start at most one process per GPU (torchrun --nproc_per_node)")
    torch.cuda.set_device(dist.local_rank)
    return torch.device("cuda", dist.local_rank)


def backend(config: Config, device: torch.device) -> str:
    """nccl or gloo; NCCL needs CUDA."""
    wanted = config["distributed"]["backend"]
    if wanted == "nccl" and device.type != "cuda":
        raise ConfigError(f"distributed.backend nccl needs CUDA, but this process trains on {device} "
                          f"(torch.cuda.is_available() is {torch.cuda.is_available()}); use gloo or auto")
    if wanted == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return wanted


def wants_sync_batchnorm(config: Config, device: torch.device, chosen_backend: str, dist: Distributed) -> bool:
    """Does this run use SyncBatchNorm? The recipe's switch, or its automatic choice (depth +
    segmentation under a launcher over NCCL, as torchvision's segmentation reference does).
    Decided while the run is built, so that a recipe that cannot have it stops before training."""
    wanted = config["distributed"]["sync_batchnorm"]
    if wanted is None:
        return dist.enabled and chosen_backend == "nccl" and config["task"] == "depth_segmentation"
    if not wanted or not dist.enabled:
        return False
    if device.type != "cuda":
        raise ConfigError("distributed.sync_batchnorm: PyTorch's SyncBatchNorm runs on GPUs only; "
                          f"set it to false to train on {device}")
    return True


def sync_batchnorm(model: nn.Module, dist: Distributed) -> nn.Module:
    """``model`` with SyncBatchNorm over the device's group (NCCL on GPUs), which exists only
    after ``Distributed.use_device``: the default group is Gloo. The converted layers keep the
    same Parameter objects and buffers, so the optimiser built before stays valid."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group=dist.device_group)


def batch_per_process(config: Config, world_size: int) -> int:
    data = config["data"]
    total = data["global_batch_size"]
    if total is None:
        return data["batch_size"]
    if total % world_size:
        raise ConfigError(f"data.global_batch_size {total} does not divide among {world_size} processes; "
                          f"use a multiple of {world_size}, or data.batch_size (per process)")
    return total // world_size


@dataclass(frozen=True)
class Shape:
    """How a run takes its data: processes, global batch, training samples, steps per epoch."""

    world_size: int
    global_batch: int
    train_samples: int
    steps_per_epoch: int

    def record(self) -> dict[str, int]:
        return {"world_size": self.world_size, "global_batch": self.global_batch,
                "train_samples": self.train_samples, "steps_per_epoch": self.steps_per_epoch}


def adapt_progress(progress: MutableMapping[str, Any], now: Shape, per_process: int) -> str | None:
    """Fit a restored run's position to this run's shape; returns what changed, or None.

    The mid-epoch position is a number of samples (``EpochSampler``), which any world size
    can continue from; the schedule continues at the same point of the epoch. Checkpoints
    written before these fields existed were single-process runs."""
    before = Shape(progress.get("world_size", 1), progress.get("global_batch", per_process),
                   progress.get("train_samples", now.train_samples),
                   progress.get("steps_per_epoch", now.steps_per_epoch))
    progress.setdefault("samples_in_epoch", progress["step_in_epoch"] * before.global_batch)
    samples = progress["samples_in_epoch"]
    if samples and before.train_samples != now.train_samples:
        raise TrainingError(f"the training set has {now.train_samples} samples, the checkpoint's run had "
                            f"{before.train_samples}: a run stopped mid-epoch resumes only on the same data")
    progress.update(now.record())
    if (before.world_size, before.global_batch) == (now.world_size, now.global_batch):
        return None
    old_step = progress["global_step"]
    progress["step_in_epoch"] = samples // now.global_batch
    progress["global_step"] = progress["epoch"] * now.steps_per_epoch + progress["step_in_epoch"]
    return (f"resuming a run of {before.world_size} process(es) on {now.world_size}: global batch "
            f"{before.global_batch} -> {now.global_batch} ({per_process} per process), "
            f"{before.steps_per_epoch} -> {now.steps_per_epoch} steps per epoch; epoch {progress['epoch'] + 1} "
            f"continues after its first {samples} samples, the schedule at step {progress['global_step']} "
            f"(was {old_step})")
