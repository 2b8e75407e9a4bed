"""Backend selection and fallback: what runs is what ``Predictor.backend`` says."""
from __future__ import annotations

import logging
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import LogCapture, make_card, make_model

from hydranet_ros.inference import backends
from hydranet_ros.inference.backends import fallback_chain, unavailable_reason
from hydranet_ros.inference.predictor import OUTPUTS, Predictor
from hydranet_ros.inference.runners import CudaGraphRunner, GuardedRunner, Runner, ShapeCache
from hydranet_ros.inference.transfer import HostBuffers, Transfer

IMAGE = np.random.default_rng(3).integers(0, 256, size=(75, 101, 3), dtype=np.uint8)


def predictor(backend: str, precision: str = "fp32") -> Predictor:
    card = make_card()
    return Predictor(make_model(card, seed=5), card, device="cpu", precision=precision, backend=backend)


@pytest.fixture(scope="module")
def eager_result():
    return predictor("eager").predict(IMAGE, OUTPUTS)


def test_onnxruntime_backend_matches_eager(eager_result) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: nothing to compare with eager")
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
                                                             log_capture: LogCapture) -> None:
    if expected == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: TensorRT's fallback would be eager")
    with log_capture.at_level(logging.WARNING, logger="hydranet_ros.inference"):
        p = predictor(requested)
    assert p.backend == expected and p.requested_backend == requested
    assert reason in log_capture.text and "falling back" in log_capture.text
    assert p.predict(IMAGE).depth.shape == IMAGE.shape[:2]


def test_onnxruntime_cannot_honour_bf16_so_eager_runs(log_capture: LogCapture) -> None:
    with log_capture.at_level(logging.WARNING, logger="hydranet_ros.inference"):
        p = predictor("onnxruntime", precision="bf16")
    assert p.backend == "eager" and p.dtype == torch.bfloat16
    assert "precision bf16 cannot be honoured" in log_capture.text or "not installed" in log_capture.text


def test_missing_onnx_exporter_is_named(monkeypatch: pytest.MonkeyPatch, log_capture: LogCapture) -> None:
    if backends.onnxruntime_providers() is None:
        pytest.skip("onnxruntime is not installed: the exporter is not the first thing missing")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with log_capture.at_level(logging.WARNING, logger="hydranet_ros.inference"):
        p = predictor("onnxruntime")
    assert p.backend == "eager" and "the onnx package is not installed" in log_capture.text


def test_missing_onnxruntime_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch, log_capture: LogCapture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with log_capture.at_level(logging.WARNING, logger="hydranet_ros.inference"):
        p = predictor("onnxruntime")
    assert p.backend == "eager"
    assert "onnxruntime is not installed" in log_capture.text


def test_compile_backend_really_compiles_and_matches_eager(eager_result) -> None:
    """torch.compile through inductor on the CPU (about a minute on two cores): the
    same network, so the same outputs; the GPU adds CUDA graphs to the same path."""
    p = predictor("compile")
    result = p.predict(IMAGE, OUTPUTS)
    assert p.backend == "compile"  # a failed compile would have switched to eager
    np.testing.assert_allclose(result.depth, eager_result.depth, rtol=1e-4, atol=1e-5)
    assert (result.labels == eager_result.labels).mean() > 0.999


def test_compile_failure_switches_to_eager_and_reports_it(monkeypatch: pytest.MonkeyPatch, eager_result,
                                                          log_capture: LogCapture) -> None:
    def broken_compile(module, **kwargs):
        def run(*args):
            raise RuntimeError("inductor exploded")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    p = predictor("compile")
    assert p.backend == "compile"  # compilation happens on the first call
    with log_capture.at_level(logging.WARNING, logger="hydranet_ros.inference"):
        result = p.predict(IMAGE, OUTPUTS)
    assert p.backend == "eager"
    assert "inductor exploded" in log_capture.text
    np.testing.assert_allclose(result.depth, eager_result.depth, atol=1e-6)


