"""Segmentation and depth metrics, shared by training validation and replay evaluation,
and the face-attribute metrics.

All accumulate over frames and report dataset-level numbers: IoU from a
summed confusion matrix, depth errors averaged over all valid pixels, face
errors and accuracies over all images.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    x = np.asarray(x)
    # read-only arrays (decoded message buffers) are copied: torch refuses to share them silently
    return torch.from_numpy(x if x.flags.writeable else x.copy())


class SegmentationMetrics:
    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: list[str] | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Class ids of the same shape; target pixels equal to ``ignore_index`` (or out of range) are skipped."""
        pred, target = _as_tensor(pred).long().flatten(), _as_tensor(target).long().flatten()
        if pred.shape != target.shape:
            raise ValueError(f"prediction and target differ in size: {pred.numel()} vs {target.numel()}")
        valid = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        index = target[valid].cpu() * self.num_classes + pred[valid].cpu().clamp(0, self.num_classes - 1)
        self.confusion += torch.bincount(index, minlength=self.num_classes ** 2).view(self.num_classes, -1)

    def compute(self) -> dict[str, float | dict[str, float]]:
        conf = self.confusion.double()
        tp = conf.diag()
        union = conf.sum(0) + conf.sum(1) - tp
        present = conf.sum(1) > 0  # classes that occur in the ground truth
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
        total = conf.sum().item()
        return {
            "miou": float(iou[present].mean()) if present.any() else float("nan"),
            "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
            "per_class_iou": {name: float(iou[i]) for i, name in enumerate(self.class_names) if present[i]},
        }


class DepthMetrics:
    """Eigen et al.'s depth metrics over pixels with finite ground truth in (min_depth, max_depth]."""

    def __init__(self, min_depth: float = 1e-3, max_depth: float = float("inf")) -> None:
        self.min_depth, self.max_depth = min_depth, max_depth
        self._sums = {k: 0.0 for k in ("sq", "log_sq", "abs_rel", "sq_rel", "d1", "d2", "d3")}
        self.count = 0

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        pred, target = _as_tensor(pred).double().flatten(), _as_tensor(target).double().flatten()
        if pred.shape != target.shape:
            raise ValueError(f"prediction and target differ in size: {pred.numel()} vs {target.numel()}")
        valid = torch.isfinite(target) & (target > self.min_depth) & (target <= self.max_depth)
        gt = target[valid]
        # predictions below the smallest valid depth would make log and ratios blow up
        est = pred[valid].nan_to_num(self.min_depth).clamp_min(self.min_depth)
        if gt.numel() == 0:
            return
        ratio = torch.maximum(est / gt, gt / est)
        self._sums["sq"] += float(((est - gt) ** 2).sum())
        self._sums["log_sq"] += float(((est.log() - gt.log()) ** 2).sum())
        self._sums["abs_rel"] += float(((est - gt).abs() / gt).sum())
        self._sums["sq_rel"] += float((((est - gt) ** 2) / gt).sum())
        for i, key in enumerate(("d1", "d2", "d3"), start=1):
            self._sums[key] += float((ratio < 1.25 ** i).sum())
        self.count += gt.numel()

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {k: float("nan") for k in ("rmse", "log_rmse", "abs_rel", "sq_rel", "delta1", "delta2", "delta3")}
        n = self.count
        return {
            "rmse": math.sqrt(self._sums["sq"] / n),
            "log_rmse": math.sqrt(self._sums["log_sq"] / n),
            "abs_rel": self._sums["abs_rel"] / n,
            "sq_rel": self._sums["sq_rel"] / n,
            "delta1": self._sums["d1"] / n,
            "delta2": self._sums["d2"] / n,
            "delta3": self._sums["d3"] / n,
        }


class FaceAttributeMetrics:
    """Age MAE (years), gender accuracy, race accuracy and per-class race accuracy
    (the share of each true race predicted right), over all images seen."""

    def __init__(self, race_names: list[str]) -> None:
        # confusion matrices over images work as they do over pixels
        self.race = SegmentationMetrics(len(race_names), ignore_index=-1, class_names=race_names)
        self.gender = SegmentationMetrics(2, ignore_index=-1)
        self.age_error, self.count = 0.0, 0

    def update(self, age: torch.Tensor, gender: torch.Tensor, race: torch.Tensor, target_age: torch.Tensor,
               target_gender: torch.Tensor, target_race: torch.Tensor) -> None:
        """Predicted age (N,) years, gender (N,) 0/1 and race (N,) ids against the targets."""
        self.age_error += float((age.double().cpu() - target_age.double().cpu()).abs().sum())
        self.count += int(age.numel())
        self.gender.update(gender, target_gender)
        self.race.update(race, target_race)

    def compute(self) -> dict[str, float | dict[str, float]]:
        if self.count == 0:
            return {"age_mae": float("nan"), "gender_accuracy": float("nan"), "race_accuracy": float("nan"),
                    "per_class_race_accuracy": {}}
        conf = self.race.confusion.double()
        seen = conf.sum(1)
        return {
            "age_mae": self.age_error / self.count,
            "gender_accuracy": float(self.gender.compute()["pixel_accuracy"]),
            "race_accuracy": float(self.race.compute()["pixel_accuracy"]),
            "per_class_race_accuracy": {name: float(conf[i, i] / seen[i])
                                        for i, name in enumerate(self.race.class_names) if seen[i] > 0},
        }
