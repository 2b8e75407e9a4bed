"""The labelled point cloud on the device (inference.points) against a plain numpy reference,
and the options and camera checks around it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hydranet_ros.common.pinhole import CameraError, PinholeK
from hydranet_ros.inference.points import (
    DEFAULT_STRIDE,
    PointsOptions,
    UnknownClassError,
    frame_points,
    host_points,
    intrinsics_tensor,
    point_dtype,
    point_grid,
    points_options,
)

H, W = 23, 31
PALETTE = np.random.default_rng(7).integers(0, 256, (6, 3), dtype=np.uint8)
CLASSES = ["sky", "building", "road", "sidewalk", "vegetation", "car"]


def scene(count: int = 1, seed: int = 0, classes: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth with some holes (0, NaN, inf), labels and RGB frames."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 40.0, (count, H, W)).astype(np.float32)
    depth[:, 0, 4], depth[:, 4, 0], depth[:, 8, 8] = 0.0, np.nan, np.inf
    labels = rng.integers(0, classes, (count, H, W))
    rgb = rng.integers(0, 256, (count, H, W, 3), dtype=np.uint8)
    return depth, labels, rgb


def reference(depth: np.ndarray, labels: np.ndarray, rgb: np.ndarray, k: PinholeK, options: PointsOptions,
              palette: np.ndarray = PALETTE) -> list[tuple]:
    """One frame, pixel by pixel: (row, col, x, y, z, r, g, b, label) of every kept point."""
    points = []
    for v in range(0, depth.shape[0], options.stride):
        for u in range(0, depth.shape[1], options.stride):
            z = float(depth[v, u])
            if not (np.isfinite(z) and z > 0) or (options.max_depth and z > options.max_depth):
                continue
            if int(labels[v, u]) in options.exclude:
                continue
            colour = palette[labels[v, u]] if options.colour == "class" else rgb[v, u]
            points.append((v // options.stride, u // options.stride, (u - k.cx) * z / k.fx,
                           (v - k.cy) * z / k.fy, z, *map(int, colour), int(labels[v, u])))
    return points


def device_cloud(depth, labels, rgb, cameras, options, classes: int = 6) -> list[np.ndarray]:
    grid = point_grid(torch.from_numpy(depth), torch.from_numpy(labels), torch.from_numpy(rgb),
                      intrinsics_tensor(cameras, len(depth), H, W, torch.device("cpu")), options,
                      torch.from_numpy(PALETTE))
    return [host_points(frame_points(g, options.organized).numpy(), classes) for g in grid]


def unpack_rgb(rgb: np.ndarray) -> np.ndarray:
    """RViz's reading of the packed float: its bits as 0x00RRGGBB."""
    bits = rgb.view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1)


def assert_matches(cloud: np.ndarray, expected: list[tuple], options: PointsOptions, shape: tuple[int, int]) -> None:
    rows = np.array(expected, dtype=np.float64).reshape(-1, 9)
    if options.organized:
        assert cloud.shape == shape
        kept = ~np.isnan(cloud["x"])
        assert np.isnan(cloud["y"][~kept]).all() and np.isnan(cloud["z"][~kept]).all()
        assert (cloud["label"][~kept] == 0).all() and (cloud["rgb"].view(np.uint32)[~kept] == 0).all()
        np.testing.assert_array_equal(np.argwhere(kept), rows[:, :2].astype(int))  # row-major, as the reference
        cloud = cloud[kept]
    assert cloud.shape == (len(expected),)
    np.testing.assert_allclose(cloud["x"], rows[:, 2], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cloud["y"], rows[:, 3], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(cloud["z"], rows[:, 4].astype(np.float32))     # the depth itself
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), rows[:, 5:8])
    np.testing.assert_array_equal(cloud["label"], rows[:, 8])


