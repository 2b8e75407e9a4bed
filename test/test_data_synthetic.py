"""The procedural street generator: determinism, exact geometry, the dataset contract."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hydranet_ros.model.presets import KITTI6
from hydranet_ros.synthetic.render import render
from hydranet_ros.synthetic.scene import CAR, ROAD, SKY, Box, make_street_scene
from hydranet_ros.training.data import (
    SyntheticStreetDataset,
    camera_pose,
    intrinsics,
    render_sequence,
    render_street_scene,
)

W, H = 160, 48


def test_same_seed_same_frame_other_seed_other_frame() -> None:
    a, b = render_street_scene(3, W, H), render_street_scene(3, W, H)
    for field in ("image", "depth", "labels", "K", "pose"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    c = render_street_scene(4, W, H)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (H, W, 3) and a.image.dtype == np.uint8
    assert a.depth.dtype == np.float32 and a.labels.dtype == np.uint8 and a.labels.shape == (H, W)


def test_road_depth_is_the_exact_ray_plane_intersection() -> None:
    height = 1.65
    frame = render_street_scene(1, W, H, pitch_deg=0.0, camera_height=height)
    fy, cy = frame.K[1, 1], frame.K[1, 2]
    rows, cols = np.nonzero((frame.labels == ROAD) & (frame.depth > 0))
    assert len(rows) > 100
    # level camera: a ground pixel in row v lies at z = h * fy / (v - cy), whatever the yaw
    np.testing.assert_allclose(frame.depth[rows, cols], height * fy / (rows - cy), rtol=1e-5)
    # any pitch: intersect the pixel's world ray with the ground plane y = 0
    frame = render_street_scene(2, W, H)
    rows, cols = np.nonzero((frame.labels == ROAD) & (frame.depth > 0))
    rays = frame.pose[:3, :3] @ np.linalg.inv(frame.K) @ np.stack([cols, rows, np.ones_like(rows)]).astype(float)
    np.testing.assert_allclose(frame.depth[rows, cols], -frame.pose[1, 3] / rays[1], rtol=1e-5)


def test_box_face_depth_is_exact() -> None:
    # a lone car body facing a level, straight camera: its rear face is the plane z = 12 m
    scene = make_street_scene(np.random.default_rng(0), 0, 0.0, 0.0)
    box = Box(np.array([-1.0, 0.1, 12.0]), np.array([1.0, 1.5, 16.0]), CAR, "car_body",
              np.array([0.5, 0.1, 0.1]), 0, (0.0, 1.0))
    scene = dataclasses.replace(scene, boxes=[box], spheres=[])
    K = intrinsics(W, H)
    _, depth, labels = render(scene, K, camera_pose(0.0, 1.65, 0.0), W, H, np.random.default_rng(0))
    car = labels == CAR
    assert car.sum() > 50
    np.testing.assert_allclose(depth[car], 12.0, rtol=1e-9)


def test_labels_cover_every_class_and_sky_has_no_depth() -> None:
    seen = set()
    for seed in range(4):
        frame = render_street_scene(seed, W, H)
        seen |= set(np.unique(frame.labels).tolist())
        sky = frame.labels == SKY
        assert sky.any() and (frame.depth[sky] == 0).all()
        assert (frame.depth >= 0).all() and frame.depth.max() <= 80.0
        assert (frame.depth[~sky] > 0).mean() > 0.8  # only ground beyond 80 m is invalid
    assert seen == set(range(len(KITTI6.class_names)))


def test_sequence_moves_forward_through_one_scene() -> None:
    frames = list(render_sequence(3, 64, 24, seed=5, speed=10.0, fps=10.0))
    assert len(frames) == 3
    z = [f.pose[2, 3] for f in frames]
    assert z == pytest.approx([0.0, 1.0, 2.0])
    # consecutive frames of one scene differ far less than two unrelated streets
    step = np.abs(frames[1].image.astype(int) - frames[0].image.astype(int)).mean()
    other = np.abs(render_street_scene(99, 64, 24).image.astype(int) - frames[0].image.astype(int)).mean()
    assert step < other


def test_dataset_contract_and_asymmetric_annotations() -> None:
    ds = SyntheticStreetDataset(10, 64, 24, seed_offset=7, depth_only_fraction=0.3, labels_only_fraction=0.2)
    assert ds.class_names == list(KITTI6.class_names) and ds.palette == list(KITTI6.palette)
    samples = [ds[i] for i in range(len(ds))]
    has_depth = [bool(s["has_depth"]) for s in samples]
    has_labels = [bool(s["has_labels"]) for s in samples]
    assert sum(not d for d in has_depth) == 2 and sum(not l for l in has_labels) == 3
    assert all(d or l for d, l in zip(has_depth, has_labels))
    for sample in samples:
        assert sample["image"].shape == (3, 24, 64) and sample["image"].dtype == torch.uint8
        assert sample["depth"].dtype == torch.float32 and sample["labels"].dtype == torch.int64
        if not sample["has_depth"]:
            assert (sample["depth"] == 0).all()
        if not sample["has_labels"]:
            assert (sample["labels"] == 255).all()
    assert samples[0]["name"] == "synthetic_000007"
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 24, 64) and batch["has_depth"].shape == (4,)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        SyntheticStreetDataset(4, 64, 24, depth_only_fraction=0.7, labels_only_fraction=0.6)
    with pytest.raises(ValueError):
        SyntheticStreetDataset(4, 0, 24)
    with pytest.raises(IndexError):
        SyntheticStreetDataset(4, 64, 24)[4]
