"""Backend selection and fallback: what runs is what ``Predictor.backend`` says."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch
from conftest import make_card, make_model

from hydranet_ros.inference import backends
from hydranet_ros.inference.backends import ShapeCache, copy_to_host, fallback_chain, unavailable_reason
from hydranet_ros.inference.predictor import OUTPUTS, Predictor

IMAGE = np.random.default_rng(3).integers(0, 256, size=(75, 101, 3), dtype=np.uint8)


def predictor(backend: str, precision: str = "fp32") -> Predictor:
    card = make_card()
    return Predictor(make_model(card, seed=5), card, device="cpu", precision=precision, backend=backend)


@pytest.fixture(scope="module")
def eager_result():
    return predictor("eager").predict(IMAGE, OUTPUTS)


def test_onnxruntime_backend_matches_eager(eager_result) -> None:
    pytest.importorskip("onnxruntime")
    onnx = predictor("onnxruntime")
    assert onnx.backend == "onnxruntime"
    result = onnx.predict(IMAGE, OUTPUTS)
    np.testing.assert_allclose(result.depth, eager_result.depth, rtol=1e-4, atol=1e-6)
    assert (result.labels == eager_result.labels).mean() > 0.999
    assert (np.abs(result.overlay.astype(int) - eager_result.overlay).max()) <= 1


@pytest.mark.parametrize("requested, expected, reason", [
    ("cudagraph", "eager", "CUDA graphs need a CUDA device"),
    ("tensorrt", "onnxruntime", "TensorRT needs a CUDA device"),
])
def test_unavailable_backend_falls_back_with_a_logged_reason(requested: str, expected: str, reason: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    if expected == "onnxruntime":
        pytest.importorskip("onnxruntime")
    with caplog.at_level(logging.WARNING, logger="hydranet_ros.inference.backends"):
        p = predictor(requested)
    assert p.backend == expected and p.requested_backend == requested
    assert reason in caplog.text and "falling back" in caplog.text
    assert p.predict(IMAGE).depth.shape == IMAGE.shape[:2]


def test_onnxruntime_cannot_honour_bf16_so_eager_runs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hydranet_ros.inference.backends"):
        p = predictor("onnxruntime", precision="bf16")
    assert p.backend == "eager" and p.dtype == torch.bfloat16
    assert "precision bf16 cannot be honoured" in caplog.text or "not installed" in caplog.text


def test_missing_onnxruntime_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING, logger="hydranet_ros.inference.backends"):
        p = predictor("onnxruntime")
    assert p.backend == "eager"
    assert "onnxruntime is not installed" in caplog.text


def test_compile_backend_really_compiles_and_matches_eager(eager_result) -> None:
    """torch.compile through inductor on the CPU (about a minute on two cores): the
    same network, so the same outputs; the GPU adds CUDA graphs to the same path."""
    p = predictor("compile")
    result = p.predict(IMAGE, OUTPUTS)
    assert p.backend == "compile"  # a failed compile would have switched to eager
    np.testing.assert_allclose(result.depth, eager_result.depth, rtol=1e-4, atol=1e-5)
    assert (result.labels == eager_result.labels).mean() > 0.999


def test_compile_failure_switches_to_eager_and_reports_it(monkeypatch: pytest.MonkeyPatch, eager_result,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    def broken_compile(module, **kwargs):
        def run(x):
            raise RuntimeError("inductor exploded")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    p = predictor("compile")
    assert p.backend == "compile"  # compilation happens on the first call
    with caplog.at_level(logging.WARNING, logger="hydranet_ros.inference.backends"):
        result = p.predict(IMAGE, OUTPUTS)
    assert p.backend == "eager"
    assert "inductor exploded" in caplog.text
    np.testing.assert_allclose(result.depth, eager_result.depth, atol=1e-6)


def test_auto_is_eager_on_the_cpu_and_cuda_graphs_on_cuda() -> None:
    assert predictor("auto").backend == "eager"
    assert fallback_chain("auto", torch.device("cuda")) == ("cudagraph", "eager")


def test_gpu_only_paths_name_the_missing_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """Selection logic for a CUDA device, checked without one."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(backends, "onnxruntime_providers", lambda: ["CPUExecutionProvider"])
    assert "TensorrtExecutionProvider" in unavailable_reason("tensorrt", cuda, "fp16", True)
    assert "CUDAExecutionProvider" in unavailable_reason("onnxruntime", cuda, "fp32", True)
    assert unavailable_reason("cudagraph", cuda, "fp16", True) is None
    monkeypatch.setattr(backends, "onnxruntime_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert unavailable_reason("tensorrt", cuda, "fp16", True) is None
    assert "bf16" in unavailable_reason("tensorrt", cuda, "bf16", True)


def test_bad_backend_and_graph_without_weights_raise_clear_errors() -> None:
    card = make_card()
    with pytest.raises(ValueError, match="backend must be one of"):
        Predictor(make_model(card), card, device="cpu", backend="tpu")
    with pytest.raises(ValueError, match="needs the PyTorch weights"):
        Predictor(None, card, device="cpu", backend="eager")


def test_copy_to_host_returns_arrays() -> None:
    host = copy_to_host({"a": torch.arange(6, dtype=torch.uint8).view(2, 3)})
    assert isinstance(host["a"], np.ndarray) and host["a"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_shape_cache_keeps_the_most_recently_used_shapes() -> None:
    made: list[tuple] = []

    def get(cache: ShapeCache, key: tuple) -> object:
        return cache.get_or_create(key, lambda: made.append(key) or f"graph{key}")

    cache = ShapeCache(capacity=2)
    assert get(cache, (480, 640)) == "graph(480, 640)"
    get(cache, (375, 1242))
    get(cache, (480, 640))          # used again: now the most recent
    get(cache, (1080, 1920))        # evicts (375, 1242), the least recently used
    assert made == [(480, 640), (375, 1242), (1080, 1920)]
    assert (480, 640) in cache and (375, 1242) not in cache and len(cache) == 2
    get(cache, (375, 1242))         # captured again when it comes back
    assert made[-1] == (375, 1242)
    with pytest.raises(ValueError, match="capacity"):
        ShapeCache(capacity=0)


def test_cuda_graph_runner_refuses_a_cpu_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # the runner switches it on
    runner = backends.CudaGraphRunner(make_model(make_card()))
    with pytest.raises(RuntimeError, match="CUDA graphs need the input on a CUDA device"):
        runner(torch.zeros(1, 3, 32, 32))