def test_auto_on_the_cpu_is_the_fastest_installed_path(monkeypatch: pytest.MonkeyPatch,
                                                       log_capture: LogCapture) -> None:
    """onnxruntime when installed, else torch.compile where a C++ compiler exists, else
    eager (test_bench.py checks that this order is the measured one); CUDA graphs on CUDA."""
    assert fallback_chain("auto", torch.device("cuda")) == ("cudagraph", "eager")
    assert fallback_chain("auto", torch.device("cpu")) == ("onnxruntime", "compile", "eager")
    if backends.onnxruntime_providers() is not None:
        with log_capture.at_level(logging.INFO, logger="hydranet_ros.inference"):
            assert predictor("auto").backend == "onnxruntime"
        assert "backend auto on cpu: running onnxruntime" in log_capture.text
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    log_capture.clear()
    with log_capture.at_level(logging.INFO, logger="hydranet_ros.inference"):
        p = predictor("auto")
    assert p.backend == "compile"
    # expected for auto: said at info level, not as a warning
    assert "onnxruntime is not installed" in log_capture.text and not any(r.levelno >= logging.WARNING for r in log_capture.records)
    monkeypatch.setattr(backends, "cpu_compiler_missing", lambda: "torch.compile on the CPU needs a C++ compiler")
    assert predictor("auto").backend == "eager"


def test_auto_precision_with_auto_backend_is_fp32_on_the_cpu() -> None:
    p = predictor("auto", precision="auto")
    assert p.precision == "fp32"
    assert p.backend == ("onnxruntime" if backends.onnxruntime_providers() is not None else "compile")


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


def test_cpu_transfer_copies_nothing() -> None:
    """A read-only frame (a decoded message buffer) is wrapped, not copied, and without
    torch's non-writable warning; outputs are the result tensors' own memory."""
    transfer = Transfer(torch.device("cpu"))
    frame = np.frombuffer(bytes(IMAGE.tobytes()), dtype=np.uint8).reshape(IMAGE.shape)
    assert not frame.flags.writeable
    with warnings.catch_warnings(record=True) as caught:
        uploaded = transfer.upload([frame])
    assert uploaded.shape == (1, *IMAGE.shape) and uploaded.data_ptr() == frame.ctypes.data
    result = torch.arange(6, dtype=torch.uint8).view(2, 3)
    host = transfer.download({"a": result})
    assert host["a"].tolist() == [[0, 1, 2], [3, 4, 5]] and host["a"].ctypes.data == result.data_ptr()
    assert sum(transfer.counter.values()) == 0
    assert not [w for w in caught if "not writable" in str(w.message)]
    flipped = transfer.upload([IMAGE[:, ::-1]])  # negative strides: torch needs one copy
    assert torch.equal(flipped[0], torch.from_numpy(IMAGE[:, ::-1].copy()))
    assert transfer.counter["host"] == IMAGE.nbytes


def test_host_buffers_are_reused_only_once_released() -> None:
    buffers = HostBuffers(pin=False)
    first = buffers.get("depth", (4, 5), torch.float32)
    first.fill_(1.0)
    kept = buffers.lend("depth")
    assert buffers.get("depth", (4, 5), torch.float32) is not first  # the caller still holds the array
    buffers.lend("depth")  # this one is dropped at once
    again = buffers.get("depth", (4, 5), torch.float32)
    assert buffers.get("depth", (4, 5), torch.float32) is again      # released: reused
    view = buffers.lend("depth")[1:, ::2]                               # a view alone keeps it too
    assert buffers.get("depth", (4, 5), torch.float32) is not again
    del view
    assert buffers.get("depth", (3, 5), torch.float32).shape == (3, 5)  # another shape: a new buffer
    assert (kept == 1.0).all() and buffers.allocations == 4


