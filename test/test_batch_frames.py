"""Several frames through one predictor in one pass (inference.batch): each frame's outputs
equal what predict gives it alone, each with its own camera's points; a frame without a
camera gets no points; frames of different sizes are refused; a batch costs the host one
copy of each frame, into a reused staging buffer on the staged (CUDA) path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hydranet_ros.common.pinhole import PinholeK
from hydranet_ros.inference.batch import predict_frames
from hydranet_ros.inference.points import PointsOptions
from hydranet_ros.inference.predictor import Predictor, load_predictor
from hydranet_ros.inference.transfer import Transfer

H, W = 24, 32
OUTPUTS = ("depth", "labels", "overlay", "points")


@pytest.fixture
def predictor(weights_file) -> Predictor:
    return load_predictor(weights_file, device="cpu", precision="fp32", backend="eager")


def frames(count: int, height: int = H, width: int = W) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("organized", [False, True])
def test_a_batch_gives_each_frame_what_it_gets_alone(predictor, organized):
    images = frames(3)
    cameras = [PinholeK(20.0 + 10 * i, 25.0, 16.0, 12.0 - i, W, H) for i in range(3)]
    options = PointsOptions(stride=2, organized=organized)
    batched = predict_frames(predictor, images, OUTPUTS, cameras=cameras, points=options)
    assert len(batched) == 3
    for image, camera, got in zip(images, cameras, batched):
        alone = predictor.predict(image, OUTPUTS, camera=camera, points=options)
        np.testing.assert_allclose(got.depth, alone.depth, rtol=1e-4, atol=1e-5)
        # labels may differ only where two classes' scores tie within float rounding
        assert np.mean(got.labels == alone.labels) > 0.99
        assert got.points.dtype == alone.points.dtype and got.points.shape == alone.points.shape
        np.testing.assert_allclose(got.points["x"], alone.points["x"], rtol=1e-4, atol=1e-5)
        assert got.segm_colour is None and got.depth_colour is None


def test_a_frame_without_a_camera_gets_no_points(predictor):
    camera = PinholeK(30.0, 30.0, 16.0, 12.0, W, H)
    got = predict_frames(predictor, frames(3), OUTPUTS, cameras=[None, camera, None])
    assert [p.points is None for p in got] == [True, False, True]
    assert all(p.depth is not None for p in got)
    alone = predictor.predict(frames(3)[1], OUTPUTS, camera=camera)
    np.testing.assert_allclose(got[1].points["z"], alone.points["z"], rtol=1e-4, atol=1e-5)
    assert all(p.points is None for p in predict_frames(predictor, frames(2), OUTPUTS, cameras=[None, None]))


def test_one_frame_takes_the_single_frame_path(predictor, monkeypatch):
    batches = []
    monkeypatch.setattr(predictor, "predict_batch", lambda *a, **k: batches.append(a) or {})
    (only,) = predict_frames(predictor, frames(1), ("depth",))
    assert only.depth.shape == (H, W) and not batches


def test_frames_of_different_sizes_and_a_camera_count_that_does_not_fit_are_refused(predictor):
    with pytest.raises(ValueError):
        predict_frames(predictor, [*frames(1), *frames(1, H // 2, W // 2)], ("depth",))
    with pytest.raises(ValueError, match="1 cameras for 2 frames"):
        predict_frames(predictor, frames(2), OUTPUTS, cameras=[PinholeK(30.0, 30.0, 16.0, 12.0)])



@pytest.mark.parametrize("staged", [False, True])
def test_a_batch_costs_one_host_copy_per_frame_into_a_reused_buffer(predictor, staged):
    """Unstaged (the CPU) the frames are stacked once; staged (the CUDA path's host side, run
    on the CPU with a plain host buffer for the pinned one) each frame goes straight into its
    slot of the staging buffer, reused batch after batch, and the batch goes up once."""
    bgr = [np.ascontiguousarray(image[:, :, ::-1]) for image in frames(3)]
    alone = [predictor.predict(image, ("depth",), "bgr") for image in bgr]
    predictor.transfer = Transfer(torch.device("cpu"), staged=staged)
    predict_frames(predictor, bgr, ("depth",), channels="bgr")          # sets up the buffers
    counted, allocations = dict(predictor.transfer.counter), predictor.transfer.buffers.allocations
    padded = np.zeros((H, W + 8, 3), np.uint8)      # a message whose rows are padded: a strided view
    padded[:, :W] = bgr[1]
    for _ in range(2):
        got = predict_frames(predictor, [bgr[0], padded[:, :W], bgr[2]], ("depth",), channels="bgr")
        for one, expected in zip(got, alone):
            np.testing.assert_allclose(one.depth, expected.depth, rtol=1e-4, atol=1e-5)
        del got, one
    moved = {kind: (predictor.transfer.counter[kind] - counted.get(kind, 0)) // 2 for kind in ("host", "to_device")}
    batch = 3 * bgr[0].nbytes
    assert moved == {"host": batch, "to_device": batch if staged else 0}
    assert predictor.transfer.buffers.allocations == allocations        # the staging and output buffers reused
