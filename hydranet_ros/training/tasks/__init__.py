"""What a training recipe trains. The recipe's ``task`` key names a module here
that supplies everything specific to one kind of network: its datasets, model,
losses, validation metrics and model card. ``train.py`` runs the part common to
all of them: optimiser, schedule, steps, NaN guard, checkpoints and resume,
TensorBoard, progress bar and the weights file.

A task module provides the members of ``TrainingTask`` at module level (a module
is the task object: tests and tools can patch one function of it).
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol, Sequence, cast

import torch
from torch import nn

from ...inference.weights import TASKS, ModelCard
from ..config import Config, ConfigError
from ..losses import TaskLoss

PROG = "hydranet_train"  # messages name the command
TASK_NAMES = tuple(TASKS)  # every network a weights file can hold can be trained


class TrainingError(RuntimeError):
    """An expected failure (bad data, diverged loss ...) reported without a traceback."""


class TrainingTask(Protocol):
    METRICS: tuple[str, ...]          # validation metrics; checkpoint.best_metric picks one
    SUMMARY_METRICS: tuple[str, ...]  # the ones printed after each epoch

    def build_datasets(self, config: Config) -> tuple[Any, Any | None]:
        """Training and validation sets (None: no validation); each has ``class_names``."""

    def build_model(self, config: Config, train_set: Any) -> tuple[nn.Module, str]:
        """The initialised model (with an ``encoder`` child, which gets optim.lr_encoder;
        every other child gets lr_decoder) and a line saying how it was initialised."""

    def build_tasks(self, config: Config) -> list[TaskLoss]:
        """One loss per head; their names are the task balancer's tasks."""

    def make_card(self, config: Config, model: nn.Module, train_set: Any, provenance: dict[str, Any]) -> ModelCard:
        ...

    def evaluate(self, model: nn.Module, card: ModelCard, dataset: Any, config: Config, device: torch.device,
                 sample_images: int = 0, dist: Any = None) -> tuple[dict[str, Any], Sequence[torch.Tensor]]:
        """Validation metrics (nested ``per_class_<metric>`` dicts allowed) and up to
        ``sample_images`` (H, W, 3) uint8 panels for TensorBoard; leaves the model in train mode.
        ``dist`` (a ``training.distributed.Distributed``): evaluate this process's
        ``dist.shard(dataset)`` and return ``dist.sum_metrics``'s totals, the whole set's metrics."""


def load_task(name: str) -> TrainingTask:
    if name not in TASK_NAMES:
        raise ConfigError(f"task {name!r} is unknown; choose one of {', '.join(TASK_NAMES)}")
    return cast(TrainingTask, importlib.import_module(f"{__name__}.{name}"))
