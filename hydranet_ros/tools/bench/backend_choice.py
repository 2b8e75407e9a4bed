"""Which backend is fastest here: every backend installed for the device, timed side by
side on the same frame, and ``auto``'s choice checked against them.

Each backend runs what the node runs per frame (``Predictor.predict`` of depth,
labels and overlay) at the precision ``auto`` gives it. A backend that is not
installed, or that falls back to another at build or on its first frames, is listed
with the reason and not timed: the comparison reports only what ran as asked. The
timings are medians over interleaved rounds (``measure.interleaved_medians``), and
the verdict allows a margin, so a busy machine does not flip it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ...inference.backends import unavailable_reason
from ...inference.device import choose_precision
from ...inference.predictor import Predictor
from ...inference.weights import ModelCard
from ...model import HydraNet
from .measure import interleaved_medians

CANDIDATES = {"cpu": ("eager", "compile", "onnxruntime"),
              "cuda": ("eager", "compile", "cudagraph", "onnxruntime", "tensorrt")}
OUTPUTS = ("depth", "labels", "overlay")
# auto may be this much slower than the fastest before the verdict calls it wrong
DEFAULT_MARGIN = 1.25


def compare_backends(model: HydraNet, card: ModelCard, device: torch.device, frame: np.ndarray,
                     rounds: int = 5, min_run_time: float = 0.3, warmup: int = 2,
                     candidates: Sequence[str] | None = None, margin: float = DEFAULT_MARGIN) -> dict:
    """Time each candidate backend on ``frame`` (H, W, 3 uint8) and say whether ``auto``
    picks one within ``margin`` of the fastest; a JSON-ready dict (see ``format_comparison``)."""
    rows: list[dict] = []
    predictors: dict[str, Predictor] = {}
    for backend in candidates or CANDIDATES[device.type]:
        precision = choose_precision("auto", device, backend)
        reason = unavailable_reason(backend, device, precision, have_model=True, export=True)
        if reason is None:
            predictor = Predictor(model, card, device=device, precision="auto", backend=backend)
            for _ in range(warmup):  # compiles or captures this size; a failure switches to eager here
                predictor.predict(frame, OUTPUTS)
            if predictor.backend != backend:
                reason = f"fell back to {predictor.backend}"
            else:
                predictors[backend] = predictor
        rows.append({"backend": backend, "precision": precision, "median_ms": None, "skipped": reason})
    auto = Predictor(model, card, device=device, precision="auto", backend="auto").backend
    with torch.inference_mode():
        medians = interleaved_medians({name: (lambda p=p: p.predict(frame, OUTPUTS)) for name, p in predictors.items()},
                                      rounds, min_run_time)
    for row in rows:
        if row["backend"] in medians:
            row["median_ms"] = medians[row["backend"]] * 1e3
    fastest = min(medians, key=medians.__getitem__) if medians else None
    return {"resolution": f"{frame.shape[1]}x{frame.shape[0]}", "device": str(device), "rounds": rounds,
            "min_run_time_s": min_run_time, "margin": margin, "rows": rows, "auto": auto, "fastest": fastest,
            "faster_than_auto": faster_than(medians, auto, margin)}


def faster_than(medians: dict[str, float], chosen: str, margin: float) -> list[str]:
    """The backends that measured faster than ``chosen`` by more than ``margin``
    (``chosen`` itself unmeasured: every measured one, since it could not be compared)."""
    if chosen not in medians:
        return sorted(medians)
    return sorted(name for name, seconds in medians.items() if medians[chosen] > margin * seconds)


def format_comparison(comparison: dict) -> str:
    rows = comparison["rows"]
    measured = [row["median_ms"] for row in rows if row["median_ms"] is not None]
    best = min(measured) if measured else None
    lines = [f"Backends at {comparison['resolution']} on {comparison['device']} (predict: depth, labels, overlay; "
             f"median of {comparison['rounds']} interleaved rounds)",
             f"{'backend':<12} {'prec':<4} {'median ms':>10} {'vs best':>8}  note", "-" * 50]
    for row in rows:
        if row["median_ms"] is None:
            lines.append(f"{row['backend']:<12} {row['precision']:<4} {'-':>10} {'-':>8}  not run: {row['skipped']}")
        else:
            note = "auto" if row["backend"] == comparison["auto"] else ""
            lines.append(f"{row['backend']:<12} {row['precision']:<4} {row['median_ms']:10.1f} "
                         f"{row['median_ms'] / best:7.2f}x  {note}")
    slower = comparison["faster_than_auto"]
    lines.append(f"auto runs {comparison['auto']}: " + (
        "the fastest within a margin of " f"{comparison['margin']:.2f}x" if not slower
        else f"SLOWER than {', '.join(slower)} by more than {comparison['margin']:.2f}x"))
    return "\n".join(lines)
