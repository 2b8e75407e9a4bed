"""The GPU fast path: CUDA graphs, torch.compile (reduce-overhead), fp16 and bf16,
pinned output copies, ONNX Runtime on CUDA and the benchmark on a GPU.

They run wherever torch sees a CUDA device and skip elsewhere; CI has none, so the
CPU halves of the same paths are in test_backends.py and test_bench.py. Results
are compared with eager fp32 on the same GPU, on a synthetic street frame that the
shipped weights were trained for, so labels are stable enough to compare.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from hydranet_ros.inference.backends import onnxruntime_providers
from hydranet_ros.inference.predictor import OUTPUTS, Prediction, load_predictor
from hydranet_ros.inference.shipped import SHIPPED_WEIGHTS
from hydranet_ros.synthetic.camera import render_street_scene
from hydranet_ros.tools.bench import main as bench_main

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device (torch.cuda.is_available() is False): the GPU fast path is tested where there is one")

WEIGHTS = Path(__file__).resolve().parents[1] / SHIPPED_WEIGHTS
WIDTH, HEIGHT = 416, 128


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [render_street_scene(seed, WIDTH, HEIGHT).image for seed in (3, 4)]


@pytest.fixture(scope="module")
def reference(frames: list[np.ndarray]) -> list[Prediction]:
    eager = load_predictor(WEIGHTS, device="cuda", precision="fp32", backend="eager")
    return [eager.predict(frame, OUTPUTS) for frame in frames]


# fp32 on the GPU convolves in TF32 by default and cuDNN picks algorithms per run,
# so even the same precision agrees only to about 1e-3; a stale or wrong frame
# is off by far more than that.
FP32_DEPTH, FP32_LABELS = 5e-3, 0.995


def assert_agrees(result: Prediction, expected: Prediction, depth_tolerance: float, label_share: float) -> None:
    """Median relative depth error and share of equal labels, against eager fp32."""
    assert result.depth.shape == expected.depth.shape and result.depth.dtype == np.float32
    relative = np.abs(result.depth - expected.depth) / np.maximum(np.abs(expected.depth), 1e-3)
    assert float(np.median(relative)) < depth_tolerance
    assert (result.labels == expected.labels).mean() > label_share
    assert result.overlay.shape == expected.overlay.shape and result.overlay.dtype == np.uint8


def test_cuda_graphs_replay_each_new_frame_and_shape(frames, reference) -> None:
    p = load_predictor(WEIGHTS, device="cuda", precision="fp32", backend="cudagraph")
    assert p.backend == "cudagraph"
    # the second frame must not return the first one's captured outputs
    for frame, expected in zip(frames, reference):
        assert_agrees(p.predict(frame, OUTPUTS), expected, FP32_DEPTH, FP32_LABELS)
    small = frames[0][: HEIGHT // 2, : WIDTH // 2].copy()   # a second shape gets its own graph
    eager_small = load_predictor(WEIGHTS, device="cuda", precision="fp32", backend="eager").predict(small, OUTPUTS)
    assert_agrees(p.predict(small, OUTPUTS), eager_small, FP32_DEPTH, FP32_LABELS)
    assert_agrees(p.predict(frames[1], OUTPUTS), reference[1], FP32_DEPTH, FP32_LABELS)
    assert p.backend == "cudagraph"  # no silent fallback to eager


def test_auto_is_fp16_cuda_graphs_and_close_to_fp32(frames, reference) -> None:
    p = load_predictor(WEIGHTS, device="cuda", precision="auto", backend="auto")
    assert (p.precision, p.backend) == ("fp16", "cudagraph")
    for frame, expected in zip(frames, reference):
        assert_agrees(p.predict(frame, OUTPUTS), expected, 0.01, 0.98)


def test_bf16_is_close_to_fp32(frames, reference) -> None:
    if not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bf16")
    p = load_predictor(WEIGHTS, device="cuda", precision="bf16")
    assert_agrees(p.predict(frames[0], OUTPUTS), reference[0], 0.03, 0.95)


def test_compile_reduce_overhead_in_another_thread(frames, reference) -> None:
    """As the node does it: warm up and run in one worker thread (torch.compile keeps
    its CUDA graphs per thread)."""
    p = load_predictor(WEIGHTS, device="cuda", precision="fp16", backend="compile")
    results: list[Prediction] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            p.warmup(HEIGHT, WIDTH)
            results.extend(p.predict(frame, OUTPUTS) for frame in frames)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=600)
    assert not worker.is_alive() and not errors, errors
    assert p.backend == "compile"
    for result, expected in zip(results, reference):
        assert_agrees(result, expected, 0.01, 0.98)


def test_batch_matches_single_frames(frames) -> None:
    p = load_predictor(WEIGHTS, device="cuda", precision="fp16")
    batch = p.to_host(p.predict_batch(torch.from_numpy(np.stack(frames)), ("depth", "labels")))
    for i, frame in enumerate(frames):
        single = p.predict(frame, ("depth", "labels"))
        np.testing.assert_allclose(batch["depth"][i], single.depth, rtol=1e-2, atol=1e-2)
        assert (batch["labels"][i] == single.labels).mean() > 0.99


def test_pinned_outputs_are_reused_only_once_released(frames) -> None:
    """Arrays a caller keeps stay intact after later frames; released ones are reused
    (no new pinned buffer per output per frame)."""
    p = load_predictor(WEIGHTS, device="cuda", precision="fp32", backend="cudagraph")
    kept = p.predict(frames[0], OUTPUTS)
    copy = {name: getattr(kept, name).copy() for name in ("depth", "labels", "overlay")}
    p.predict(frames[1], OUTPUTS)
    for name, array in copy.items():
        np.testing.assert_array_equal(getattr(kept, name), array)
    del kept
    p.predict(frames[1], OUTPUTS)
    allocations = p.transfer.buffers.allocations
    for frame in frames * 2:
        p.predict(frame, OUTPUTS)  # each result dropped at once
    assert p.transfer.buffers.allocations == allocations
    assert p.transfer.buffers.get("frame", (1, HEIGHT, WIDTH, 3), torch.uint8).is_pinned()


def test_bgr_frames_are_converted_on_the_gpu(frames, reference) -> None:
    p = load_predictor(WEIGHTS, device="cuda", precision="fp32", backend="cudagraph")
    assert_agrees(p.predict(frames[0][:, :, ::-1], OUTPUTS, channels="bgr"), reference[0], FP32_DEPTH, FP32_LABELS)
    before = dict(p.transfer.counter)
    p.predict(np.ascontiguousarray(frames[0][:, :, ::-1]), ("depth", "labels", "overlay"), channels="bgr")
    moved = {kind: p.transfer.counter[kind] - before.get(kind, 0) for kind in p.transfer.counter}
    frame = HEIGHT * WIDTH * 3
    # one staging copy in, one upload, one copy back per output (depth float32, labels, overlay)
    assert moved == {"host": frame, "to_device": frame, "to_host": HEIGHT * WIDTH * (4 + 1 + 3)}


@pytest.mark.parametrize("backend, provider, precision, depth_tolerance, label_share", [
    ("onnxruntime", "CUDAExecutionProvider", "fp32", FP32_DEPTH, FP32_LABELS),
    ("tensorrt", "TensorrtExecutionProvider", "fp16", 0.01, 0.98),
])
def test_onnx_backends_on_cuda_match_eager(frames, reference, backend: str, provider: str, precision: str,
                                           depth_tolerance: float, label_share: float) -> None:
    providers = onnxruntime_providers()
    if providers is None or provider not in providers:
        pytest.skip(f"onnxruntime has no {provider} (providers: {providers}); install onnxruntime-gpu")
    p = load_predictor(WEIGHTS, device="cuda", precision=precision, backend=backend)
    assert p.backend == backend
    assert_agrees(p.predict(frames[0], OUTPUTS), reference[0], depth_tolerance, label_share)


def test_benchmark_on_the_gpu_reports_device_memory(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert bench_main(["--device", "cuda", "--resolution", "128x96", "--iters", "3", "--warmup", "2",
                       "--quiet", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["meta"]["device"].startswith("cuda") and report["meta"]["precisions"] == ["fp16"]
    for row in report["results"]:
        assert row["peak_mem_mib"] is not None and row["peak_mem_mib"] > 0
        assert row["backend"] == ("naive" if row["variant"] == "naive" else "cudagraph")
