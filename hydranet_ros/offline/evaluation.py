"""Evaluation of replayed predictions against ground truth, per frame and overall.

Ground truth comes from bag topics (paired with frames by header stamp, in
whichever order the messages were logged) or from folders (by file stem or
stamp). The numbers come from ``metrics``, the same code training validates with.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .metrics import DepthMetrics, SegmentationMetrics

KINDS = ("depth", "labels")
DEPTH_ENCODINGS_METRES = ("32FC1",)
DEPTH_ENCODINGS_SCALED = ("16UC1", "mono16")
LABEL_ENCODINGS = ("mono8", "8UC1")
SEGMENTATION_COLUMNS = ("miou", "pixel_accuracy")
DEPTH_COLUMNS = ("rmse", "log_rmse", "abs_rel", "sq_rel", "delta1", "delta2", "delta3")
ROW_COLUMNS = ("index", "name", "stamp_ns") + SEGMENTATION_COLUMNS + DEPTH_COLUMNS + ("error",)


class GroundTruthError(ValueError):
    """Ground truth that cannot be used (unsupported encoding, wrong size); the message says why."""


def depth_from_array(array: np.ndarray, encoding: str, scale: float) -> np.ndarray:
    """A ground-truth depth image -> float32 metres: 32FC1 as is, 16-bit integers times ``scale``."""
    if encoding in DEPTH_ENCODINGS_METRES:
        return array.astype(np.float32, copy=False)
    if encoding in DEPTH_ENCODINGS_SCALED:
        return array.astype(np.float32) * np.float32(scale)
    raise GroundTruthError(f"unsupported ground-truth depth encoding {encoding!r}; expected 32FC1 (metres) "
                           "or 16UC1 (integers times --gt-depth-scale, millimetres by default)")


def labels_from_array(array: np.ndarray, encoding: str) -> np.ndarray:
    if encoding not in LABEL_ENCODINGS:
        raise GroundTruthError(f"unsupported ground-truth label encoding {encoding!r}; expected mono8 class ids")
    return array


class GroundTruthFolder:
    """Files of one kind in a folder, looked up by stem (the image's stem, or the stamp in ns)."""

    SUFFIXES = {"depth": (".npy", ".png", ".tiff", ".tif"), "labels": (".png",)}

    def __init__(self, path: Path, kind: str, depth_scale: float = 0.001) -> None:
        if not Path(path).is_dir():
            raise GroundTruthError(f"ground-truth {kind} folder not found: {path}")
        self.kind, self.depth_scale = kind, depth_scale
        self.files: dict[str, Path] = {}
        # a stem present in several formats resolves to the first in SUFFIXES order
        for suffix in reversed(self.SUFFIXES[kind]):
            for file in Path(path).glob(f"*{suffix}"):
                self.files[file.stem] = file

    def load(self, stem: str) -> np.ndarray | None:
        from ..common.image_files import ImageFileError, read_depth_file, read_label_ids

        file = self.files.get(stem)
        if file is None:
            return None
        try:
            return read_depth_file(file, self.depth_scale) if self.kind == "depth" else read_label_ids(file)
        except ImageFileError as error:
            raise GroundTruthError(str(error)) from None


@dataclass
class _Pending:
    """A frame's prediction and/or ground truth waiting for the rest to arrive."""

    frame: tuple[int, str, int] | None = None           # index, name, stamp
    prediction: dict[str, np.ndarray] | None = None
    truth: dict[str, np.ndarray] = field(default_factory=dict)


class Evaluation:
    """Pairs predictions and ground truth by stamp and accumulates metrics.

    At most ``max_pending`` stamps wait for their partner; beyond that the
    oldest is evaluated with what it has, which bounds memory on long bags
    whose ground truth is sparse."""

    def __init__(self, kinds: Iterable[str], num_classes: int, ignore_index: int, class_names: Sequence[str],
                 min_depth: float = 1e-3, max_depth: float = float("inf"), max_pending: int = 64) -> None:
        self.kinds = tuple(k for k in KINDS if k in set(kinds))
        self.segmentation = SegmentationMetrics(num_classes, ignore_index, list(class_names))
        self.depth = DepthMetrics(min_depth, max_depth)
        self._segmentation_args = (num_classes, ignore_index, list(class_names))
        self._depth_args = (min_depth, max_depth)
        self.max_pending = max_pending
        self._pending: dict[int, _Pending] = {}
        self.rows: list[dict[str, Any]] = []
        self.frames_without_truth = 0
        self.unmatched_truth = 0
        self.truth_errors: list[str] = []

    def add_prediction(self, index: int, name: str, stamp_ns: int, depth: np.ndarray | None,
                       labels: np.ndarray | None) -> None:
        entry = self._pending.setdefault(stamp_ns, _Pending())
        entry.frame = (index, name, stamp_ns)
        entry.prediction = {"depth": depth, "labels": labels}
        self._settle(stamp_ns)

    def add_truth(self, kind: str, stamp_ns: int, array: np.ndarray) -> None:
        if kind not in self.kinds:
            return
        self._pending.setdefault(stamp_ns, _Pending()).truth[kind] = array
        self._settle(stamp_ns)

    def truth_error(self, message: str) -> None:
        self.truth_errors.append(message)

    def _settle(self, stamp_ns: int) -> None:
        entry = self._pending[stamp_ns]
        if entry.prediction is not None and all(k in entry.truth for k in self.kinds):
            self._close(self._pending.pop(stamp_ns))
        while len(self._pending) > self.max_pending:
            self._close(self._pending.pop(next(iter(self._pending))))

    def finish(self) -> dict[str, Any]:
        for stamp in list(self._pending):
            self._close(self._pending.pop(stamp))
        self.rows.sort(key=lambda row: row["index"])
        return self.summary()

    def _close(self, entry: _Pending) -> None:
        if entry.prediction is None:
            self.unmatched_truth += len(entry.truth)
        elif not entry.truth:
            self.frames_without_truth += 1
        else:
            assert entry.frame is not None
            self.rows.append(self._evaluate(entry.frame, entry.prediction, entry.truth))

    def _evaluate(self, frame: tuple[int, str, int], prediction: dict[str, np.ndarray],
                  truth: dict[str, np.ndarray]) -> dict[str, Any]:
        index, name, stamp = frame
        row: dict[str, Any] = {"index": index, "name": name, "stamp_ns": stamp}
        try:
            for kind, array in truth.items():
                if array.shape != prediction[kind].shape:
                    raise GroundTruthError(f"ground-truth {kind} is {array.shape[1]}x{array.shape[0]} but the "
                                           f"frame is {prediction[kind].shape[1]}x{prediction[kind].shape[0]}")
        except GroundTruthError as error:
            row["error"] = str(error)
            self.truth_errors.append(f"frame {index} ({name}): {error}")
            return row
        if "labels" in truth:
            # per-frame metrics from a fresh accumulator; the overall one sums confusion over frames
            frame_metrics = SegmentationMetrics(*self._segmentation_args)
            for metrics in (frame_metrics, self.segmentation):
                metrics.update(prediction["labels"], truth["labels"])
            result = frame_metrics.compute()
            row.update({k: result[k] for k in SEGMENTATION_COLUMNS})
        if "depth" in truth:
            frame_depth = DepthMetrics(*self._depth_args)
            for metrics in (frame_depth, self.depth):
                metrics.update(prediction["depth"], truth["depth"])
            row.update(frame_depth.compute())
        return row

    def summary(self) -> dict[str, Any]:
        evaluated = [r for r in self.rows if "error" not in r]
        return {
            "ground_truth": list(self.kinds),
            "frames_evaluated": len(evaluated),
            "frames_without_ground_truth": self.frames_without_truth,
            "ground_truth_without_frame": self.unmatched_truth,
            "ground_truth_errors": self.truth_errors,
            "segmentation": self.segmentation.compute() if "labels" in self.kinds else None,
            "depth": ({**self.depth.compute(), "valid_pixels": self.depth.count}
                      if "depth" in self.kinds else None),
        }


def json_safe(value: Any) -> Any:
    """NaN and infinity are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return json_safe(value.item())
    return value


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Per-frame rows as CSV, or as JSON lines when the name ends in .jsonl."""
    with open(path, "w", newline="") as handle:
        if path.suffix == ".jsonl":
            for row in rows:
                handle.write(json.dumps(json_safe(row)) + "\n")
            return
        writer = csv.DictWriter(handle, fieldnames=ROW_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in ROW_COLUMNS})
