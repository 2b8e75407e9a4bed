"""Building blocks shared by the encoder and the decoder.

Layer shapes and orderings follow the reference implementation
(DrSleep/multi-task-refinenet, ``utils/layer_factory.py``) so that its
published checkpoints map one-to-one onto our modules.
"""
from __future__ import annotations

import torch
from torch import nn


def conv1x1(in_ch: int, out_ch: int, bias: bool = False, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=1, padding=0, bias=bias, groups=groups)


def conv3x3(in_ch: int, out_ch: int, bias: bool = False, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=bias, groups=groups)


def conv_bn_relu6(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                  groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ ReLU6); indices 0 and 1 are what checkpoints name."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class ChainedResidualPooling(nn.Module):
    """Light-Weight RefineNet's CRP block: a chain of 5x5 max-pool + 1x1 conv whose
    outputs are all summed onto the input, which widens the receptive field cheaply.

    ``depthwise`` makes each 1x1 conv per-channel, as the reference does for the
    highest-resolution block to keep it cheap.
    """

    def __init__(self, channels: int, stages: int = 4, depthwise: bool = False) -> None:
        super().__init__()
        groups = channels if depthwise else 1
        self.pool = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)
        self.convs = nn.ModuleList(conv1x1(channels, channels, groups=groups) for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x
        for conv in self.convs:
            top = conv(self.pool(top))
            x = top + x
        return x
