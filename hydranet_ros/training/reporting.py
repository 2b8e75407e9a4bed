"""What a training run reports: TensorBoard scalars and images, and metric lines for the console."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .tasks import PROG


class Logger:
    """TensorBoard when installed and wanted; silently nothing otherwise (after one warning)."""

    def __init__(self, log_dir: Path, enabled: bool, purge_step: int) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print(f"{PROG}: TensorBoard is not installed (pip install tensorboard); logging to the console only",
                  file=sys.stderr)
            return
        # purge_step drops what a killed run logged after the checkpoint we resume from
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step or None)

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def images(self, prefix: str, panels: Sequence[torch.Tensor], step: int) -> None:
        if self.writer is not None:
            for i, panel in enumerate(panels):
                self.writer.add_image(f"{prefix}/{i}", panel.numpy(), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """For TensorBoard: nested ``per_class_<metric>`` dicts become ``<metric>_<class>``."""
    flat = {k: float(v) for k, v in metrics.items() if not isinstance(v, dict)}
    for key, per_class in metrics.items():
        if isinstance(per_class, dict):
            flat.update({f"{key.removeprefix('per_class_')}_{name}": float(v) for name, v in per_class.items()})
    return flat


def format_metrics(metrics: Mapping[str, Any], keys: Sequence[str]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics)
