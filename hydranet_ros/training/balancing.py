"""Task balancing: how per-task losses add up to the one loss we back-propagate.

Every balancer is an ``nn.Module`` so that its learned parameters go into the
optimiser and all of its state (parameters and buffers) into the training
checkpoint through ``state_dict()``. Only tasks *present* in a batch (at least
one valid pixel) take part: an absent task's loss is an exact zero and must
not, e.g., pull an uncertainty weight or a DWA average towards zero.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

BALANCERS = ("fixed", "uncertainty", "dwa")


class Balancer(nn.Module):
    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a balancer needs at least one task")
        self.tasks = list(tasks)

    def task_weights(self) -> torch.Tensor:
        """(num_tasks,) multipliers currently applied to each task loss."""
        raise NotImplementedError

    def forward(self, losses: Mapping[str, torch.Tensor], present: Mapping[str, bool]) -> torch.Tensor:
        weights = self.task_weights()
        total = sum(losses[t] * 0.0 for t in self.tasks)  # keeps the graph when no task is present
        for i, task in enumerate(self.tasks):
            if present.get(task, False):
                total = total + weights[i] * losses[task] + self.regulariser(i)
        return total

    def regulariser(self, index: int) -> torch.Tensor | float:
        return 0.0

    def end_epoch(self) -> None:
        """Called once after every training epoch."""

    def accumulators(self) -> list[torch.Tensor]:
        """Buffers that sum over the epoch's steps: with several processes, these are summed
        over the processes (before ``end_epoch`` and before a checkpoint), so that every
        process ends the epoch with the same state."""
        return []

    def weights(self) -> dict[str, float]:
        """For logging: the current weight of each task."""
        return {t: float(w) for t, w in zip(self.tasks, self.task_weights().detach().cpu())}


class FixedWeights(Balancer):
    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        weights = dict(weights or {})
        unknown = set(weights) - set(self.tasks)
        if unknown:
            raise ValueError(f"weights given for unknown tasks {sorted(unknown)}; tasks are {self.tasks}")
        self.register_buffer("fixed", torch.tensor([float(weights.get(t, 1.0)) for t in self.tasks]))

    def task_weights(self) -> torch.Tensor:
        return self.fixed


class UncertaintyWeighting(Balancer):
    """Kendall, Gal & Cipolla (CVPR 2018): learn s_i = log sigma_i^2 per task and
    minimise exp(-s_i) * L_i + s_i. We use this one form for every task (the
    paper's 1/2 factors for regression only rescale s), as most
    re-implementations do; s_i is learned with the decoder's optimiser group."""

    def __init__(self, tasks: Sequence[str], initial_log_variance: float = 0.0) -> None:
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), float(initial_log_variance)))

    def task_weights(self) -> torch.Tensor:
        return torch.exp(-self.log_vars)

    def regulariser(self, index: int) -> torch.Tensor:
        return self.log_vars[index]


class DynamicWeightAverage(Balancer):
    """Liu, Johns & Davison (CVPR 2019): w_k(t) = K softmax_k(r_k(t-1) / T) with
    r_k(t-1) = L_k(t-1) / L_k(t-2), the ratio of the last two epochs' mean
    losses. Weights are 1 for the first two epochs. The running means and the
    history are buffers, so a resumed run continues with the same weights."""

    def __init__(self, tasks: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(tasks)
        if temperature <= 0:
            raise ValueError(f"DWA temperature must be > 0, got {temperature}")
        self.temperature = temperature
        k = len(self.tasks)
        self.register_buffer("loss_sum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("loss_count", torch.zeros(k, dtype=torch.float64))
        # history[0] = mean losses two epochs ago, history[1] = last epoch; NaN = unknown
        self.register_buffer("history", torch.full((2, k), math.nan, dtype=torch.float64))
        self.register_buffer("current", torch.ones(k))

    def task_weights(self) -> torch.Tensor:
        return self.current

    def forward(self, losses: Mapping[str, torch.Tensor], present: Mapping[str, bool]) -> torch.Tensor:
        if self.training:
            for i, task in enumerate(self.tasks):
                if present.get(task, False):
                    self.loss_sum[i] += float(losses[task].detach())
                    self.loss_count[i] += 1
        return super().forward(losses, present)

    def accumulators(self) -> list[torch.Tensor]:
        return [self.loss_sum, self.loss_count]

    def end_epoch(self) -> None:
        mean = torch.where(self.loss_count > 0, self.loss_sum / self.loss_count.clamp_min(1),
                           torch.full_like(self.loss_sum, math.nan))
        self.history[0] = self.history[1]
        self.history[1] = mean
        self.loss_sum.zero_()
        self.loss_count.zero_()
        ratio = self.history[1] / self.history[0]
        # a task unseen in either epoch (or with zero loss) keeps a neutral ratio of 1
        ratio = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio))
        k = len(self.tasks)
        self.current.copy_((k * torch.softmax(ratio / self.temperature, dim=0)).float())


def build_balancer(kind: str, tasks: Sequence[str], weights: Mapping[str, float] | None = None,
                   temperature: float = 2.0, initial_log_variance: float = 0.0) -> Balancer:
    if kind == "fixed":
        return FixedWeights(tasks, weights)
    if kind == "uncertainty":
        return UncertaintyWeighting(tasks, initial_log_variance)
    if kind == "dwa":
        return DynamicWeightAverage(tasks, temperature)
    raise ValueError(f"unknown task balancing {kind!r}; choose one of {', '.join(BALANCERS)}")
