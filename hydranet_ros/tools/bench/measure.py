"""What the benchmark measures with: torch's own tools where they fit, and the two
things they do not do.

* MACs: ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no compute
  at any resolution); it counts convolutions and matrix products, 2 FLOPs per
  multiply-accumulate, so MACs = FLOPs / 2 (biases, pooling, upsampling and additions
  are not counted, as before: on the HydraNet the two counts are identical).
* Time: ``torch.utils.benchmark``. Its ``Timer.blocked_autorange`` gives the medians
  of the backend comparison; per-call latency percentiles (p50/p99 of single calls,
  which ``Timer`` does not report: it averages blocks of calls) are taken with its
  ``timer``, which synchronises the accelerator around each reading.
* Memory: peak GPU memory per variant (``torch.cuda.max_memory_allocated`` after a
  reset) and the process's peak RSS on the CPU, which torch has no tool for.
"""
from __future__ import annotations

import copy
import ctypes
import gc
import statistics
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(modules: Iterable[nn.Module]) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on an input of ``input_shape``."""
    meta = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(*input_shape, device="meta"))
    return counter.get_total_flops() // 2


def time_calls(fn: Callable[[], object], iters: int, warmup: int) -> list[float]:
    """Seconds per call after ``warmup`` untimed calls (which also compile or capture fixed-shape backends)."""
    from torch.utils.benchmark import timer  # local: it loads torch's C++-extension helpers

    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        start = timer()
        fn()
        samples.append(timer() - start)
    return samples


def interleaved_medians(calls: Mapping[str, Callable[[], object]], rounds: int,
                        min_run_time: float) -> dict[str, float]:
    """Median seconds per call of each function, measured in ``rounds`` interleaved
    rounds (each function once per round, ``Timer.blocked_autorange`` for at least
    ``min_run_time``) and the median taken over rounds: a machine whose load comes and
    goes slows every function alike instead of whichever ran during the busy spell."""
    from torch.utils.benchmark import Timer  # local: it loads torch's C++-extension helpers

    timers = {name: Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
              for name, fn in calls.items()}
    per_round: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, t in timers.items():
            per_round[name].append(t.blocked_autorange(min_run_time=min_run_time).median)
    return {name: statistics.median(values) for name, values in per_round.items()}


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so that a variant's RSS
    peak is not hidden by memory an earlier one freed but glibc kept."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim, peaks may under-count
        pass


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
