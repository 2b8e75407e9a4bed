"""How the predictor runs the network: eager PyTorch, torch.compile, CUDA graphs,
ONNX Runtime (CPU, CUDA) or TensorRT (through ONNX Runtime's TensorRT provider).

A backend is a callable from the normalised (N, 3, H, W) tensor on the device to
the raw head outputs ``{"segm": ..., "depth": ...}`` on the same device, so the
predictor's pre- and post-processing is the same for all of them.

Choosing a backend never fails silently: when the requested one cannot run here
(no GPU, runtime not installed, precision it cannot honour, build or capture
error) a warning says why and the next one in its fallback chain is used; the
runner's ``name`` is always the backend that actually runs.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "compile", "cudagraph", "onnxruntime", "tensorrt")
ONNX_BACKENDS = ("onnxruntime", "tensorrt")
# Next best path for each request; "auto" means the fastest fixed-shape path that
# needs no extra runtime.
FALLBACKS: dict[str, tuple[str, ...]] = {
    "eager": ("eager",),
    "compile": ("compile", "eager"),
    "cudagraph": ("cudagraph", "eager"),
    "onnxruntime": ("onnxruntime", "eager"),
    "tensorrt": ("tensorrt", "onnxruntime", "eager"),
}
# CUDA graphs keep one captured graph (and its memory pool) per input shape; a
# camera has one shape, so a handful covers resolution changes without hoarding memory.
MAX_CAPTURED_SHAPES = 4

RawOutputs = dict[str, torch.Tensor]
OnnxSource = str | Path | bytes


class Runner(Protocol):
    name: str

    def __call__(self, x: torch.Tensor) -> RawOutputs: ...


def fallback_chain(requested: str, device: torch.device) -> tuple[str, ...]:
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested == "auto":
        return FALLBACKS["cudagraph"] if device.type == "cuda" else FALLBACKS["eager"]
    return FALLBACKS[requested]


def onnxruntime_providers() -> list[str] | None:
    """The execution providers of the installed onnxruntime, or None if it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return list(onnxruntime.get_available_providers())


def unavailable_reason(backend: str, device: torch.device, precision: str, have_model: bool) -> str | None:
    """Why ``backend`` cannot run here as asked, or None if it can (as far as can be told before building it)."""
    if backend in ("eager", "compile", "cudagraph") and not have_model:
        return "it needs the PyTorch weights, and this predictor was given only an ONNX graph"
    if backend == "cudagraph" and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if backend in ONNX_BACKENDS:
        providers = onnxruntime_providers()
        if providers is None:
            return "onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu for CUDA and TensorRT)"
        if backend == "tensorrt":
            if device.type != "cuda":
                return "TensorRT needs a CUDA device"
            if "TensorrtExecutionProvider" not in providers:
                return f"onnxruntime has no TensorrtExecutionProvider (has {', '.join(providers)}); install onnxruntime-gpu and TensorRT"
            if precision == "bf16":
                return "precision bf16 is not offered through the TensorRT provider here; use fp16 or fp32"
        else:
            if precision != "fp32":
                return f"the exported ONNX graph is fp32, so precision {precision} cannot be honoured"
            if device.type == "cuda" and "CUDAExecutionProvider" not in providers:
                return f"onnxruntime has no CUDAExecutionProvider (has {', '.join(providers)}); install onnxruntime-gpu"
    return None


def build_runner(requested: str, module: nn.Module | None, device: torch.device, precision: str,
                 onnx_source: OnnxSource | None = None) -> Runner:
    """The first backend of ``requested``'s fallback chain that can run, logging each one skipped.

    ``module`` is already on ``device`` in the predictor's dtype and memory format;
    ``onnx_source`` is an exported graph (path or bytes), made from ``module`` when needed.
    """
    skipped: list[str] = []
    for backend in fallback_chain(requested, device):
        reason = unavailable_reason(backend, device, precision, module is not None)
        if reason is None:
            try:
                runner = _build(backend, module, device, precision, onnx_source)
            except Exception as exc:  # a runtime that is installed but cannot load (missing CUDA libs ...)
                reason = f"it failed to start: {type(exc).__name__}: {exc}"
        if reason is None:
            return _with_eager_fallback(runner, module)
        skipped.append(f"{backend}: {reason}")
        log.warning("backend %r is unavailable (%s); falling back to the next best path", backend, reason)
    raise ValueError(f"no backend for {requested!r} can run on {device}: " + "; ".join(skipped))


