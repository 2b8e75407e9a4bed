"""Joint augmentation of sample dicts, torchvision-references style, on transforms.v2.

The image is resampled bilinearly (antialiased); labels and depth with exact nearest
neighbour, so label ids stay ids and a depth never mixes a valid and an invalid (0)
measurement. Colour jitter touches the image only. Crops pad labels with 255
(ignore) and depth with 0 (invalid), and ``has_depth``/``has_labels``/``name`` pass
through untouched.

The metric-depth rule. A network that infers metric depth from apparent size learns
the focal length of its input images. ``eval_transforms`` (and ``train_transforms``
at zoom 1) resize every image to the network's input size, so both see the same
field of view. A random zoom by s (resize by s, then crop back to the input size)
multiplies the focal length in pixels by s: every object looks s times larger, i.e.
as if it were s times closer. To keep the image and its depth consistent the depth
is divided by s. Flips and crops do not change the focal length, and depth is never
interpolated, only moved or divided.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from .sample import IGNORE_INDEX, INVALID_DEPTH, Sample, Transform

Size = tuple[int, int]  # (height, width)


def _resize(sample: Sample, size: Size) -> Sample:
    h, w = size
    return {
        **sample,
        "image": F.resize_image(sample["image"], [h, w], InterpolationMode.BILINEAR, antialias=True),
        "depth": F.resize_mask(sample["depth"], [h, w], InterpolationMode.NEAREST_EXACT),
        "labels": F.resize_mask(sample["labels"], [h, w], InterpolationMode.NEAREST_EXACT),
    }


def _crop(sample: Sample, top: int, left: int, size: Size) -> Sample:
    """Crop ``size`` at (top, left), which may reach outside the image: the outside is
    padded with 0 (image), IGNORE_INDEX (labels) and INVALID_DEPTH (depth)."""
    h, w = size
    height, width = sample["image"].shape[-2:]
    pad = [max(0, -left), max(0, -top), max(0, left + w - width), max(0, top + h - height)]  # l, t, r, b
    out = dict(sample)
    for key, fill in (("image", 0), ("labels", IGNORE_INDEX), ("depth", INVALID_DEPTH)):
        x = sample[key]
        if any(pad):
            x = F.pad_image(x if x.dim() == 3 else x[None], pad, fill=fill)
            x = x if sample[key].dim() == 3 else x[0]
        out[key] = x[..., top + pad[1]: top + pad[1] + h, left + pad[0]: left + pad[0] + w]
    return out


class Resize:
    """Resize to ``size`` (height, width); depth values are unchanged because the field
    of view is (see the module doc)."""

    def __init__(self, size: Size) -> None:
        self.size = check_size(size)

    def __call__(self, sample: Sample) -> Sample:
        return _resize(sample, self.size)


class RandomZoomCrop:
    """Resize to ``size`` times a zoom s drawn uniformly from ``scale_range``, then crop
    ``size`` at a random place (padding where s < 1); depth is divided by s.
    ``size=None`` keeps each sample's own size as the base."""

    def __init__(self, size: Size | None, scale_range: Sequence[float]) -> None:
        self.size = None if size is None else check_size(size)
        lo, hi = (float(s) for s in scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {tuple(scale_range)}")
        self.scale_range = (lo, hi)

    def __call__(self, sample: Sample) -> Sample:
        size = self.size or tuple(sample["image"].shape[-2:])
        lo, hi = self.scale_range
        s = lo + (hi - lo) * torch.rand(()).item()
        zoomed_h, zoomed_w = max(1, round(size[0] * s)), max(1, round(size[1] * s))
        sample = _resize(sample, (zoomed_h, zoomed_w))
        # the focal length in pixels grows by the height ratio actually used (rounding included)
        sample["depth"] = sample["depth"] / (zoomed_h / size[0])
        top = _random_offset(zoomed_h - size[0])
        left = _random_offset(zoomed_w - size[1])
        return _crop(sample, top, left, size)


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: Sample) -> Sample:
        if torch.rand(()).item() >= self.p:
            return sample
        # a face sample has only an image; its labels (age, gender, race) do not move
        return {**sample, **{key: sample[key].flip(-1) for key in ("image", "depth", "labels") if key in sample}}


class ColourJitter:
    """Brightness, contrast and saturation within +-``strength``, hue within +-strength/6;
    the image only."""

    def __init__(self, strength: float) -> None:
        if not 0 < strength <= 1:
            raise ValueError(f"colour_jitter must be within (0, 1], got {strength}")
        self.jitter = v2.ColorJitter(strength, strength, strength, min(0.5, strength / 6))

    def __call__(self, sample: Sample) -> Sample:
        return {**sample, "image": self.jitter(sample["image"])}


class Compose:
    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for transform in self.transforms:
            sample = transform(sample)
        return sample


def train_transforms(size: Size | None = None, scale_range: Sequence[float] = (0.75, 1.5), hflip: bool = True,
                     colour_jitter: float = 0.3) -> Compose:
    """Random zoom and crop to ``size`` (height, width; None: each sample's own size),
    flip, colour jitter; ``scale_range=(1, 1)``, ``hflip=False`` or ``colour_jitter=0``
    turn one off."""
    steps: list[Transform] = [RandomZoomCrop(size, scale_range)]
    if hflip:
        steps.append(RandomHorizontalFlip())
    if colour_jitter:
        steps.append(ColourJitter(colour_jitter))
    return Compose(steps)


def eval_transforms(size: Size | None = None) -> Compose:
    """Resize to ``size`` (height, width), or nothing for ``None``."""
    return Compose([] if size is None else [Resize(size)])


def _random_offset(slack: int) -> int:
    """A crop offset in [0, slack] (slack >= 0) or [slack, 0] (the image is smaller: pad)."""
    lo, hi = min(0, slack), max(0, slack)
    return int(torch.randint(lo, hi + 1, ()).item())


def check_size(size: Sequence[int]) -> Size:
    if len(size) != 2 or min(int(s) for s in size) <= 0:
        raise ValueError(f"size must be (height, width) with positive entries, got {size!r}")
    return int(size[0]), int(size[1])


__all__ = ["ColourJitter", "Compose", "RandomHorizontalFlip", "RandomZoomCrop", "Resize", "eval_transforms",
           "train_transforms"]
