"""Task heads: a depthwise 1x1 conv, ReLU6 and a 3x3 conv to the task's channels.

Heads are cheap by design; the encoder and decoder are shared by all of them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import conv1x1, conv3x3


class TaskHead(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pre = conv1x1(in_channels, in_channels, groups=in_channels)
        self.out = conv3x3(in_channels, out_channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu6(self.pre(x)))
