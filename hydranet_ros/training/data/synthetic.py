"""Procedural street scenes as a training dataset (``synthetic/`` renders them): no download,
exact depth and labels, and asymmetric annotations on demand."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from ...model.presets import KITTI6
from ...synthetic.camera import (
    DEFAULT_HFOV_DEG,
    SyntheticFrame,
    camera_pose,
    intrinsics,
    render_sequence,
    render_street_scene,
    render_view,
)
from .sample import Sample, Transform, make_sample


class SyntheticStreetDataset(Dataset):
    """``num_samples`` random streets (sample i uses seed ``seed_offset + i``).

    ``depth_only_fraction`` / ``labels_only_fraction`` of the samples (chosen by a
    seeded permutation, exact counts rounded down) drop their labels / depth, to
    train on asymmetric annotations like KITTI depth + KITTI semantic.
    """

    class_names = list(KITTI6.class_names)
    palette = list(KITTI6.palette)

    def __init__(self, num_samples: int, width: int, height: int, seed_offset: int = 0,
                 depth_only_fraction: float = 0.0, labels_only_fraction: float = 0.0,
                 transform: Transform | None = None, *, hfov_deg: float = DEFAULT_HFOV_DEG,
                 max_depth: float = 80.0) -> None:
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        fractions = (depth_only_fraction, labels_only_fraction)
        if min(fractions) < 0 or sum(fractions) > 1:
            raise ValueError(f"depth_only_fraction and labels_only_fraction must be >= 0 and sum to <= 1, "
                             f"got {depth_only_fraction} and {labels_only_fraction}")
        intrinsics(width, height, hfov_deg)  # validates the size and field of view
        self.num_samples, self.width, self.height = num_samples, width, height
        self.seed_offset, self.transform = seed_offset, transform
        self.hfov_deg, self.max_depth = hfov_deg, max_depth
        order = np.random.default_rng(seed_offset).permutation(num_samples)
        depth_only = int(depth_only_fraction * num_samples)
        labels_only = int(labels_only_fraction * num_samples)
        self.has_depth = np.ones(num_samples, dtype=bool)
        self.has_labels = np.ones(num_samples, dtype=bool)
        self.has_labels[order[:depth_only]] = False
        self.has_depth[order[depth_only:depth_only + labels_only]] = False
        self.skipped: list[str] = []  # the contract's field; a synthetic sample never fails

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Sample:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"sample index {index} out of range for {self.num_samples} samples")
        index %= self.num_samples
        seed = self.seed_offset + index
        frame = render_street_scene(seed, self.width, self.height, hfov_deg=self.hfov_deg, max_depth=self.max_depth)
        sample = make_sample(frame.image, frame.depth if self.has_depth[index] else None,
                             frame.labels if self.has_labels[index] else None, f"synthetic_{seed:06d}")
        return self.transform(sample) if self.transform is not None else sample


__all__ = ["SyntheticFrame", "SyntheticStreetDataset", "camera_pose", "intrinsics", "render_sequence",
           "render_street_scene", "render_view"]
