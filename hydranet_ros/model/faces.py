"""The face-attribute HydraNet: one ResNet backbone, three small heads (age, gender, race).

This is the package's origin, the HydraNet tutorial on UTKFace, with one change:
the tutorial called the backbone once per head; here it runs once per forward
and the three heads share its globally average-pooled features.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .backbones import build_encoder
from .config_checks import ConfigError, check_fields, check_int, check_number

FACE_BACKBONES = ("resnet18", "resnet34", "resnet50")
FACE_HEADS = ("age", "gender", "race")
# the gender head is one logit: its sigmoid is the probability of the second name
GENDER_NAMES = ("male", "female")


@dataclass(frozen=True)
class FaceModelConfig:
    """Everything needed to rebuild a face-attribute model; stored in the model card,
    whose ``class_names`` are the race classes."""

    race_classes: int = 5
    backbone: str = "resnet18"
    head_width: int = 256                   # hidden units of each head's MLP
    image_size: tuple[int, int] = (128, 128)  # (height, width) it was trained at; inputs are resized to it
    # The age head predicts (age - age_mean) / age_std and forward() undoes it: a raw
    # output in years would need its bias to travel ~30 years at the optimiser's step size.
    age_mean: float = 33.0
    age_std: float = 20.0

    def __post_init__(self) -> None:
        check_int("race_classes", self.race_classes, 2)
        if self.backbone not in FACE_BACKBONES:
            raise ConfigError(f"model config field 'backbone': face models use a ResNet backbone "
                              f"({', '.join(FACE_BACKBONES)}), got {self.backbone!r}")
        check_int("head_width", self.head_width, 1)
        size = self.image_size
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise ConfigError(f"model config field 'image_size' must be [height, width], got {size!r}")
        for value in size:
            check_int("image_size", value, 1)
        check_number("age_mean", self.age_mean)
        check_number("age_std", self.age_std, positive=True)

    @property
    def num_classes(self) -> int:
        return self.race_classes

    def head_channels(self) -> dict[str, int]:
        return {"age": 1, "gender": 1, "race": self.race_classes}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FaceModelConfig":
        check_fields(cls, data)
        size = data.get("image_size", cls.image_size)
        return cls(**{**data, "image_size": tuple(size) if isinstance(size, list) else size})


class MLPHead(nn.Sequential):
    """Linear -> ReLU -> Linear, the tutorial's head."""

    def __init__(self, in_features: int, width: int, out_features: int) -> None:
        super().__init__(nn.Linear(in_features, width), nn.ReLU(inplace=True), nn.Linear(width, out_features))


class FaceHydraNet(nn.Module):
    """forward(x) on a normalised (N, 3, H, W) float tensor returns ``age`` (N,) in
    years, ``gender`` (N,) logits of "female" and ``race`` (N, race_classes) logits."""

    def __init__(self, config: FaceModelConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        # the ResNet's four stages; only the deepest feeds the heads
        self.encoder = encoder if encoder is not None else build_encoder(config.backbone)
        features = self.encoder.out_channels[-1]
        self.heads = nn.ModuleDict({name: MLPHead(features, config.head_width, channels)
                                    for name, channels in config.head_channels().items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FaceHydraNet expects an (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
        pooled = self.encoder(x)[-1].mean(dim=(2, 3))  # global average pooling
        age = self.heads["age"](pooled)[:, 0] * self.config.age_std + self.config.age_mean
        return {"age": age, "gender": self.heads["gender"](pooled)[:, 0], "race": self.heads["race"](pooled)}
