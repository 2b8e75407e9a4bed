"""The assembled network: one encoder, one decoder, several heads."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .backbones import BACKBONES, build_encoder
from .config_checks import ConfigError, check_choice, check_fields, check_int
from .heads import TaskHead
from .refinenet import LightWeightRefineNet


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the architecture; stored in the model card."""

    num_classes: int
    backbone: str = "mobilenet_v2"
    decoder_width: int = 256
    # Extra heads beyond "segm" and "depth", name -> output channels (the
    # reference's three-task checkpoint adds "normals": 3).
    extra_heads: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("num_classes", self.num_classes, 1)
        check_choice("backbone", self.backbone, BACKBONES)
        check_int("decoder_width", self.decoder_width, 1)
        if not isinstance(self.extra_heads, dict):
            raise ConfigError(f"model config field 'extra_heads' must be a mapping, got {self.extra_heads!r}")
        for name, channels in self.extra_heads.items():
            if not isinstance(name, str) or name in ("segm", "depth"):
                raise ConfigError(f"model config field 'extra_heads' has a bad head name {name!r}")
            check_int(f"extra_heads.{name}", channels, 1)

    def head_channels(self) -> dict[str, int]:
        return {"segm": self.num_classes, "depth": 1, **self.extra_heads}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        check_fields(cls, data)
        return cls(**data)


class HydraNet(nn.Module):
    """forward(x) on an ImageNet-normalised NCHW float tensor returns a dict of raw
    head outputs at the decoder's stride (4): ``segm`` (N, classes, h, w) logits,
    ``depth`` (N, 1, h, w) and any extra heads. The encoder runs once per call."""

    output_stride = 4

    def __init__(self, config: ModelConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else build_encoder(config.backbone)
        self.decoder = LightWeightRefineNet(self.encoder.out_channels, self.encoder.feature_groups,
                                            width=config.decoder_width)
        self.heads = nn.ModuleDict(
            {name: TaskHead(config.decoder_width, channels)
             for name, channels in config.head_channels().items()}
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"HydraNet expects an (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
        shared = self.decoder(self.encoder(x))
        return {name: head(shared) for name, head in self.heads.items()}