@pytest.mark.parametrize("options", [
    PointsOptions(),
    PointsOptions(stride=1, organized=True),
    PointsOptions(stride=3, max_depth=20.0, exclude=(0, 2), colour="class"),
    PointsOptions(stride=5, max_depth=10.0, exclude=(5,), organized=True, colour="class"),
])
def test_cloud_matches_the_numpy_reference_for_a_batch(options):
    depth, labels, rgb = scene(count=2)
    cameras = [PinholeK(40.0, 42.0, 15.5, 11.0), PinholeK(25.0, 20.0, 3.0, 20.0)]  # one per frame
    clouds = device_cloud(depth, labels, rgb, cameras, options)
    shape = (len(range(0, H, options.stride)), len(range(0, W, options.stride)))
    for cloud, d, lab, image, k in zip(clouds, depth, labels, rgb, cameras):
        expected = reference(d, lab, image, k, options)
        assert 0 < len(expected) < shape[0] * shape[1]  # something is kept and something dropped
        assert_matches(cloud, expected, options, shape)


def test_more_than_255_classes_take_a_uint16_label():
    depth, labels, rgb = scene(classes=300)
    assert labels.max() > 255
    cloud = device_cloud(depth, labels, rgb, PinholeK(30.0, 30.0, 15.0, 11.0), PointsOptions(stride=1), classes=300)[0]
    assert cloud.dtype["label"] == np.dtype("<u2") and point_dtype(255)["label"] == np.dtype("u1")
    kept = np.isfinite(depth[0]) & (depth[0] > 0)
    np.testing.assert_array_equal(cloud["label"], labels[0][kept])


def test_an_empty_cloud_is_an_empty_array():
    depth, labels, rgb = scene()
    cloud = device_cloud(depth, labels, rgb, PinholeK(30.0, 30.0, 15.0, 11.0), PointsOptions(max_depth=0.1))[0]
    assert cloud.shape == (0,) and cloud.dtype == point_dtype(6)


def test_default_stride_gives_about_20k_points_at_640x480():
    assert len(range(0, 640, DEFAULT_STRIDE)) * len(range(0, 480, DEFAULT_STRIDE)) == 19_200


def test_options_by_class_name():
    options = points_options(CLASSES, stride=2, max_depth=0.0, exclude_classes=["road", " sky", ""], colour="class")
    assert options == PointsOptions(stride=2, max_depth=None, exclude=(0, 2), colour="class")
    with pytest.raises(UnknownClassError, match=r"unknown class name\(s\) 'person', 'tree'; the model's classes are sky"):
        points_options(CLASSES, exclude_classes=["road", "person", "tree"])


@pytest.mark.parametrize("fields, message", [
    (dict(stride=0), "stride must be a positive integer"),
    (dict(stride=1.5), "stride must be a positive integer"),
    (dict(max_depth=-1.0), "max depth must be a positive"),
    (dict(max_depth=float("nan")), "max depth must be a positive"),
    (dict(colour="depth"), "colour must be one of input, class"),
])
def test_bad_options_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        PointsOptions(**fields)


def test_camera_checks():
    PinholeK.from_k([50, 0, 32, 0, 50, 24, 0, 0, 1], 64, 48).check(64, 48)
    PinholeK(50.0, 50.0, 32.0, 24.0).check(640, 480)   # no calibrated size given: not checked
    with pytest.raises(CameraError, match=r"no usable focal length \(fx=0, fy=50\)"):
        PinholeK.from_k([0, 0, 32, 0, 50, 24, 0, 0, 1], 64, 48).check(64, 48)
    with pytest.raises(CameraError, match="camera_info is for 64x48 images, the frame is 128x96"):
        PinholeK.from_k([50, 0, 32, 0, 50, 24, 0, 0, 1], 64, 48).check(128, 96)
    with pytest.raises(CameraError, match="non-finite principal point"):
        PinholeK(50.0, 50.0, float("nan"), 24.0).check(64, 48)
    with pytest.raises(CameraError, match="K must have 9 values"):
        PinholeK.from_k([50, 50, 32, 24])


# ---------------------------------------------------------------- through the predictor

@pytest.fixture
def predictor(weights_file):
    from hydranet_ros.inference.predictor import load_predictor

    return load_predictor(weights_file, device="cpu", backend="eager")