def _build(backend: str, module: nn.Module | None, device: torch.device, precision: str,
           onnx_source: OnnxSource | None) -> Runner:
    if backend == "eager":
        return EagerRunner(module)
    if backend == "compile":
        return CompiledRunner(module, device)
    if backend == "cudagraph":
        return CudaGraphRunner(module)
    if onnx_source is None:
        from .onnx import export_onnx  # local: only ONNX backends need the exporter

        onnx_source = export_onnx(module)
    return OnnxRuntimeRunner(onnx_source, device, tensorrt=(backend == "tensorrt"), fp16=(precision == "fp16"))


def _with_eager_fallback(runner: Runner, module: nn.Module | None) -> Runner:
    # compile and capture errors surface only on the first call, so those paths
    # are guarded; eager has nothing to fall back to, and ONNX graphs without
    # weights neither
    if runner.name == "eager" or module is None:
        return runner
    return GuardedRunner(runner, lambda: EagerRunner(module))


class EagerRunner:
    name = "eager"

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, x: torch.Tensor) -> RawOutputs:
        return self.module(x)


class GuardedRunner:
    """Runs ``primary``; if a call raises, logs why, switches to the fallback for
    good and retries there. A genuine input error fails on the fallback as well, so
    it still reaches the caller; ``name`` follows the switch."""

    def __init__(self, primary: Runner, make_fallback: Callable[[], Runner]) -> None:
        self._runner = primary
        self._make_fallback: Callable[[], Runner] | None = make_fallback

    @property
    def name(self) -> str:
        return self._runner.name

    def __call__(self, x: torch.Tensor) -> RawOutputs:
        if self._make_fallback is None:
            return self._runner(x)
        try:
            return self._runner(x)
        except Exception as exc:
            fallback = self._make_fallback()
            log.warning("backend %r failed (%s: %s); falling back to %r from now on",
                        self._runner.name, type(exc).__name__, exc, fallback.name)
            self._runner, self._make_fallback = fallback, None
            return self._runner(x)


class CompiledRunner:
    """torch.compile for fixed shapes. On CUDA mode "reduce-overhead" also records
    CUDA graphs; the CPU has no launch overhead to save, so it uses the default mode.
    Compilation happens on the first call per shape: warm up before the first frame."""

    name = "compile"

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        if self._cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: autotune once per shape, then reuse
        self._fn = torch.compile(module, mode="reduce-overhead" if self._cuda else None, dynamic=False)

    def __call__(self, x: torch.Tensor) -> RawOutputs:
        if self._cuda:
            # outputs live in the graph's pool until the next step; the predictor
            # consumes them before calling again, so this marks a safe boundary
            torch.compiler.cudagraph_mark_step_begin()
        return self._fn(x)


class ShapeCache:
    """Up to ``capacity`` entries by input shape, least recently used dropped first:
    one per camera resolution, without hoarding a graph (and its memory pool) for
    every size a folder of images ever had."""

    def __init__(self, capacity: int = MAX_CAPTURED_SHAPES) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[tuple, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple) -> bool:
        return key in self._entries

    def get_or_create(self, key: tuple, create: Callable[[], object]) -> object:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        entry = self._entries[key] = create()
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return entry


class CudaGraphRunner:
    """Captures the network once per input shape into a CUDA graph and replays it:
    one launch per frame instead of a few hundred. The returned tensors are static
    buffers that the next call overwrites, so callers must consume them first
    (the predictor's post-processing does, on the same stream)."""

    name = "cudagraph"

    def __init__(self, module: nn.Module, warmup_iterations: int = 3) -> None:
        torch.backends.cudnn.benchmark = True  # fixed shapes: autotune once per shape, then reuse
        self.module = module
        self.warmup_iterations = warmup_iterations
        self._graphs = ShapeCache()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> RawOutputs:
        if not x.is_cuda:
            raise RuntimeError("CUDA graphs need the input on a CUDA device")
        key = (tuple(x.shape), tuple(x.stride()), x.dtype, x.device)
        graph, static_input, static_outputs = self._graphs.get_or_create(key, lambda: self._capture(x))
        static_input.copy_(x)
        graph.replay()
        return static_outputs

    def _capture(self, x: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, RawOutputs]:
        static_input = x.clone()  # keeps x's memory format (channels-last)
        # Warm up on a side stream, as capture requires: cuDNN autotuning and
        # allocator growth must happen before recording, not inside the graph.
        current = torch.cuda.current_stream(x.device)
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(self.warmup_iterations):
                self.module(static_input)
        current.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the node captures in its inference thread while the ROS
        # executor thread keeps running; only this thread's CUDA calls matter
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_outputs = self.module(static_input)
        return graph, static_input, static_outputs