def test_the_staged_path_counts_its_copies_and_reuses_its_buffers() -> None:
    """The CUDA path's host side (staging buffer, reused output buffers), run on the CPU
    with plain host buffers in place of pinned ones: what test_cuda.py checks on a GPU."""
    p = predictor("eager")
    bgr = np.ascontiguousarray(IMAGE[:, :, ::-1])
    direct = p.predict(bgr, OUTPUTS, channels="bgr")
    p.transfer = Transfer(torch.device("cpu"), staged=True)
    first = p.predict(bgr, OUTPUTS, channels="bgr")
    for name in OUTPUTS:
        np.testing.assert_array_equal(getattr(first, name), getattr(direct, name), err_msg=name)
    kept = first.depth.copy()
    allocations, counted = p.transfer.buffers.allocations, dict(p.transfer.counter)
    second = p.predict(bgr, ("depth", "labels", "overlay"), channels="bgr")  # first is still held: new buffers
    np.testing.assert_array_equal(first.depth, kept)
    assert p.transfer.buffers.allocations == allocations + 3
    del first, second
    allocations = p.transfer.buffers.allocations
    for _ in range(3):
        p.predict(bgr, ("depth", "labels", "overlay"), channels="bgr")  # each dropped at once: reused
    assert p.transfer.buffers.allocations == allocations
    frame, outputs = IMAGE.nbytes, IMAGE.shape[0] * IMAGE.shape[1] * (4 + 1 + 3)
    per_frame = {kind: (p.transfer.counter[kind] - counted[kind]) // 4 for kind in counted}
    assert per_frame == {"host": frame, "to_device": frame, "to_host": outputs}


@pytest.mark.parametrize("channels", ["bgr", "rgba", "bgra", "mono"])
def test_channel_orders_are_converted_on_the_device(eager_result, channels: str) -> None:
    p = predictor("eager")
    frames = {"bgr": IMAGE[:, :, ::-1].copy(), "rgba": np.dstack([IMAGE, np.full(IMAGE.shape[:2], 7, np.uint8)]),
              "mono": IMAGE[:, :, 1].copy()}
    frames["bgra"] = np.dstack([frames["bgr"], frames["rgba"][:, :, 3]])
    result = p.predict(frames[channels], OUTPUTS, channels=channels)
    if channels == "mono":  # the grey frame as RGB is another image: compare with that
        expected = p.predict(np.repeat(frames["mono"][:, :, None], 3, axis=2), OUTPUTS)
    else:
        expected = eager_result
    # the same pixels; only the memory layout of the normalised input differs, which
    # moves float32 results by a rounding step at most
    np.testing.assert_allclose(result.depth, expected.depth, rtol=1e-5, atol=1e-7)
    assert (result.labels == expected.labels).mean() > 0.999
    same = result.labels == expected.labels
    np.testing.assert_array_equal(result.overlay[same], expected.overlay[same])  # the input went in as RGB
    assert np.abs(result.depth_colour.astype(int) - expected.depth_colour).max() <= 1


def test_bad_channel_orders_and_shapes_are_refused() -> None:
    p = predictor("eager")
    with pytest.raises(ValueError, match="channels must be one of"):
        p.predict(IMAGE, channels="yuv")
    with pytest.raises(ValueError, match=r"expected an \(H, W, 4\) bgra image"):
        p.predict(IMAGE, channels="bgra")
    with pytest.raises(ValueError, match=r"expected an \(H, W\) or \(H, W, 1\) mono image"):
        p.predict(IMAGE, channels="mono")


def test_a_capture_error_in_input_buffer_switches_to_the_fallback(log_capture: LogCapture) -> None:
    class Broken(Runner):
        name = "cudagraph"

        def input_buffer(self, shape, channels, device):
            raise RuntimeError("capture failed")

    class Fallback(Runner):
        name = "eager"

    guarded = GuardedRunner(Broken(), Fallback)
    with log_capture.at_level(logging.WARNING):
        assert guarded.input_buffer((1, 4, 4, 3), "rgb", torch.device("cpu")) is None
    assert guarded.name == "eager" and "capture failed" in log_capture.text


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
    runner = CudaGraphRunner(predictor("eager").network)
    with pytest.raises(RuntimeError, match="CUDA graphs need the input on a CUDA device"):
        runner(torch.zeros(1, 32, 32, 3, dtype=torch.uint8))