def test_predicted_points_are_the_depth_and_labels_at_their_pixels(predictor):
    rgb = scene()[2][0]
    k = PinholeK(40.0, 42.0, 15.5, 11.0, W, H)
    options = PointsOptions(stride=2, organized=True)
    result = predictor.predict(np.ascontiguousarray(rgb[..., ::-1]), ["depth", "labels", "points"], channels="bgr",
                               camera=k, points=options)
    cloud = result.points
    assert cloud.shape == (12, 16) and cloud.dtype == point_dtype(6)
    rows, cols = np.mgrid[0:H:2, 0:W:2]
    np.testing.assert_array_equal(cloud["z"], result.depth[::2, ::2])        # z is the depth image at the pixel
    np.testing.assert_allclose(cloud["x"], (cols - k.cx) * cloud["z"] / k.fx, rtol=1e-6)
    np.testing.assert_allclose(cloud["y"], (rows - k.cy) * cloud["z"] / k.fy, rtol=1e-6)
    np.testing.assert_array_equal(cloud["label"], result.labels[::2, ::2])
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), rgb[::2, ::2])   # RGB although the frame was BGR


def test_predicted_dense_cloud_leaves_out_excluded_classes_and_far_points(predictor):
    rgb = scene()[2][0]
    k = PinholeK(40.0, 42.0, 15.5, 11.0)
    full = predictor.predict(rgb, ["depth", "labels"])
    present = np.unique(full.labels)        # random weights may well predict one class everywhere
    absent = next(c for c in range(6) if c not in present)
    limit = float(np.median(full.depth))
    options = PointsOptions(stride=1, max_depth=limit, exclude=(absent,), colour="class")
    cloud = predictor.predict(rgb, ["points"], camera=k, points=options).points
    kept = full.depth <= limit
    assert cloud.shape == (int(kept.sum()),) and 0 < kept.sum() < kept.size
    np.testing.assert_array_equal(cloud["z"], full.depth[kept])
    np.testing.assert_array_equal(cloud["label"], full.labels[kept])
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), np.asarray(predictor.card.palette)[full.labels[kept]])
    excluded = PointsOptions(stride=1, exclude=tuple(int(c) for c in present))
    assert predictor.predict(rgb, ["points"], camera=k, points=excluded).points.shape == (0,)


def test_predict_batch_gives_each_frame_its_own_camera(predictor):
    rgb = torch.from_numpy(scene(count=2)[2])
    cameras = [PinholeK(40.0, 42.0, 15.5, 11.0), PinholeK(20.0, 21.0, 3.0, 4.0)]
    out = predictor.predict_batch(rgb, ["depth", "points"], camera=cameras, points=PointsOptions(stride=3))
    for frame, k in enumerate(cameras):
        cloud = host_points(frame_points(out["points"][frame], organized=False).numpy(), 6)
        depth = out["depth"][frame, ::3, ::3].numpy()
        rows, cols = np.mgrid[0:H:3, 0:W:3]
        np.testing.assert_array_equal(cloud["z"], depth.reshape(-1))
        np.testing.assert_allclose(cloud["x"], ((cols - k.cx) * depth / k.fx).reshape(-1), rtol=1e-6)


def test_points_need_a_camera_that_fits_the_frame(predictor):
    rgb = scene()[2][0]
    with pytest.raises(ValueError, match="the 'points' output needs the camera's intrinsics"):
        predictor.predict(rgb, ["points"])
    with pytest.raises(CameraError, match=f"camera_info is for 64x48 images, the frame is {W}x{H}"):
        predictor.predict(rgb, ["points"], camera=PinholeK(40.0, 40.0, 32.0, 24.0, 64, 48))
    with pytest.raises(CameraError, match="no usable focal length"):
        predictor.predict(rgb, ["depth", "points"], camera=PinholeK(0.0, 0.0, 15.0, 11.0))
    assert predictor.predict(rgb, ["depth"]).points is None   # not asked for, not computed
