"""Per-task training losses with masking for missing and invalid annotations.

Targets arrive at the input resolution and outputs at stride 4; every loss
upsamples its output bilinearly to the target size first, as the predictor
does, so training optimises exactly what the predictor will report.

Masking rules (the paper's "asymmetric annotations"): a sample whose
``has_<task>`` flag is false contributes nothing to that task; within a sample,
depth 0 or NaN and label 255 are invalid pixels. A batch with no valid pixel
for a task gives an exact zero that is still connected to the graph, so
``backward()`` works and nothing turns into NaN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import torch
import torch.nn.functional as F

from ..inference.predictor import apply_depth_activation

DEPTH_LOSSES = ("l1", "berhu", "silog")


@dataclass
class TaskResult:
    loss: torch.Tensor  # 0-dim, float32
    valid: int          # pixels (or samples) that contributed; 0 = the task was absent from the batch


class TaskLoss(Protocol):
    """Anything that scores one head's output against a batch (a face-attribute
    recipe adds e.g. an age regression task the same way)."""

    name: str

    def __call__(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> TaskResult: ...


def upsample_to(output: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, H, W) float32, bilinear as in the predictor."""
    output = output.float()
    if tuple(output.shape[-2:]) == tuple(size):
        return output
    return F.interpolate(output, size=size, mode="bilinear", align_corners=False)


def _zero(like: torch.Tensor) -> torch.Tensor:
    # multiplying keeps the graph (and the device/dtype) without adding any gradient
    return like.sum() * 0.0


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> TaskResult:
    """Mean cross-entropy over pixels whose label is not ``ignore_index``."""
    valid = int((labels != ignore_index).sum())
    if valid == 0:
        return TaskResult(_zero(logits), 0)
    loss = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum") / valid
    return TaskResult(loss, valid)


def l1_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    if not valid.any():
        return _zero(pred)
    return (pred[valid] - target[valid]).abs().mean()


def berhu_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """Reverse Huber (Laina et al. 2016), as the reference trains: L1 below
    c = threshold * max|error| over the batch's valid pixels, (e^2 + c^2) / 2c above.
    c is treated as a constant (no gradient flows through the max)."""
    if not valid.any():
        return _zero(pred)
    error = (pred[valid] - target[valid]).abs()
    c = threshold * error.detach().max()
    if c <= 0:  # perfect prediction: both branches are zero, avoid 0/0
        return error.mean()
    quadratic = (error ** 2 + c ** 2) / (2 * c)
    return torch.where(error <= c, error, quadratic).mean()


def silog_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, lam: float = 0.5,
               eps: float = 1e-3) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al. 2014), per image then averaged:
    mean(d^2) - lam * mean(d)^2 with d = log(pred) - log(target). lam = 0 is
    plain log-MSE, lam = 1 fully scale invariant. Predictions are clamped at
    ``eps`` because the log of a non-positive depth is undefined."""
    if not valid.any():
        return _zero(pred)
    d = torch.where(valid, pred.clamp_min(eps).log() - target.clamp_min(eps).log(), torch.zeros_like(pred))
    dims = tuple(range(1, d.dim()))
    count = valid.sum(dim=dims)
    present = count > 0
    n = count.clamp_min(1).to(d.dtype)
    per_image = (d ** 2).sum(dim=dims) / n - lam * (d.sum(dim=dims) / n) ** 2
    return per_image[present].mean()


def depth_valid_mask(target: torch.Tensor, has_depth: torch.Tensor | None) -> torch.Tensor:
    """(N, H, W) bool: finite, positive depth in samples that carry depth at all."""
    valid = torch.isfinite(target) & (target > 0)
    if has_depth is not None:
        valid &= has_depth.to(valid.device).view(-1, *([1] * (target.dim() - 1))).bool()
    return valid


class SegmentationTask:
    """Cross-entropy on the ``segm`` head against ``labels``; samples without
    labels are turned into all-ignore so they contribute nothing."""

    def __init__(self, name: str = "segm", ignore_index: int = 255) -> None:
        self.name = name
        self.ignore_index = ignore_index

    def __call__(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> TaskResult:
        labels = batch["labels"]
        has = batch.get("has_labels")
        if has is not None:
            labels = labels.masked_fill(~has.to(labels.device).bool().view(-1, 1, 1), self.ignore_index)
        logits = upsample_to(outputs[self.name], tuple(labels.shape[-2:]))
        return cross_entropy_loss(logits, labels, self.ignore_index)


class DepthTask:
    """A masked depth loss on the ``depth`` head (after the card's activation)."""

    def __init__(self, kind: str = "berhu", name: str = "depth", activation: str = "abs",
                 berhu_threshold: float = 0.2, silog_lambda: float = 0.5) -> None:
        if kind not in DEPTH_LOSSES:
            raise ValueError(f"unknown depth loss {kind!r}; choose one of {', '.join(DEPTH_LOSSES)}")
        self.name, self.kind, self.activation = name, kind, activation
        self._loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = {
            "l1": l1_loss,
            "berhu": lambda p, t, v: berhu_loss(p, t, v, berhu_threshold),
            "silog": lambda p, t, v: silog_loss(p, t, v, silog_lambda),
        }[kind]

    def __call__(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> TaskResult:
        target = batch["depth"]
        pred = apply_depth_activation(upsample_to(outputs[self.name], tuple(target.shape[-2:]))[:, 0], self.activation)
        valid = depth_valid_mask(target, batch.get("has_depth"))
        # NaN targets must not reach the arithmetic even where masked (0 * NaN = NaN in gradients)
        target = torch.where(valid, target, torch.ones_like(target))
        return TaskResult(self._loss(pred, target, valid), int(valid.sum()))


# -- per-image tasks (the face-attribute recipe): one target per image, nothing masked --
PER_IMAGE_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    # the log-sum-exp form: finite for any logit, where sigmoid-then-BCE saturates to log(0)
    "binary_cross_entropy": F.binary_cross_entropy_with_logits,
    "cross_entropy": F.cross_entropy,
}


class PerImageTask:
    """The mean ``loss`` between head ``name``'s output and ``batch[name]``: l1 for a
    regression (N,), binary_cross_entropy for (N,) logits against 0/1 floats,
    cross_entropy for (N, C) logits against int64 class ids."""

    def __init__(self, name: str, loss: str) -> None:
        if loss not in PER_IMAGE_LOSSES:
            raise ValueError(f"unknown per-image loss {loss!r}; choose one of {', '.join(PER_IMAGE_LOSSES)}")
        self.name, self.kind = name, loss
        self._loss = PER_IMAGE_LOSSES[loss]

    def __call__(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> TaskResult:
        output = outputs[self.name].float()  # outside autocast, in float32 like the pixel losses
        return TaskResult(self._loss(output, batch[self.name]), int(output.shape[0]))
