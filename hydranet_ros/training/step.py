"""One training step and the data it takes: each process's share of every batch, the
loss averaged over the processes, the NaN guard before the update."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..inference.frame_network import normalise
from .balancing import Balancer
from .checkpoint import EpochSampler, SeededSamples
from .config import Config
from .distributed import SINGLE, Distributed
from .losses import TaskLoss
from .tasks import TrainingError


def train_loader(dataset: Any, config: Config, device: torch.device, batch_size: int | None = None,
                 dist: Distributed = SINGLE) -> tuple[DataLoader, EpochSampler]:
    """This process's loader: its share of each epoch (``EpochSampler``), ``batch_size`` a batch."""
    data = config["data"]
    batch_size = batch_size or data["batch_size"]
    sampler = EpochSampler(len(dataset), config["seed"], rank=dist.rank, world_size=dist.world_size)
    # the loader's own generator: creating an iterator must not draw from the global RNG
    loader = DataLoader(SeededSamples(dataset, config["seed"]), batch_size=batch_size, sampler=sampler,
                        drop_last=True, num_workers=data["num_workers"], pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(config["seed"]))
    if len(dataset) < batch_size * dist.world_size:  # else processes would train on padding duplicates
        each = f" on each of {dist.world_size} processes ({batch_size} x {dist.world_size} samples)" \
            if dist.enabled else ""
        raise TrainingError(f"the training set has {len(dataset)} samples, fewer than one batch "
                            f"(data.batch_size {batch_size}){each}")
    return loader, sampler


# -- one step --------------------------------------------------------------------------
class NonFiniteLoss(TrainingError):
    pass


def train_step(model: nn.Module, batch: Mapping[str, Any], tasks: Sequence[TaskLoss], balancer: Balancer,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *, mean: Sequence[float],
               std: Sequence[float], device: torch.device, amp: bool, grad_clip: float,
               dist: Distributed = SINGLE) -> dict[str, float]:
    """One optimisation step; returns the per-task losses and ``total`` (averaged over the
    processes). Raises ``NonFiniteLoss`` *before* the update when the loss is NaN or
    infinite on any process, on every process alike."""
    targets = {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    images = normalise(targets.pop("image"), mean, std)  # the predictor's own normalisation
    with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        outputs = model(images)
    results = {task.name: task(outputs, targets) for task in tasks}  # losses in float32, outside autocast
    losses = {name: r.loss for name, r in results.items()}
    total = balancer(losses, {name: r.valid > 0 for name, r in results.items()})
    local = torch.stack([loss.detach().float() for loss in losses.values()] + [total.detach().float()])
    values = dict(zip([*losses, "total"], dist.mean(local).tolist()))
    if not all(math.isfinite(v) for v in values.values()):
        raise NonFiniteLoss(", ".join(f"{k} {v:.4g}" for k, v in values.items()))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()  # DistributedDataParallel averages the model's gradients here
    dist.average_gradients(balancer.parameters())
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return values


def is_better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)
