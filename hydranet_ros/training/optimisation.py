"""Optimiser and learning-rate schedule of a training run."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .config import Config
from .processes import batch_per_process


def lr_scale(config: Config, world_size: int) -> float:
    """The linear scaling rule's factor with ``distributed.scale_lr`` (else 1): the global batch
    this run takes over the one the recipe's rates are for, ``data.batch_size`` on one process
    or ``data.global_batch_size``, which stays the same on any number of processes."""
    if not config["distributed"]["scale_lr"]:
        return 1.0
    data = config["data"]
    recipe_batch = data["global_batch_size"] or data["batch_size"]
    return batch_per_process(config, world_size) * world_size / recipe_batch


def base_learning_rates(config: Config, world_size: int = 1) -> dict[str, float]:
    """The learning rate of each parameter group: the recipe's, times ``lr_scale``."""
    o, scale = config["optim"], lr_scale(config, world_size)
    return {"encoder": o["lr_encoder"] * scale, "decoder": o["lr_decoder"] * scale, "balancer": o["lr_decoder"] * scale}


def build_optimizer(config: Config, encoder: nn.Module, decoder: Sequence[nn.Module],
                    balancer: nn.Module, world_size: int = 1) -> torch.optim.Optimizer:
    """Groups: encoder (lr_encoder), decoder and heads (lr_decoder), learned task
    weights (lr_decoder, no weight decay: decay would pull log-variances to 0)."""
    o, lr = config["optim"], base_learning_rates(config, world_size)
    groups = [{"params": list(encoder.parameters()), "lr": lr["encoder"], "name": "encoder"},
              {"params": [p for module in decoder for p in module.parameters()], "lr": lr["decoder"],
               "name": "decoder"}]
    balancer_params = list(balancer.parameters())
    if balancer_params:
        groups.append({"params": balancer_params, "lr": lr["balancer"], "weight_decay": 0.0, "name": "balancer"})
    if o["kind"] == "sgd":
        return torch.optim.SGD(groups, lr=lr["decoder"], momentum=o["momentum"], weight_decay=o["weight_decay"])
    return torch.optim.AdamW(groups, lr=lr["decoder"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"])


def build_scheduler(config: Config, optimizer: torch.optim.Optimizer,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier: linear warm-up, then cosine, step decay or constant.
    A plain closure (not an object) so that the scheduler's state_dict holds no
    recipe values: a resume with more --epochs stretches the schedule."""
    s = config["schedule"]
    total = s["epochs"] * steps_per_epoch
    warmup, start = s["warmup_steps"], s["warmup_start_factor"]
    milestones = [e * steps_per_epoch for e in s["step_epochs"]]

    def factor(step: int) -> float:
        if step < warmup:
            return start + (1.0 - start) * step / warmup
        if s["kind"] == "step":
            return s["gamma"] ** sum(step >= m for m in milestones)
        if s["kind"] == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return s["min_lr_factor"] + (1.0 - s["min_lr_factor"]) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def move_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, optimizer: torch.optim.Optimizer, step: int,
                  base_lrs: dict[str, float]) -> None:
    """Put a restored schedule at ``step`` with this run's base learning rates. A resume on
    the same number of processes changes nothing (the same formula gives the same rates);
    on another number, steps per epoch and, with ``scale_lr``, the base rates differ."""
    scheduler.base_lrs = [base_lrs[group["name"]] for group in optimizer.param_groups]
    scheduler.last_epoch = step
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["initial_lr"] = base
        group["lr"] = base * factor(step)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
