"""The ONNX backends: an exported graph in an ONNX Runtime session, on the CPU, on
CUDA, or through TensorRT (ONNX Runtime's TensorRT provider).

The graph takes the normalised float32 (N, 3, H, W) input (``inference/onnx.py``);
channel order and normalisation run in torch before it (``FrameNetwork.prepare``),
on the same device, so all backends share one preprocessing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .frame_network import RawOutputs
from .runners import Runner

OnnxSource = str | Path | bytes
Prepare = Callable[[torch.Tensor, str], torch.Tensor]


class OnnxRuntimeRunner(Runner):
    """On CUDA, inputs and outputs stay on the GPU through IO binding to torch tensors.
    On the CPU the session uses ``threads`` intra-op threads (default: torch's count,
    so that one setting, e.g. ``hydranet_bench --threads``, governs both). Graph
    optimisation stays at ONNX Runtime's default, the highest level: lower levels
    measured slower, and turning off the idle threads' spinning measured no faster
    (README, Speed)."""

    def __init__(self, source: OnnxSource, device: torch.device, prepare: Prepare | None = None,
                 tensorrt: bool = False, fp16: bool = False, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.device = device
        self._prepare = prepare
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT otherwise warns about every unused initializer
        if device.type == "cpu":
            options.intra_op_num_threads = threads or torch.get_num_threads()
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

    def __call__(self, images: torch.Tensor, channels: str = "rgb") -> RawOutputs:
        if self._prepare is None:
            raise RuntimeError("this runner was built for normalised input only; call run_normalised")
        return self.run_normalised(self._prepare(images, channels))

    def run_normalised(self, x: torch.Tensor) -> RawOutputs:
        """The graph on a normalised (N, 3, H, W) tensor."""
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
