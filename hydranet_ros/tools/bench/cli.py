"""``hydranet_bench``'s command line: what to measure, then the tables, JSON and chart."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...common.arguments import non_negative_int, positive_float, positive_int, size_arg
from ...common.atomic import atomic_write
from ...common.sizes import parse_size
from ...inference.backends import BACKENDS
from ...inference.device import PRECISIONS, resolve_device, resolve_precision
from ...inference.predictor import Predictor
from . import __doc__ as PACKAGE_DOC
from .backend_choice import compare_backends, format_comparison
from .cameras import SETUPS, CameraResult, cameras_json, format_cameras, measure_cameras
from .chart import draw_chart
from .host_copies import OUTPUTS as HOST_COPY_OUTPUTS
from .host_copies import format_host_copies, measure_host_copies
from .report import comparisons, device_name, format_scaling, format_table, report, scaling
from .run import MODES, Result, child_rows, load_model, run_benchmark
from .variants import VARIANTS

DEFAULT_RESOLUTIONS = ("640x480", "1242x375", "1920x1080")
HOST_COPY_RESOLUTION = "1920x1080"
CAMERAS_RESOLUTION = "640x480"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hydranet_bench", description=(PACKAGE_DOC or "").split("\n\n")[0],
                                     epilog="CI-sized run: hydranet_bench --device cpu --resolution 160x120 --iters 3 --warmup 1")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    parser.add_argument("--resolution", metavar="WxH", type=size_arg, action="append",
                        help=f"input size, repeatable (default {', '.join(DEFAULT_RESOLUTIONS)}; "
                             f"{HOST_COPY_RESOLUTION} for --host-copies alone)")
    parser.add_argument("--precision", choices=list(PRECISIONS), action="append",
                        help="repeatable (default fp16 on CUDA, fp32 on the CPU); the naive baseline is always fp32")
    parser.add_argument("--batch", type=positive_int, action="append", help="batch size, repeatable (default 1)")
    parser.add_argument("--backend", choices=BACKENDS, action="append",
                        help="how the fast path runs the network, repeatable to compare them side by side "
                             "(default auto: CUDA graphs on CUDA, ONNX Runtime on the CPU)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="default: all")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="model: network only; e2e: image in, arrays out (default: both)")
    parser.add_argument("--iters", type=positive_int, default=50, help="timed calls per measurement (default 50)")
    parser.add_argument("--warmup", type=non_negative_int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--compare-backends", action="store_true",
                        help="instead of the variants: every backend installed for the device on HydraNet end to end, "
                             "side by side, and whether auto picks the fastest")
    parser.add_argument("--rounds", type=positive_int, default=5,
                        help="interleaved rounds of --compare-backends; each reports the median (default 5)")
    parser.add_argument("--min-run-time", type=positive_float, default=0.3,
                        help="seconds each backend runs per round of --compare-backends (default 0.3)")
    parser.add_argument("--host-copies", action="store_true",
                        help="instead of the variants: bytes a BGR frame with depth, labels and overlay costs the "
                             "host per frame, before and after the reused-buffer path")
    parser.add_argument("--cameras", type=positive_int,
                        help="instead of the variants: N cameras on one network, their frames batched as the node "
                             "does, against N separate networks (N model copies); throughput summed over the "
                             f"cameras and peak memory (default resolution {CAMERAS_RESOLUTION})")
    parser.add_argument("--camera-setups", nargs="+", choices=SETUPS, default=list(SETUPS),
                        help="with --cameras: batched (one network) and separate (one per camera); default both")
    parser.add_argument("--weights", type=Path, help="a weights file (default: random weights; timings do not depend on them)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--chart", type=Path, help="draw the FPS comparison as a PNG")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="run each variant in its own process for exact per-variant peak RSS "
                             "(default: on for the CPU; CUDA peaks are exact in one process)")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads for torch and ONNX Runtime (default: torch's choice; 1 avoids thrashing "
                             "on a busy machine)")
    parser.add_argument("--quiet", action="store_true", help="print no table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # torch.utils.benchmark and inductor load torch's C++-extension helpers, which warn
    # about a missing CUDA toolkit on every CPU-only machine: irrelevant to a measurement
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
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
        if args.weights:
            load_model(args.weights)  # a bad file is refused here, not in each per-variant process
    except ValueError as exc:  # WeightsError included
        parser.error(str(exc))
    only_extras = args.compare_backends or args.host_copies or args.cameras
    default_sizes = [HOST_COPY_RESOLUTION] if args.host_copies and not args.compare_backends else DEFAULT_RESOLUTIONS
    if args.cameras and not (args.compare_backends or args.host_copies):
        default_sizes = [CAMERAS_RESOLUTION]
    args.resolution = args.resolution or [parse_size(s) for s in default_sizes]
    args.batch = args.batch or [1]
    args.backend = list(dict.fromkeys(args.backend or ["auto"]))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.isolate is None:
        args.isolate = device.type == "cpu"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: every variant gets autotuned kernels
    results = [] if only_extras else measure_variants(args, argv, device)
    extra = measure_extras(args, device)
    if args.cameras:
        extra["cameras"] = cameras_json(measure_cameras(args, device))
    ratios, scale = comparisons(results), scaling(results)
    if not args.quiet:
        print(f"{device_name(device)} ({device}), torch {torch.__version__}")
        if results:
            print(format_table(results, ratios))
        scale_table = format_scaling(scale)
        for section in (scale_table, *(format_comparison(c) for c in extra.get("backend_comparison", [])),
                        *(format_host_copies(h) for h in extra.get("host_copies", [])),
                        format_cameras([CameraResult(**row) for row in extra.get("cameras", [])])):
            if section:
                print("\n" + section)
    if args.json:
        text = json.dumps(report(args, device, results, ratios, scale, extra), indent=2)
        atomic_write(args.json, lambda tmp: tmp.write_text(text))
    if args.chart and results:
        draw_chart(results, f"hydranet_bench on {device_name(device)}", args.chart)
    return 0


def measure_variants(args: argparse.Namespace, argv: list[str], device: torch.device) -> list[Result]:
    if args.isolate and len(args.variants) > 1:
        results = [Result(**row) for row in child_rows(argv, "--variants", args.variants, "results")]
    else:
        results = run_benchmark(args, device)
    order = {name: i for i, name in enumerate((*VARIANTS, *MODES, "naive"))}
    backends = {name: i for i, name in enumerate(args.backend)}
    results.sort(key=lambda r: (r.width * r.height, r.width, r.batch, r.precision, order[r.variant],
                                backends.get(r.backend, len(backends)), order[r.mode]))
    return results


def measure_extras(args: argparse.Namespace, device: torch.device) -> dict:
    """The optional sections: backend comparison and host copies, one per resolution."""
    extra: dict = {}
    if not (args.compare_backends or args.host_copies):
        return extra
    model, card = load_model(args.weights)
    rng = np.random.default_rng(0)
    for width, height in args.resolution:
        frame = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        if args.compare_backends:
            extra.setdefault("backend_comparison", []).append(compare_backends(
                model, card, device, frame, rounds=args.rounds, min_run_time=args.min_run_time, warmup=args.warmup))
        if args.host_copies:
            predictor = Predictor(model, card, device=device, precision=args.precision[0], backend=args.backend[0])
            extra.setdefault("host_copies", []).append(measure_host_copies(predictor, frame, HOST_COPY_OUTPUTS))
    return extra

