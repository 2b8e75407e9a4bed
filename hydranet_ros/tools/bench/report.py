"""The benchmark's tables and JSON: HydraNet against the stacked pair and the naive
baseline, how its cost scales with pixels and batch, and the run's metadata."""
from __future__ import annotations

import argparse
import datetime
import platform
from dataclasses import asdict
from typing import Callable, Iterable, Sequence

import torch

from .run import MODES, Result

# Issue 6's targets, defined for a GPU.
TARGETS = {"hydranet_vs_stacked_fps": 1.8, "hydranet_vs_stacked_memory": 0.6, "fast_vs_naive_fps": 10.0}


def comparisons(results: Sequence[Result]) -> list[dict]:
    """Per resolution, precision, batch and backend: HydraNet vs stacked (each mode)
    and fast vs naive end to end."""
    index = {(r.resolution, r.precision, r.batch, r.backend, r.variant, r.mode): r for r in results}
    naive = {(r.resolution, r.batch): r for r in results if r.variant == "naive"}
    rows = []
    for r in results:
        if r.variant != "hydranet":
            continue
        row: dict = {"resolution": r.resolution, "precision": r.precision, "batch": r.batch, "backend": r.backend,
                     "mode": r.mode}
        stacked = index.get((r.resolution, r.precision, r.batch, r.backend, "stacked", r.mode))
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

    * ``{"kind": "pixels", "precision", "mode", "backend", "batch", "resolution", "mpix",
      "ms_per_frame", "us_per_mpix", "relative"}``: one per resolution, for each
      batch size measured at two or more resolutions. ``mpix`` is megapixels per
      frame, ``ms_per_frame`` the mean call time divided by the batch,
      ``us_per_mpix`` microseconds per megapixel-frame and ``relative`` that
      divided by its value at the largest resolution: 1.0 is cost linear in pixel
      count, above 1 small frames pay a fixed overhead.
    * ``{"kind": "batch", "precision", "mode", "backend", "resolution", "batch", "fps",
      "speedup", "efficiency"}``: one per batch size, for each resolution measured
      at two or more batch sizes. ``speedup`` is frames per second over those at
      the smallest batch, ``efficiency`` the speedup over the batch ratio: 1.0 is
      N x the throughput from N frames per call.

    Pixel rows come first, then batch rows; each sorted by precision, mode and
    then pixel count or batch size.
    """
    # One run per configuration: a resolution or batch given twice counts once.
    runs = list({(r.precision, r.mode, r.backend, r.width, r.height, r.batch): r
                 for r in results if r.variant == "hydranet"}.values())
    by_batch = _groups(runs, lambda r: (r.precision, MODES.index(r.mode), r.backend, r.batch), _pixel_order)
    by_resolution = _groups(runs, lambda r: (r.precision, MODES.index(r.mode), r.backend, *_pixel_order(r)),
                            lambda r: r.batch)
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
    return [{"kind": "pixels", "precision": r.precision, "mode": r.mode, "backend": r.backend, "batch": r.batch,
             "resolution": r.resolution, "mpix": r.width * r.height / 1e6, "ms_per_frame": r.mean_ms / r.batch,
             "us_per_mpix": _us_per_mpix(r), "relative": _us_per_mpix(r) / reference} for r in runs]


def _batch_rows(runs: Sequence[Result]) -> list[dict]:
    base = min(runs, key=lambda r: r.batch)
    rows = []
    for r in runs:
        speedup = r.fps / base.fps
        rows.append({"kind": "batch", "precision": r.precision, "mode": r.mode, "backend": r.backend,
                     "resolution": r.resolution,
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
            lines.append(f"{row['resolution']} {row['precision']} batch {row['batch']} {row['backend']} {row['mode']}: "
                         + ", ".join(parts))
    return "\n".join(lines)


# (heading, key, format): the heading takes the format's alignment and width.
PIXEL_COLUMNS = (("prec", "precision", "<4"), ("mode", "mode", "<5"), ("backend", "backend", "<11"), ("batch", "batch", ">5"),
                 ("resolution", "resolution", "<10"), ("Mpix", "mpix", ">7.3f"), ("ms/frame", "ms_per_frame", ">9.3f"),
                 ("us/Mpix", "us_per_mpix", ">10.0f"), ("relative", "relative", ">8.2f"))
BATCH_COLUMNS = (("prec", "precision", "<4"), ("mode", "mode", "<5"), ("backend", "backend", "<11"),
                 ("resolution", "resolution", "<10"),
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
           scale: Sequence[dict], extra: dict | None = None) -> dict:
    """The JSON report; ``extra`` holds the optional sections (backend comparison, host copies)."""
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
            "backend_requested": list(args.backend),
            "backends_used": sorted({r.backend for r in results}),
            "iters": args.iters, "warmup": args.warmup, "weights": str(args.weights) if args.weights else "random",
            "memory_method": memory, "command": ["hydranet_bench", *args.argv],
        },
        "targets": TARGETS,
        "results": [asdict(r) for r in results],
        "comparisons": list(ratios),
        "scaling": list(scale),
        **(extra or {}),
    }
