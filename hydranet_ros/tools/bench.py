"""``hydranet_bench``: is one multi-task network faster than two single-task ones,
and how much does the fast path gain over the tutorial way?

On the same inputs, in one process (or one per variant with ``--isolate``), after
warm-up and with the device synchronised around every timed call, it measures:

* variants: ``segm`` (encoder + decoder + segmentation head), ``depth`` (the same
  with the depth head), ``stacked`` (those two, one after the other), ``hydranet``
  (shared encoder and decoder, both heads), each in two modes:
  ``model`` (normalised tensor on the device in, raw outputs out) and ``e2e``
  (uint8 image in, depth, labels and overlay out as numpy arrays: ``Predictor.predict``,
  what the node publishes);
* ``naive``: HydraNet end to end the tutorial way (numpy normalisation, fp32,
  raw outputs copied to the CPU, OpenCV upsampling, numpy argmax, palette and blend);

and reports frames per second, latency p50/p99, peak memory, parameters and
multiply-accumulates (MACs) per frame, as a table, JSON and a PNG chart; with
several resolutions or batch sizes, also how HydraNet's cost grows with pixel
count and its throughput with batch size (``scaling``).
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import datetime
import gc
import json
import logging
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..common.sizes import parse_size
from ..common.timing import stage_stats
from ..inference.backends import BACKENDS
from ..inference.colour import palette_lut
from ..inference.predictor import PRECISIONS, Predictor, apply_depth_activation, resolve_device, resolve_precision
from ..inference.weights import ModelCard, WeightsError, load_weights
from ..model import HydraNet, ModelConfig
from ..model.presets import KITTI6

log = logging.getLogger(__name__)

VARIANTS = ("segm", "depth", "stacked", "hydranet", "naive")
MODES = ("model", "e2e")
DEFAULT_RESOLUTIONS = ("640x480", "1242x375", "1920x1080")
# What each network's end-to-end run returns: what the node publishes for it.
# The networks each variant runs, one after the other ("hydranet": both heads).
VARIANT_TASKS = {"segm": ("segm",), "depth": ("depth",), "stacked": ("segm", "depth"),
                 "hydranet": ("hydranet",), "naive": ("hydranet",)}
TASK_OUTPUTS = {"segm": ("labels", "overlay"), "depth": ("depth",), "hydranet": ("depth", "labels", "overlay")}
# Issue 6's targets, defined for a GPU.
TARGETS = {"hydranet_vs_stacked_fps": 1.8, "hydranet_vs_stacked_memory": 0.6, "fast_vs_naive_fps": 10.0}


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


# --- model statistics ------------------------------------------------------------

def single_task(model: HydraNet, task: str) -> HydraNet:
    """A copy of ``model`` with only the ``task`` head: the single-task network with
    the same encoder and decoder. (Its ``config`` still lists every head; it is
    only for measuring, never saved.)"""
    if task not in model.heads:
        raise ValueError(f"unknown task {task!r}; the model has heads {', '.join(model.heads)}")
    single = copy.deepcopy(model)
    single.heads = nn.ModuleDict({task: single.heads[task]})
    return single


def count_params(modules: Iterable[nn.Module]) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass: each Conv2d adds output elements x
    in_channels/groups x kH x kW, each Linear output elements x in_features (biases,
    pooling, upsampling and additions are not counted). Runs on the meta device, so
    it costs no compute at any resolution."""
    meta = copy.deepcopy(model).to("meta")
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            meta(torch.empty(*input_shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return total


# --- the naive baseline ----------------------------------------------------------

class NaivePipeline:
    """HydraNet end to end the tutorial way, deliberately: the fast path's baseline.
    Pre- and post-processing happen on the CPU in numpy/OpenCV, the network in fp32
    without channels-last, raw outputs are copied back before upsampling."""

    def __init__(self, model: HydraNet, card: ModelCard, device: torch.device, overlay_alpha: float = 0.5) -> None:
        self.model = copy.deepcopy(model).float().eval().to(device)
        self.device = device
        self.mean = np.asarray(card.mean, dtype=np.float32)
        self.std = np.asarray(card.std, dtype=np.float32)
        self.palette = palette_lut(card.palette)
        self.alpha = overlay_alpha
        self.depth_activation = card.depth_activation

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import cv2

        height, width = image.shape[:2]
        x = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)
        raw = {name: value[0].cpu().numpy() for name, value in self.model(x).items()}
        depth = cv2.resize(raw["depth"][0], (width, height), interpolation=cv2.INTER_LINEAR)
        depth = apply_depth_activation(torch.from_numpy(depth), self.depth_activation).numpy()
        logits = cv2.resize(raw["segm"].transpose(1, 2, 0), (width, height), interpolation=cv2.INTER_LINEAR)
        labels = (logits.argmax(axis=2) if logits.ndim == 3 else np.zeros((height, width))).astype(np.uint8)
        colours = self.palette[labels]
        overlay = np.round(image * (1.0 - self.alpha) + colours * self.alpha).astype(np.uint8)
        return depth, labels, overlay


# --- measuring -------------------------------------------------------------------

def synchronizer(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def time_calls(fn: Callable[[], object], iters: int, warmup: int, sync: Callable[[], None]) -> list[float]:
    """Seconds per call after ``warmup`` untimed calls (which also compile or capture fixed-shape backends)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return samples


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


class MemoryProbe:
    """Peak memory of one variant above what was in use just before it was built.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``
    (tensors allocated through torch; onnxruntime's own arena is not seen).
    CPU: the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) minus
    its RSS before the variant. In one process, memory freed by an earlier variant
    but kept by the allocator could hide part of a later one's peak; glibc is asked
    to return it first (malloc_trim), and ``--isolate`` runs each variant in a fresh
    process for exact figures.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base = 0
        self.available = True

    def start(self) -> None:
        release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                self._base = _proc_status_kib("VmRSS") * 1024
            except OSError:
                self.available = False
        self.reset_peak()

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # "5" resets the peak RSS (VmHWM) to the current RSS
        except OSError:
            self.available = False

    def peak_mib(self) -> float | None:
        if not self.available:
            return None
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _proc_status_kib("VmHWM") * 1024
        return max(peak - self._base, 0) / 2**20


@dataclass
class BenchSettings:
    device: torch.device
    backend: str
    iters: int
    warmup: int
    modes: tuple[str, ...]


def bench_variant(variant: str, model: HydraNet, card: ModelCard, images: np.ndarray, precision: str,
                  settings: BenchSettings) -> list[Result]:
    """Measure one variant at one resolution, precision and batch: one Result per mode."""
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
    sync = synchronizer(device)
    results = []
    for mode, call in calls.items():
        probe.reset_peak()
        with torch.inference_mode():
            stats = stage_stats(time_calls(call, settings.iters, settings.warmup, sync))
        results.append(Result(width, height, precision, batch, variant, mode, backend,
                              fps=batch * 1000.0 / stats.mean_ms, mean_ms=stats.mean_ms, p50_ms=stats.p50_ms,
                              p99_ms=stats.p99_ms, peak_mem_mib=probe.peak_mib(), params=params, gmacs=gmacs))
    return results


def end_to_end(predictor: Predictor, images: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
    """What the node does per frame: uint8 image(s) in, host arrays out."""
    if images.shape[0] == 1:
        return vars(predictor.predict(images[0], outputs))
    return predictor.to_host(predictor.predict_batch(torch.from_numpy(images), outputs))


def random_model(num_classes: int = len(KITTI6.class_names)) -> tuple[HydraNet, ModelCard]:
    """Seeded random weights with a KITTI-style card: timings do not depend on the values."""
    torch.manual_seed(0)
    card = ModelCard(model=ModelConfig(num_classes=num_classes), class_names=list(KITTI6.class_names),
                     palette=list(KITTI6.palette), depth_range=KITTI6.depth_range,
                     provenance={"source": "hydranet_bench, random weights"})
    return HydraNet(card.model).eval(), card


def warm_up_process(model: HydraNet, card: ModelCard, device: torch.device, images: np.ndarray,
                    precision: str) -> None:
    """One batch through every code path before anything is measured: kernel
    libraries (whose code pages count in RSS), thread pools, per-shape kernel
    choices and the CUDA context initialise lazily (~200 MiB of RSS on the CPU)
    and would otherwise be billed to whichever variant runs first."""
    end_to_end(Predictor(copy.deepcopy(model), card, device=device, precision=precision), images,
               TASK_OUTPUTS["hydranet"])
    NaivePipeline(model, card, device)(images[0])
    release_freed_memory()


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so that a variant's RSS
    peak is not hidden by memory an earlier one freed but glibc kept."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim, peaks may under-count
        pass


def run_benchmark(args: argparse.Namespace, device: torch.device) -> list[Result]:
    model, card = load_weights(args.weights) if args.weights else random_model()
    settings = BenchSettings(device, args.backend, args.iters, args.warmup, tuple(args.modes))
    rng = np.random.default_rng(0)
    results = []
    for width, height in args.resolution:
        for batch in args.batch:
            images = rng.integers(0, 256, size=(batch, height, width, 3), dtype=np.uint8)
            for precision in args.precision:
                warm_up_process(model, card, device, images, precision)
                for variant in args.variants:
                    if variant == "naive" and precision != args.precision[0]:
                        continue  # always fp32: once per resolution and batch is enough
                    results += bench_variant(variant, model, card, images, precision, settings)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    return results


def run_isolated(args: argparse.Namespace, argv_common: list[str]) -> list[Result]:
    """Each variant in a fresh process, so that its peak RSS is its own."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            out = Path(tmp) / f"{variant}.json"
            command = [sys.executable, "-m", "hydranet_ros.tools.bench", *argv_common, "--variants", variant,
                       "--no-isolate", "--quiet", "--json", str(out)]
            subprocess.run(command, check=True)
            results += [Result(**row) for row in json.loads(out.read_text())["results"]]
    return results


# --- reporting -------------------------------------------------------------------

def comparisons(results: Sequence[Result]) -> list[dict]:
    """Per resolution, precision and batch: HydraNet vs stacked (each mode) and fast vs naive end to end."""
    index = {(r.resolution, r.precision, r.batch, r.variant, r.mode): r for r in results}
    naive = {(r.resolution, r.batch): r for r in results if r.variant == "naive"}
    rows = []
    for r in results:
        if r.variant != "hydranet":
            continue
        row: dict = {"resolution": r.resolution, "precision": r.precision, "batch": r.batch, "mode": r.mode}
        stacked = index.get((r.resolution, r.precision, r.batch, "stacked", r.mode))
        if stacked:
            row["hydranet_vs_stacked_fps"] = r.fps / stacked.fps
            if r.peak_mem_mib and stacked.peak_mem_mib:
                row["hydranet_vs_stacked_memory"] = r.peak_mem_mib / stacked.peak_mem_mib
        if r.mode == "e2e" and (r.resolution, r.batch) in naive:
            row["fast_vs_naive_fps"] = r.fps / naive[(r.resolution, r.batch)].fps
        rows.append(row)
    return rows


def scaling(results: Sequence[Result]) -> list[dict]:
    """How HydraNet's cost grows with pixel count and its throughput with batch
    size, per precision and mode, as flat rows of two kinds:

    * ``{"kind": "pixels", "precision", "mode", "batch", "resolution", "mpix",
      "ms_per_frame", "us_per_mpix", "relative"}``: one per resolution, for each
      batch size measured at two or more resolutions. ``mpix`` is megapixels per
      frame, ``ms_per_frame`` the mean call time divided by the batch,
      ``us_per_mpix`` microseconds per megapixel-frame and ``relative`` that
      divided by its value at the largest resolution: 1.0 is cost linear in pixel
      count, above 1 small frames pay a fixed overhead.
    * ``{"kind": "batch", "precision", "mode", "resolution", "batch", "fps",
      "speedup", "efficiency"}``: one per batch size, for each resolution measured
      at two or more batch sizes. ``speedup`` is frames per second over those at
      the smallest batch, ``efficiency`` the speedup over the batch ratio: 1.0 is
      N x the throughput from N frames per call.

    Pixel rows come first, then batch rows; each sorted by precision, mode and
    then pixel count or batch size.
    """
    # One run per configuration: a resolution or batch given twice counts once.
    runs = list({(r.precision, r.mode, r.width, r.height, r.batch): r
                 for r in results if r.variant == "hydranet"}.values())
    by_batch = _groups(runs, lambda r: (r.precision, MODES.index(r.mode), r.batch), _pixel_order)
    by_resolution = _groups(runs, lambda r: (r.precision, MODES.index(r.mode), *_pixel_order(r)), lambda r: r.batch)
    return [row for group in by_batch for row in _pixel_rows(group)] + \
        [row for group in by_resolution for row in _batch_rows(group)]


def _pixel_order(r: Result) -> tuple[int, int, int]:
    return r.width * r.height, r.width, r.height


def _groups(runs: Iterable[Result], group: Callable[[Result], tuple],
            order: Callable[[Result], object]) -> list[list[Result]]:
    """``runs`` split by ``group`` (groups in sorted order), each sorted by ``order``;
    groups of one are dropped, since a single point shows no scaling."""
    groups: dict[tuple, list[Result]] = {}
    for r in runs:
        groups.setdefault(group(r), []).append(r)
    return [sorted(members, key=order) for _, members in sorted(groups.items()) if len(members) > 1]


def _us_per_mpix(r: Result) -> float:
    return r.mean_ms / r.batch * 1e3 / (r.width * r.height / 1e6)


def _pixel_rows(runs: Sequence[Result]) -> list[dict]:
    # The largest frame is the reference: fixed per-call overhead is the smallest share of its cost.
    reference = _us_per_mpix(max(runs, key=_pixel_order))
    return [{"kind": "pixels", "precision": r.precision, "mode": r.mode, "batch": r.batch,
             "resolution": r.resolution, "mpix": r.width * r.height / 1e6, "ms_per_frame": r.mean_ms / r.batch,
             "us_per_mpix": _us_per_mpix(r), "relative": _us_per_mpix(r) / reference} for r in runs]


def _batch_rows(runs: Sequence[Result]) -> list[dict]:
    base = min(runs, key=lambda r: r.batch)
    rows = []
    for r in runs:
        speedup = r.fps / base.fps
        rows.append({"kind": "batch", "precision": r.precision, "mode": r.mode, "resolution": r.resolution,
                     "batch": r.batch, "fps": r.fps, "speedup": speedup, "efficiency": speedup * base.batch / r.batch})
    return rows


def format_table(results: Sequence[Result], ratios: Sequence[dict]) -> str:
    header = (f"{'resolution':<10} {'prec':<4} {'batch':>5} {'variant':<8} {'mode':<5} {'backend':<11} "
              f"{'fps':>8} {'p50 ms':>8} {'p99 ms':>8} {'peak MiB':>8} {'params M':>8} {'GMAC':>7}")
    lines = [header, "-" * len(header)]
    for r in results:
        memory = f"{r.peak_mem_mib:8.1f}" if r.peak_mem_mib is not None else f"{'n/a':>8}"
        lines.append(f"{r.resolution:<10} {r.precision:<4} {r.batch:>5} {r.variant:<8} {r.mode:<5} {r.backend:<11} "
                     f"{r.fps:8.1f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {memory} {r.params / 1e6:8.2f} {r.gmacs:7.2f}")
    for row in ratios:
        parts = [f"{key} {row[key]:.2f}x (target {'>=' if 'fps' in key else '<='} {TARGETS[key]})"
                 for key in TARGETS if key in row]
        if parts:
            lines.append(f"{row['resolution']} {row['precision']} batch {row['batch']} {row['mode']}: " + ", ".join(parts))
    return "\n".join(lines)


# (heading, key, format): the heading takes the format's alignment and width.
PIXEL_COLUMNS = (("prec", "precision", "<4"), ("mode", "mode", "<5"), ("batch", "batch", ">5"),
                 ("resolution", "resolution", "<10"), ("Mpix", "mpix", ">7.3f"), ("ms/frame", "ms_per_frame", ">9.3f"),
                 ("us/Mpix", "us_per_mpix", ">10.0f"), ("relative", "relative", ">8.2f"))
BATCH_COLUMNS = (("prec", "precision", "<4"), ("mode", "mode", "<5"), ("resolution", "resolution", "<10"),
                 ("batch", "batch", ">5"), ("fps", "fps", ">9.1f"), ("speedup", "speedup", ">7.2f"),
                 ("efficiency", "efficiency", ">10.2f"))


def format_scaling(rows: Sequence[dict]) -> str:
    """``scaling``'s rows as up to two tables; empty when there is nothing to report."""
    pixels, batches = ([row for row in rows if row["kind"] == kind] for kind in ("pixels", "batch"))
    sections = [
        _text_table("HydraNet cost vs pixel count (relative: us/Mpix over that at the largest resolution; "
                    "1.00 = linear in pixels)", PIXEL_COLUMNS, pixels),
        _text_table("HydraNet throughput vs batch size (efficiency: speedup over the batch ratio; "
                    "1.00 = N x the frames per second)", BATCH_COLUMNS, batches),
    ]
    return "\n\n".join(section for section in sections if section)


def _text_table(title: str, columns: Sequence[tuple[str, str, str]], rows: Sequence[dict]) -> str:
    if not rows:
        return ""
    header = " ".join(f"{heading:{fmt.split('.')[0]}}" for heading, _, fmt in columns)
    lines = [title, header, "-" * len(header)]
    lines += [" ".join(f"{row[key]:{fmt}}" for _, key, fmt in columns) for row in rows]
    return "\n".join(lines)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def report(args: argparse.Namespace, device: torch.device, results: Sequence[Result], ratios: Sequence[dict],
           scale: Sequence[dict]) -> dict:
    try:
        import onnxruntime
        ort_version: str | None = onnxruntime.__version__
    except ImportError:
        ort_version = None
    memory = ("torch.cuda.max_memory_allocated above the allocation before the variant was built" if device.type == "cuda"
              else "peak RSS (VmHWM) above the RSS before the variant was built, "
                   + ("each variant in its own process" if args.isolate else "all variants in one process"))
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "cuda": torch.version.cuda, "onnxruntime": ort_version, "cpu_threads": torch.get_num_threads(),
            "precisions": list(args.precision), "batches": list(args.batch),
            "backend_requested": args.backend,
            "backends_used": sorted({r.backend for r in results}),
            "iters": args.iters, "warmup": args.warmup, "weights": str(args.weights) if args.weights else "random",
            "memory_method": memory, "command": ["hydranet_bench", *args.argv],
        },
        "targets": TARGETS,
        "results": [asdict(r) for r in results],
        "comparisons": list(ratios),
        "scaling": list(scale),
    }


COLOURS_BGR = {"segm": (180, 119, 31), "depth": (14, 127, 255), "stacked": (40, 39, 214),
               "hydranet": (44, 160, 44), "naive": (127, 127, 127)}


def draw_chart(results: Sequence[Result], title: str, path: Path) -> None:
    """Horizontal FPS bars, one block per resolution and batch, drawn with OpenCV
    (already a dependency) rather than adding matplotlib."""
    import cv2

    groups: dict[tuple, list[Result]] = {}
    for r in results:
        groups.setdefault((r.resolution, r.batch), []).append(r)
    row_h, label_w, bar_w, margin = 24, 300, 520, 12
    height = 50 + sum(30 + row_h * len(rows) for rows in groups.values())
    image = np.full((height, label_w + bar_w + 200, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, title, (margin, 30), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    y = 50
    for (resolution, batch), rows in groups.items():
        heading = f"{resolution}  batch {batch}"
        cv2.putText(image, heading, (margin, y + 20), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        y += 30
        best = max(r.fps for r in rows) or 1.0
        for r in rows:
            cv2.putText(image, f"{r.variant} {r.mode} {r.precision} ({r.backend})", (margin, y + 17), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            length = max(1, int(bar_w * r.fps / best))
            cv2.rectangle(image, (label_w, y + 4), (label_w + length, y + row_h - 4), COLOURS_BGR[r.variant], -1)
            memory = f", {r.peak_mem_mib:.0f} MiB" if r.peak_mem_mib is not None else ""
            cv2.putText(image, f"{r.fps:.1f} fps{memory}", (label_w + length + 6, y + 17), font, 0.45, (0, 0, 0), 1,
                        cv2.LINE_AA)
            y += row_h
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


# --- command line ----------------------------------------------------------------

def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def size_arg(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hydranet_bench", description=__doc__.split("\n\n")[0],
                                     epilog="CI-sized run: hydranet_bench --device cpu --resolution 160x120 --iters 3 --warmup 1")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    parser.add_argument("--resolution", metavar="WxH", type=size_arg, action="append",
                        help=f"input size, repeatable (default {', '.join(DEFAULT_RESOLUTIONS)})")
    parser.add_argument("--precision", choices=list(PRECISIONS), action="append",
                        help="repeatable (default fp16 on CUDA, fp32 on the CPU); the naive baseline is always fp32")
    parser.add_argument("--batch", type=positive_int, action="append", help="batch size, repeatable (default 1)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="how the fast path runs the network (default auto: CUDA graphs on CUDA, eager on the CPU)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="default: all")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="model: network only; e2e: image in, arrays out (default: both)")
    parser.add_argument("--iters", type=positive_int, default=50, help="timed calls per measurement (default 50)")
    parser.add_argument("--warmup", type=non_negative_int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--weights", type=Path, help="a weights file (default: random weights; timings do not depend on them)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--chart", type=Path, help="draw the FPS comparison as a PNG")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="run each variant in its own process for exact per-variant peak RSS "
                             "(default: on for the CPU; CUDA peaks are exact in one process)")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads for torch (default: torch's choice; 1 avoids thrashing on a busy machine)")
    parser.add_argument("--quiet", action="store_true", help="print no table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # for the report, and for the per-variant processes
    try:
        device = resolve_device(args.device)
        args.precision = args.precision or (["fp16"] if device.type == "cuda" else ["fp32"])
        for precision in args.precision:
            resolve_precision(precision, device)
        if args.weights and not args.weights.is_file():
            raise ValueError(f"weights file not found: {args.weights}")
    except ValueError as exc:
        parser.error(str(exc))
    args.resolution = args.resolution or [parse_size(s) for s in DEFAULT_RESOLUTIONS]
    args.batch = args.batch or [1]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.isolate is None:
        args.isolate = device.type == "cpu"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: every variant gets autotuned kernels
    try:
        if args.isolate and len(args.variants) > 1:
            common = _strip_options(argv, ("--variants", "--json", "--chart"), ("--isolate", "--no-isolate", "--quiet"))
            results = run_isolated(args, common)
        else:
            results = run_benchmark(args, device)
    except WeightsError as exc:
        parser.error(str(exc))
    order = {name: i for i, name in enumerate((*VARIANTS, *MODES, "naive"))}
    results.sort(key=lambda r: (r.width * r.height, r.width, r.batch, r.precision, order[r.variant], order[r.mode]))
    ratios, scale = comparisons(results), scaling(results)
    if not args.quiet:
        print(f"{device_name(device)} ({device}), torch {torch.__version__}")
        print(format_table(results, ratios))
        scale_table = format_scaling(scale)
        if scale_table:
            print("\n" + scale_table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report(args, device, results, ratios, scale), indent=2))
    if args.chart:
        draw_chart(results, f"hydranet_bench on {device_name(device)}", args.chart)
    return 0


def _strip_options(argv: list[str], with_values: tuple[str, ...], flags: tuple[str, ...]) -> list[str]:
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


if __name__ == "__main__":
    sys.exit(main())
