"""Which backend runs the network: eager PyTorch, torch.compile, CUDA graphs, ONNX
Runtime (CPU, CUDA) or TensorRT (through ONNX Runtime's TensorRT provider).

The runners themselves are in ``runners.py`` (PyTorch) and ``onnxruntime_runner.py``;
this module picks one. ``auto`` is the fastest path the device offers with the same
outputs, as measured by ``hydranet_bench --compare-backends`` (README, Speed):
on CUDA, CUDA graphs; on the CPU, ONNX Runtime (twice as fast as channels-last eager
at 640x480 there), else torch.compile where a C++ compiler is installed, else eager.

Choosing a backend never fails silently: when the requested one cannot run here
(no GPU, runtime not installed, precision it cannot honour, build or capture
error) a warning says why and the next one in its fallback chain is used; the
runner's ``name`` is always the backend that actually runs. For ``auto``, skipping a
candidate is expected and logged at info level, with the one chosen.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

import torch
from torch import nn

from .frame_network import FrameNetwork
from .integrity import tensor_checksum
from .onnxruntime_runner import OnnxRuntimeRunner, OnnxSource
from .runners import CompiledRunner, CudaGraphRunner, EagerRunner, GuardedRunner, Runner

log = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "compile", "cudagraph", "onnxruntime", "tensorrt")
ONNX_BACKENDS = ("onnxruntime", "tensorrt")
# backends that compile or capture the network for each channel order of the frames anew
# (it is an argument of the traced preprocessing); the others run any order warm
PER_CHANNEL_ORDER = ("compile", "cudagraph")
# Next best path for each request.
FALLBACKS: dict[str, tuple[str, ...]] = {
    "eager": ("eager",),
    "compile": ("compile", "eager"),
    "cudagraph": ("cudagraph", "eager"),
    "onnxruntime": ("onnxruntime", "eager"),
    "tensorrt": ("tensorrt", "onnxruntime", "eager"),
}
# ``auto``: fastest first, as measured per device (see the module docstring).
AUTO = {"cuda": ("cudagraph", "eager"), "cpu": ("onnxruntime", "compile", "eager")}
# Exported graphs by the weights they hold: a process that builds several predictors
# of one weights file (replay's warm-up, the tests, a restarted node component)
# exports once. Each graph is about the size of the weights (12 MB for KITTI-6).
EXPORT_CACHE_SIZE = 4
_exports: OrderedDict[tuple, bytes] = OrderedDict()


def fallback_chain(requested: str, device: torch.device) -> tuple[str, ...]:
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested == "auto":
        return AUTO[device.type]
    return FALLBACKS[requested]


def onnxruntime_providers() -> list[str] | None:
    """The execution providers of the installed onnxruntime, or None if it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return list(onnxruntime.get_available_providers())


def cpu_compiler_missing() -> str | None:
    """Why torch.compile cannot build CPU kernels here (inductor compiles C++), or None."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a private helper that may move; then let the first call decide
        return None
    try:
        get_cpp_compiler()
    except Exception as exc:  # InvalidCxxCompiler and friends
        return f"torch.compile on the CPU needs a C++ compiler ({type(exc).__name__}: {exc})"
    return None


def onnx_exporter_missing() -> str | None:
    """Why the network cannot be exported to ONNX here, or None."""
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
    except ImportError:
        return "the onnx package is not installed, and it is needed to export the network (pip install onnx)"
    return None


def unavailable_reason(backend: str, device: torch.device, precision: str, have_model: bool,
                       export: bool = False) -> str | None:
    """Why ``backend`` cannot run here as asked, or None if it can (as far as can be told before
    building it); ``export``: the ONNX backends would have to export the network first."""
    if backend in ("eager", "compile", "cudagraph") and not have_model:
        return "it needs the PyTorch weights, and this predictor was given only an ONNX graph"
    if backend == "cudagraph" and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if backend == "compile" and device.type == "cpu":
        return cpu_compiler_missing()
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
        if export:
            return onnx_exporter_missing()
    return None


def build_runner(requested: str, network: FrameNetwork, device: torch.device, precision: str,
                 onnx_source: OnnxSource | None = None) -> Runner:
    """The first backend of ``requested``'s fallback chain that can run, logging each one skipped.

    ``network.module`` is already on ``device`` in the predictor's dtype and memory
    format (None when only an exported graph was given); ``onnx_source`` is an
    exported graph (path or bytes), made from the module when needed.
    """
    skipped: list[str] = []
    level = logging.INFO if requested == "auto" else logging.WARNING
    have_model = network.module is not None
    for backend in fallback_chain(requested, device):
        reason = unavailable_reason(backend, device, precision, have_model, export=onnx_source is None)
        if reason is None:
            try:
                runner = _build(backend, network, device, precision, onnx_source)
            except Exception as exc:  # a runtime that is installed but cannot load (missing CUDA libs ...)
                reason = f"it failed to start: {type(exc).__name__}: {exc}"
        if reason is None:
            if requested == "auto":
                log.info("backend auto on %s: running %s", device.type, backend)
            return _with_eager_fallback(runner, network)
        skipped.append(f"{backend}: {reason}")
        log.log(level, "backend %r is unavailable (%s); falling back to the next best path", backend, reason)
    raise ValueError(f"no backend for {requested!r} can run on {device}: " + "; ".join(skipped))


def _build(backend: str, network: FrameNetwork, device: torch.device, precision: str,
           onnx_source: OnnxSource | None) -> Runner:
    if backend == "eager":
        return EagerRunner(network)
    if backend == "compile":
        return CompiledRunner(network, device)
    if backend == "cudagraph":
        return CudaGraphRunner(network)
    if onnx_source is None:
        onnx_source = exported_graph(network.module)
    return OnnxRuntimeRunner(onnx_source, device, network.prepare, tensorrt=(backend == "tensorrt"),
                             fp16=(precision == "fp16"))


def exported_graph(module: nn.Module) -> bytes:
    """The module's ONNX graph (dynamic shapes), exported once per distinct weights."""
    from .onnx import export_onnx  # local: only ONNX backends need the exporter (and the onnx package)

    key = (type(module).__name__, repr(getattr(module, "config", None)), tensor_checksum(module.state_dict()))
    if key in _exports:
        _exports.move_to_end(key)
        return _exports[key]
    graph = _exports[key] = export_onnx(module)
    if len(_exports) > EXPORT_CACHE_SIZE:
        _exports.popitem(last=False)
    return graph


def _with_eager_fallback(runner: Runner, network: FrameNetwork) -> Runner:
    # compile and capture errors surface only on the first call, so those paths
    # are guarded; eager has nothing to fall back to, and ONNX graphs without
    # weights neither
    if runner.name == "eager" or network.module is None:
        return runner
    return GuardedRunner(runner, lambda: EagerRunner(network))
