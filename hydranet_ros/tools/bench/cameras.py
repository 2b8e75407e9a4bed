"""``hydranet_bench --cameras N``: N cameras on one network against N networks.

``batched`` is what ``hydranet_node`` does with ``cameras: [...]``: one predictor, and
each round one frame per camera through ``inference.batch.predict_frames`` (one pass
for same-size frames). ``separate`` is N predictors, N copies of the model, each
running its own camera's frame in turn, as N single-camera nodes would share one
device. Both produce the node's outputs (depth, labels, overlay) as host arrays.

Throughput is frames per second summed over the cameras; memory is the peak above
what was in use before the setup was built (``measure.MemoryProbe``: the process's
peak RSS on the CPU, where each setup runs in its own process with ``--isolate``,
the default there; ``torch.cuda.max_memory_allocated`` on CUDA).
"""
from __future__ import annotations

import argparse
import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ...common.timing import stage_stats
from ...inference.batch import predict_frames
from ...inference.predictor import Predictor
from .measure import MemoryProbe, time_calls
from .run import child_rows, load_model
from .variants import TASK_OUTPUTS

SETUPS = ("batched", "separate")
OUTPUTS = TASK_OUTPUTS["hydranet"]   # what the node publishes by default


@dataclass
class CameraResult:
    setup: str
    cameras: int
    models: int                 # model copies in memory
    width: int
    height: int
    precision: str
    backend: str
    fps: float                  # frames per second, summed over the cameras
    round_p50_ms: float         # one frame from every camera
    round_p99_ms: float
    peak_mem_mib: float | None

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


def bench_setup(setup: str, cameras: int, frames: list[np.ndarray], precision: str, args: argparse.Namespace,
                device: torch.device) -> CameraResult:
    """One setup at one resolution: build it, warm it up, time ``args.iters`` rounds."""
    model, card = load_model(args.weights)
    probe = MemoryProbe(device)
    probe.start()   # before the predictors are built, so that their weights count
    copies = 1 if setup == "batched" else cameras
    predictors = [Predictor(copy.deepcopy(model), card, device=device, precision=precision, backend=args.backend[0])
                  for _ in range(copies)]
    if setup == "batched":
        def one_round() -> None:
            predict_frames(predictors[0], frames, OUTPUTS)
    else:
        def one_round() -> None:
            for predictor, frame in zip(predictors, frames):
                predictor.predict(frame, OUTPUTS)
    if device.type == "cuda" and predictors[0].backend in ("onnxruntime", "tensorrt"):
        probe.available = False   # its memory is outside torch's allocator: none rather than too little
    with torch.inference_mode():
        stats = stage_stats(time_calls(one_round, args.iters, args.warmup))
    height, width = frames[0].shape[:2]
    return CameraResult(setup, cameras, copies, width, height, predictors[0].precision, predictors[0].backend,
                        fps=cameras * 1000.0 / stats.mean_ms, round_p50_ms=stats.p50_ms,
                        round_p99_ms=stats.p99_ms, peak_mem_mib=probe.peak_mib())


def measure_cameras(args: argparse.Namespace, device: torch.device) -> list[CameraResult]:
    """Every setup at every resolution, each setup in its own process with ``args.isolate``."""
    if args.isolate and len(args.camera_setups) > 1:
        return _isolated(args)
    rng = np.random.default_rng(0)
    results = []
    for width, height in args.resolution:
        frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(args.cameras)]
        for setup in args.camera_setups:
            results.append(bench_setup(setup, args.cameras, frames, args.precision[0], args, device))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return results


def _isolated(args: argparse.Namespace) -> list[CameraResult]:
    return [CameraResult(**row) for row in child_rows(args.argv, "--camera-setups", args.camera_setups, "cameras")]


def format_cameras(results: list[CameraResult]) -> str:
    """The table: one row per setup and resolution, and batched over separate ("" for none)."""
    if not results:
        return ""
    header = (f"{'cameras':>7} {'setup':<9} {'models':>6} {'resolution':<10} {'prec':<4} {'backend':<12} "
              f"{'fps (sum)':>9} {'round p50 ms':>12} {'round p99 ms':>12} {'peak MiB':>8}")
    lines = [header, "-" * len(header)]
    for r in results:
        memory = "n/a" if r.peak_mem_mib is None else f"{r.peak_mem_mib:.1f}"
        lines.append(f"{r.cameras:>7} {r.setup:<9} {r.models:>6} {r.resolution:<10} {r.precision:<4} "
                     f"{r.backend:<12} {r.fps:>9.2f} {r.round_p50_ms:>12.1f} {r.round_p99_ms:>12.1f} {memory:>8}")
    by_key = {(r.resolution, r.setup): r for r in results}
    for resolution in dict.fromkeys(r.resolution for r in results):
        batched, separate = by_key.get((resolution, "batched")), by_key.get((resolution, "separate"))
        if batched and separate:
            ratio = f"batched/separate at {resolution}: {batched.fps / separate.fps:.2f}x the throughput"
            if batched.peak_mem_mib and separate.peak_mem_mib:
                ratio += f", {batched.peak_mem_mib / separate.peak_mem_mib:.2f}x the peak memory"
            lines.append(ratio)
    return "\n".join(lines)


def cameras_json(results: list[CameraResult]) -> list[dict]:
    return [asdict(r) for r in results]
