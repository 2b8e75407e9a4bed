"""Measuring the variants: each network, each mode, each backend, at each resolution,
precision and batch, with its memory; in one process or one per variant."""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...common.timing import stage_stats
from ...inference.predictor import Predictor
from ...inference.weights import ModelCard, load_weights
from ...model import HydraNet
from .measure import MemoryProbe, count_macs, count_params, release_freed_memory, time_calls
from .variants import TASK_OUTPUTS, VARIANT_TASKS, NaivePipeline, random_model, single_task

MODES = ("model", "e2e")


@dataclass
class Result:
    width: int
    height: int
    precision: str
    batch: int
    variant: str
    mode: str
    backend: str          # what actually ran (after any fallback)
    fps: float            # frames (not batches) per second
    mean_ms: float        # per call (one batch)
    p50_ms: float
    p99_ms: float
    peak_mem_mib: float | None
    params: int
    gmacs: float          # per frame

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass
class BenchSettings:
    device: torch.device
    backend: str
    iters: int
    warmup: int
    modes: tuple[str, ...]


def end_to_end(predictor: Predictor, images: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
    """What the node does per frame: uint8 image(s) in, host arrays out."""
    if images.shape[0] == 1:
        return vars(predictor.predict(images[0], outputs))
    return predictor.to_host(predictor.predict_batch(torch.from_numpy(images), outputs))


def bench_variant(variant: str, model: HydraNet, card: ModelCard, images: np.ndarray, precision: str,
                  settings: BenchSettings) -> list[Result]:
    """Measure one variant at one resolution, precision, batch and backend: one Result per mode."""
    device, batch = settings.device, images.shape[0]
    height, width = images.shape[1:3]
    tasks = VARIANT_TASKS[variant]
    nets = [model if task == "hydranet" else single_task(model, task) for task in tasks]
    params = count_params(nets)
    gmacs = sum(count_macs(net, (1, 3, height, width)) for net in nets) / 1e9
    probe = MemoryProbe(device)
    probe.start()  # before the device copies are built, so their weights count
    if variant == "naive":
        naive = NaivePipeline(model, card, device)
        calls = {"naive": lambda: [naive(image) for image in images]}
        backend, precision = "naive", "fp32"
    else:
        predictors = [(Predictor(copy.deepcopy(net), card, device=device, precision=precision,
                                 backend=settings.backend), TASK_OUTPUTS[task]) for net, task in zip(nets, tasks)]
        frames = torch.from_numpy(images).to(device)
        calls = {
            "model": lambda: [p.run_model(frames) for p, _ in predictors],
            "e2e": lambda: [end_to_end(p, images, outputs) for p, outputs in predictors],
        }
        calls = {mode: calls[mode] for mode in settings.modes}
        backend = "+".join(sorted({p.backend for p, _ in predictors}))
        if device.type == "cuda" and any(p.backend in ("onnxruntime", "tensorrt") for p, _ in predictors):
            probe.available = False  # its memory is outside torch's allocator: report none rather than too little
    results = []
    for mode, call in calls.items():
        probe.reset_peak()
        with torch.inference_mode():
            stats = stage_stats(time_calls(call, settings.iters, settings.warmup))
        results.append(Result(width, height, precision, batch, variant, mode, backend,
                              fps=batch * 1000.0 / stats.mean_ms, mean_ms=stats.mean_ms, p50_ms=stats.p50_ms,
                              p99_ms=stats.p99_ms, peak_mem_mib=probe.peak_mib(), params=params, gmacs=gmacs))
    return results


def warm_up_process(model: HydraNet, card: ModelCard, device: torch.device, images: np.ndarray,
                    precision: str, backends: Sequence[str]) -> None:
    """One batch through every code path before anything is measured: kernel
    libraries (whose code pages count in RSS), thread pools, per-shape kernel
    choices and the CUDA context initialise lazily (~200 MiB of RSS on the CPU)
    and would otherwise be billed to whichever variant runs first."""
    for backend in backends:
        end_to_end(Predictor(copy.deepcopy(model), card, device=device, precision=precision, backend=backend),
                   images, TASK_OUTPUTS["hydranet"])
    NaivePipeline(model, card, device)(images[0])
    release_freed_memory()


def load_model(weights: Path | None) -> tuple[HydraNet, ModelCard]:
    return load_weights(weights) if weights else random_model()


def run_benchmark(args: argparse.Namespace, device: torch.device) -> list[Result]:
    model, card = load_model(args.weights)
    rng = np.random.default_rng(0)
    results = []
    for width, height in args.resolution:
        for batch in args.batch:
            images = rng.integers(0, 256, size=(batch, height, width, 3), dtype=np.uint8)
            for precision in args.precision:
                warm_up_process(model, card, device, images, precision, args.backend)
                for variant in args.variants:
                    if variant == "naive" and precision != args.precision[0]:
                        continue  # always fp32: once per resolution and batch is enough
                    for backend in (args.backend if variant != "naive" else args.backend[:1]):
                        settings = BenchSettings(device, backend, args.iters, args.warmup, tuple(args.modes))
                        results += bench_variant(variant, model, card, images, precision, settings)
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
    return results


def child_rows(argv: list[str], option: str, values: Sequence[str], key: str) -> list[dict]:
    """Each of ``values`` for ``option`` (a variant, a camera setup) measured in a fresh
    process, so that its peak RSS is its own; the rows under ``key`` of each child's JSON.
    The children get this run's ``argv`` without ``option``, the outputs and the isolation flags."""
    common = strip_options(argv, (option, "--json", "--chart"), ("--isolate", "--no-isolate", "--quiet"))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for value in values:
            out = Path(tmp) / f"{value}.json"
            subprocess.run([sys.executable, "-m", "hydranet_ros.tools.bench", *common, option, value,
                            "--no-isolate", "--quiet", "--json", str(out)], check=True)
            rows += json.loads(out.read_text())[key]
    return rows


def strip_options(argv: list[str], with_values: tuple[str, ...], flags: tuple[str, ...]) -> list[str]:
    """``argv`` without the given options, for the per-variant child processes."""
    kept, skipping = [], False
    for arg in argv:
        if skipping and not arg.startswith("--"):
            continue
        skipping = False
        name = arg.split("=", 1)[0]
        if name in with_values:
            skipping = "=" not in arg
            continue
        if name not in flags:
            kept.append(arg)
    return kept
