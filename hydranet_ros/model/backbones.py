"""Encoder factory: the reference MobileNetV2 and torchvision backbones.

Every encoder exposes ``out_channels`` (one per returned feature, shallowest
first) and ``feature_groups`` (indices sharing a stride, deepest first), which
is all the decoder needs to adapt to its widths.
"""
from __future__ import annotations

import torch
from torch import nn

from .mobilenet import MobileNetV2Encoder

BACKBONES = ("mobilenet_v2", "resnet18", "resnet34", "resnet50", "tv_mobilenet_v2")


class TorchvisionResNetEncoder(nn.Module):
    """A torchvision ResNet's four stages (strides 4, 8, 16, 32)."""

    feature_groups = ((3,), (2,), (1,), (0,))

    def __init__(self, name: str, weights: str | None = None) -> None:
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, name)(weights=weights)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        widths = [getattr(self, f"layer{i}")[-1] for i in range(1, 5)]
        self.out_channels = tuple(
            (block.conv3 if hasattr(block, "conv3") else block.conv2).out_channels for block in widths
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


class TorchvisionMobileNetV2Encoder(nn.Module):
    """torchvision's MobileNetV2 (whose ImageNet weights exist in torchvision),
    tapped at the same six points as the reference encoder."""

    feature_groups = MobileNetV2Encoder.feature_groups
    out_channels = MobileNetV2Encoder.out_channels
    # indices into torchvision's ``features`` after which each tap is taken
    _taps = (3, 6, 10, 13, 16, 17)

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        import torchvision

        self.features = torchvision.models.mobilenet_v2(weights=weights).features[:18]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for index, block in enumerate(self.features):
            x = block(x)
            if index in self._taps:
                out.append(x)
        return out


def build_encoder(name: str, pretrained_weights: str | None = None) -> nn.Module:
    """``pretrained_weights`` is a torchvision weights name (e.g. "DEFAULT");
    torchvision downloads it on first use, so it fails without a network."""
    if name == "mobilenet_v2":
        if pretrained_weights:
            raise ValueError("the reference mobilenet_v2 encoder has no torchvision weights; "
                             "use backbone 'tv_mobilenet_v2' for ImageNet initialisation")
        return MobileNetV2Encoder()
    if name == "tv_mobilenet_v2":
        return TorchvisionMobileNetV2Encoder(pretrained_weights)
    if name.startswith("resnet") and name in BACKBONES:
        return TorchvisionResNetEncoder(name, pretrained_weights)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
