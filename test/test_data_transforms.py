"""Joint augmentation: geometry shared by image, labels and depth; the depth/zoom rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hydranet_ros.training.data import (
    ColourJitter,
    RandomHorizontalFlip,
    RandomZoomCrop,
    eval_transforms,
    make_sample,
    train_transforms,
)

PALETTE = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], dtype=np.uint8)


def striped_sample(height: int = 24, width: int = 40, depth: float = 10.0) -> dict:
    """Vertical bands of class ids 0..3, the image painted with each class's colour."""
    labels = (np.arange(width)[None, :] * 4 // width).repeat(height, 0).astype(np.uint8)
    depth_map = np.full((height, width), depth, dtype=np.float32)
    depth_map[:, :3] = 0.0  # an invalid strip
    return make_sample(PALETTE[labels], depth_map, labels, "striped")


@pytest.mark.parametrize("zoom", [2.0, 0.5])
def test_zoom_divides_depth_and_pads_with_ignore(zoom: float) -> None:
    torch.manual_seed(0)
    out = RandomZoomCrop((24, 40), (zoom, zoom))(striped_sample(depth=10.0))
    depth, labels = out["depth"], out["labels"]
    assert depth.shape == labels.shape == (24, 40) and out["image"].shape == (3, 24, 40)
    # zooming in by s makes things look s times closer: depth / s
    assert set(torch.unique(depth).tolist()) <= {0.0, 10.0 / zoom}
    assert (depth == 10.0 / zoom).any()
    padded = labels == 255
    if zoom < 1:
        assert padded.sum() == 24 * 40 - 12 * 20  # the shrunken image covers a quarter
        assert (depth[padded] == 0).all() and (out["image"][:, padded] == 0).all()
    else:
        assert not padded.any()


def test_nearest_resampling_keeps_ids_and_alignment() -> None:
    torch.manual_seed(1)
    transform = train_transforms((17, 29), scale_range=(0.6, 1.7), hflip=True, colour_jitter=0)
    for _ in range(5):
        out = transform(striped_sample())
        labels, image = out["labels"], out["image"]
        assert set(torch.unique(labels).tolist()) <= {0, 1, 2, 3, 255}
        assert out["depth"].dtype == torch.float32 and labels.dtype == torch.int64 and image.dtype == torch.uint8
        # away from band edges, every labelled pixel still shows its class's colour
        valid = labels != 255
        interior = valid.clone()
        interior[:, 1:] &= labels[:, 1:] == labels[:, :-1]
        interior[:, :-1] &= labels[:, :-1] == labels[:, 1:]
        expected = torch.from_numpy(PALETTE)[labels[interior]].T.int()
        assert (image[:, interior].int() - expected).abs().max() <= 2


def test_eval_resize_keeps_depth_values() -> None:
    out = eval_transforms((12, 30))(striped_sample(depth=7.0))
    assert out["image"].shape == (3, 12, 30)
    assert set(torch.unique(out["depth"]).tolist()) == {0.0, 7.0}
    assert set(torch.unique(out["labels"]).tolist()) == {0, 1, 2, 3}
    assert out["name"] == "striped" and out["has_depth"] and out["has_labels"]


def test_flip_moves_all_three_together() -> None:
    sample = striped_sample()
    flip = RandomHorizontalFlip(p=1.0)(sample)
    for key in ("image", "depth", "labels"):
        assert torch.equal(flip[key], sample[key].flip(-1))


def test_colour_jitter_changes_the_image_only() -> None:
    torch.manual_seed(2)
    sample = striped_sample()
    out = ColourJitter(0.5)(sample)
    assert torch.equal(out["depth"], sample["depth"]) and torch.equal(out["labels"], sample["labels"])
    assert not torch.equal(out["image"], sample["image"]) and out["image"].dtype == torch.uint8


def test_train_output_size_is_fixed_and_seeded() -> None:
    transform = train_transforms((16, 32))
    shapes = {transform(striped_sample(h, w))["image"].shape for h, w in ((24, 40), (50, 70), (9, 13))}
    assert shapes == {torch.Size([3, 16, 32])}
    torch.manual_seed(3)
    a = transform(striped_sample())
    torch.manual_seed(3)
    b = transform(striped_sample())
    assert all(torch.equal(a[k], b[k]) for k in ("image", "depth", "labels"))
    with pytest.raises(ValueError):
        train_transforms((16, 32), scale_range=(2.0, 1.0))
