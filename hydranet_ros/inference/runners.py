"""The PyTorch backends: eager, torch.compile and CUDA graphs, and the guard that
switches a failing one to eager.

A runner is a callable from a batch of uint8 frames on the device, (N, H, W, C) in
a channel order of ``colour.CHANNEL_ORDERS``, to the raw head outputs
``{"segm": ..., "depth": ...}`` on the same device. Each runs a ``FrameNetwork``:
the channel conversion, normalisation and network together.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Callable, NamedTuple

import torch

from .frame_network import FrameNetwork, RawOutputs

log = logging.getLogger(__name__)

# CUDA graphs keep one captured graph (and its memory pool) per input shape; a
# camera has one shape, so a handful covers resolution changes without hoarding memory.
MAX_CAPTURED_SHAPES = 4


class Runner:
    """Base of every backend; ``name`` is what runs (for logs, reports, diagnostics)."""

    name = "runner"

    def __call__(self, images: torch.Tensor, channels: str = "rgb") -> RawOutputs:
        raise NotImplementedError

    def input_buffer(self, shape: tuple[int, ...], channels: str, device: torch.device) -> torch.Tensor | None:
        """A device tensor of ``shape`` (uint8 frames) that the caller may upload into and
        then pass to ``__call__`` without a further copy; None when the backend has none."""
        return None


class EagerRunner(Runner):
    """The network as PyTorch runs it. On the CPU in channels-last layout, which oneDNN
    runs about twice as fast as NCHW here (the depthwise convolutions especially; README,
    Speed); torch.compile and ONNX Runtime measured no gain from it, so only eager switches."""

    name = "eager"

    def __init__(self, network: FrameNetwork) -> None:
        self.network = network
        if network.memory_format != torch.channels_last:
            network.set_memory_format(torch.channels_last)

    def __call__(self, images: torch.Tensor, channels: str = "rgb") -> RawOutputs:
        return self.network(images, channels)


class GuardedRunner(Runner):
    """Runs ``primary``; if a call raises, logs why, switches to the fallback for
    good and retries there. A genuine input error fails on the fallback as well, so
    it still reaches the caller; ``name`` follows the switch."""

    def __init__(self, primary: Runner, make_fallback: Callable[[], Runner]) -> None:
        self._runner = primary
        self._make_fallback: Callable[[], Runner] | None = make_fallback

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._runner.name

    def _switch(self, exc: Exception) -> None:
        assert self._make_fallback is not None
        fallback = self._make_fallback()
        log.warning("backend %r failed (%s: %s); falling back to %r from now on",
                    self._runner.name, type(exc).__name__, exc, fallback.name)
        self._runner, self._make_fallback = fallback, None

    def __call__(self, images: torch.Tensor, channels: str = "rgb") -> RawOutputs:
        if self._make_fallback is None:
            return self._runner(images, channels)
        try:
            return self._runner(images, channels)
        except Exception as exc:
            self._switch(exc)
            return self._runner(images, channels)

    def input_buffer(self, shape: tuple[int, ...], channels: str, device: torch.device) -> torch.Tensor | None:
        if self._make_fallback is None:
            return self._runner.input_buffer(shape, channels, device)
        try:  # CUDA graphs capture here: a capture error switches as a call error does
            return self._runner.input_buffer(shape, channels, device)
        except Exception as exc:
            self._switch(exc)
            return self._runner.input_buffer(shape, channels, device)


class CompiledRunner(Runner):
    """torch.compile for fixed shapes. On CUDA mode "reduce-overhead" also records
    CUDA graphs; the CPU has no launch overhead to save, so it uses the default mode.
    Compilation happens on the first call per shape: warm up before the first frame."""

    name = "compile"

    def __init__(self, network: FrameNetwork, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        if self._cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: autotune once per shape, then reuse
        self._fn = torch.compile(network, mode="reduce-overhead" if self._cuda else None, dynamic=False)

    def __call__(self, images: torch.Tensor, channels: str = "rgb") -> RawOutputs:
        if self._cuda:
            # outputs live in the graph's pool until the next step; the predictor
            # consumes them before calling again, so this marks a safe boundary
            torch.compiler.cudagraph_mark_step_begin()
        return self._fn(images, channels)


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


class CapturedGraph(NamedTuple):
    graph: torch.cuda.CUDAGraph
    input: torch.Tensor      # the uint8 frames the graph reads
    outputs: RawOutputs      # the buffers it writes


class CudaGraphRunner(Runner):
    """Captures the whole ``FrameNetwork`` (channel order, normalisation, network)
    once per input shape into a CUDA graph and replays it: one launch per frame
    instead of a few hundred. The graph reads the uint8 frames from its own input
    buffer, which the predictor uploads into directly (``input_buffer``); the
    returned tensors are buffers that the next call overwrites, so callers must
    consume them first (the predictor's post-processing does, on the same stream)."""

    name = "cudagraph"

    def __init__(self, network: FrameNetwork, warmup_iterations: int = 3) -> None:
        torch.backends.cudnn.benchmark = True  # fixed shapes: autotune once per shape, then reuse
        self.network = network
        self.warmup_iterations = warmup_iterations
        self._graphs = ShapeCache()

    def _graph(self, shape: tuple[int, ...], channels: str, device: torch.device) -> CapturedGraph:
        if device.type != "cuda":
            raise RuntimeError("CUDA graphs need the input on a CUDA device")
        # "cuda" and "cuda:0" are one device: one key, one capture
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        key = (tuple(shape), channels, device)
        return self._graphs.get_or_create(  # type: ignore[return-value]
            key, lambda: self._capture(torch.zeros(shape, dtype=torch.uint8, device=device), channels))

    def input_buffer(self, shape: tuple[int, ...], channels: str, device: torch.device) -> torch.Tensor:
        return self._graph(shape, channels, device).input

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, channels: str = "rgb") -> RawOutputs:
        captured = self._graph(tuple(images.shape), channels, images.device)
        if images.data_ptr() != captured.input.data_ptr():  # not uploaded into the graph's input
            captured.input.copy_(images)
        captured.graph.replay()
        return captured.outputs

    @torch.inference_mode()
    def _capture(self, static_input: torch.Tensor, channels: str) -> CapturedGraph:
        # Warm up on a side stream, as capture requires: cuDNN autotuning and
        # allocator growth must happen before recording, not inside the graph.
        current = torch.cuda.current_stream(static_input.device)
        side = torch.cuda.Stream(device=static_input.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(self.warmup_iterations):
                self.network(static_input, channels)
        current.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the node captures in its inference thread while the ROS
        # executor thread keeps running; only this thread's CUDA calls matter
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_outputs = self.network(static_input, channels)
        return CapturedGraph(graph, static_input, static_outputs)
