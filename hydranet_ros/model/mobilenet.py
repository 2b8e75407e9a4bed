"""MobileNetV2 encoder in the reference layout (``layer1`` ... ``layer8``).

torchvision's MobileNetV2 drops the 1x1 expansion conv of the first block
(expansion factor 1); the reference keeps it, so its checkpoints only load into
this module. torchvision backbones are offered separately (``backbones.py``).
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import conv_bn_relu6

# expansion factor, output channels, repeats, stride of the first repeat
MOBILENET_V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.use_residual = in_ch == out_ch and stride == 1
        # The attribute name "output" is part of the checkpoint keys.
        self.output = nn.Sequential(
            conv_bn_relu6(in_ch, hidden, 1),
            conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden),
            conv_bn_relu6(hidden, out_ch, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.output(x)
        return out + x if self.use_residual else out


class MobileNetV2Encoder(nn.Module):
    """Returns the six feature maps the decoder consumes, shallowest first:
    strides 4, 8, 16, 16, 32, 32 with 24, 32, 64, 96, 160, 320 channels."""

    # Features grouped by output stride, deepest first: the decoder fuses each group.
    feature_groups: tuple[tuple[int, ...], ...] = ((5, 4), (3, 2), (1,), (0,))
    out_channels: tuple[int, ...] = (24, 32, 64, 96, 160, 320)

    def __init__(self) -> None:
        super().__init__()
        in_ch = 32
        self.layer1 = conv_bn_relu6(3, in_ch, 3, stride=2)
        for index, (t, c, n, s) in enumerate(MOBILENET_V2_SETTINGS, start=2):
            blocks = []
            for repeat in range(n):
                blocks.append(InvertedResidual(in_ch, c, t, s if repeat == 0 else 1))
                in_ch = c
            setattr(self, f"layer{index}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer2(self.layer1(x))
        features = []
        for index in range(3, 9):
            x = getattr(self, f"layer{index}")(x)
            features.append(x)
        return features