class OnnxRuntimeRunner:
    """An exported graph (normalised fp32 NCHW in, raw stride-4 outputs out) in an
    onnxruntime session. On CUDA, inputs and outputs stay on the GPU through
    IO binding to torch tensors."""

    def __init__(self, source: OnnxSource, device: torch.device, tensorrt: bool = False, fp16: bool = False,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        self.device = device
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT otherwise warns about every unused initializer
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = self._providers(device, tensorrt, fp16)
        model = source if isinstance(source, bytes) else str(source)
        self.session = ort.InferenceSession(model, options, providers=providers)
        # ORT drops a provider whose libraries fail to load with only a log line;
        # refuse to run under a name that is not what runs
        wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        active = self.session.get_providers()
        if not active or active[0] != wanted:
            raise RuntimeError(f"onnxruntime did not enable {wanted} (active: {', '.join(active)})")
        self.name = "tensorrt" if tensorrt else "onnxruntime"
        self.provider = wanted
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]
        self._output_shapes: dict[tuple[int, ...], list[tuple[int, ...]]] = {}

    @staticmethod
    def _providers(device: torch.device, tensorrt: bool, fp16: bool) -> list:
        if device.type != "cuda":
            return ["CPUExecutionProvider"]
        index = device.index if device.index is not None else torch.cuda.current_device()
        cuda = ("CUDAExecutionProvider", {"device_id": index})
        if not tensorrt:
            return [cuda, "CPUExecutionProvider"]
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hydranet_ros" / "tensorrt"
        cache.mkdir(parents=True, exist_ok=True)
        trt = ("TensorrtExecutionProvider", {
            "device_id": index,
            "trt_fp16_enable": fp16,
            # engine builds take minutes; cache them across runs, keyed by graph and shape
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
        })
        return [trt, cuda, "CPUExecutionProvider"]

    def __call__(self, x: torch.Tensor) -> RawOutputs:
        x = x.to(torch.float32).contiguous()  # the graph is fp32 NCHW; a no-op on the CPU path
        if not x.is_cuda:
            outputs = self.session.run(self.output_names, {self.input_name: x.numpy()})
            return {name: torch.from_numpy(value) for name, value in zip(self.output_names, outputs)}
        return self._run_cuda(x)

    def _run_cuda(self, x: torch.Tensor) -> RawOutputs:
        device_id = x.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", device_id, np.float32, tuple(x.shape), x.data_ptr())
        key = tuple(x.shape)
        if key not in self._output_shapes:
            # learn the output shapes once per input shape, then bind torch buffers
            for name in self.output_names:
                binding.bind_output(name, "cuda", device_id)
            torch.cuda.current_stream(x.device).synchronize()
            self.session.run_with_iobinding(binding)
            self._output_shapes[key] = [tuple(value.shape()) for value in binding.get_outputs()]
            binding.clear_binding_outputs()
        outputs = {name: torch.empty(shape, dtype=torch.float32, device=x.device)
                   for name, shape in zip(self.output_names, self._output_shapes[key])}
        for name, tensor in outputs.items():
            binding.bind_output(name, "cuda", device_id, np.float32, tuple(tensor.shape), tensor.data_ptr())
        # ORT runs on its own stream: the input must be ready before it starts,
        # and its outputs before torch's stream reads them
        torch.cuda.current_stream(x.device).synchronize()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return outputs


def copy_to_host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Device tensors -> numpy arrays. On CUDA every copy goes non-blocking into
    pinned memory (torch's caching host allocator makes that cheap), with one
    stream synchronisation for all of them instead of one per output."""
    cuda = [t for t in tensors.values() if t.is_cuda]
    if not cuda:
        return {name: t.cpu().numpy() for name, t in tensors.items()}
    host = {}
    for name, tensor in tensors.items():
        pinned = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        pinned.copy_(tensor, non_blocking=True)
        host[name] = pinned
    torch.cuda.current_stream(cuda[0].device).synchronize()
    # each array keeps its pinned tensor alive, so the allocator cannot hand the
    # block to the next frame while the caller still holds the array
    return {name: pinned.numpy() for name, pinned in host.items()}

