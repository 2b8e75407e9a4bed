"""Light-Weight RefineNet decoder (Nekrasov et al., BMVC 2018).

Encoder features are fused from the deepest stride to the shallowest: at each
stride the lateral 1x1 projections are summed with the upsampled result of the
previous stride, passed through ReLU6 and a chained-residual-pooling block, and
(except at the last stride) a 1x1 adaptation conv. The output is at the stride
of the shallowest feature (4 for MobileNetV2 and ResNets).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ChainedResidualPooling, conv1x1


class RefineStage(nn.Module):
    def __init__(self, in_channels: Sequence[int], width: int, depthwise_crp: bool, adapt: bool) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(conv1x1(c, width) for c in in_channels)
        self.crp = ChainedResidualPooling(width, stages=4, depthwise=depthwise_crp)
        self.adapt = conv1x1(width, width) if adapt else None

    def forward(self, features: Sequence[torch.Tensor], top: torch.Tensor | None) -> torch.Tensor:
        x = self.laterals[0](features[0])
        for lateral, feature in zip(self.laterals[1:], features[1:]):
            x = x + lateral(feature)
        if top is not None:
            x = x + F.interpolate(top, size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = self.crp(F.relu6(x))
        return self.adapt(x) if self.adapt is not None else x


class LightWeightRefineNet(nn.Module):
    """``feature_groups`` lists, deepest stride first, the indices of the encoder
    features that share a stride, e.g. ``((5, 4), (3, 2), (1,), (0,))``."""

    def __init__(self, feature_channels: Sequence[int], feature_groups: Sequence[Sequence[int]],
                 width: int = 256) -> None:
        super().__init__()
        self.feature_groups = tuple(tuple(group) for group in feature_groups)
        self.out_channels = width
        last = len(self.feature_groups) - 1
        self.stages = nn.ModuleList(
            RefineStage([feature_channels[i] for i in group], width,
                        depthwise_crp=(index == last), adapt=(index != last))
            for index, group in enumerate(self.feature_groups)
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        top: torch.Tensor | None = None
        for stage, group in zip(self.stages, self.feature_groups):
            top = stage([features[i] for i in group], top)
        assert top is not None
        return top
