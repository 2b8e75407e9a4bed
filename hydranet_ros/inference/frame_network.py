"""What every backend runs: a camera frame's channel order to RGB, normalisation and
the network, as one module.

Keeping the preprocessing inside the module lets the backends that compile or
capture take it with them: torch.compile fuses it into the first convolution's
input, and a CUDA graph replays it from the uploaded uint8 frame, so the upload
lands directly in the graph's input and nothing is copied into it afterwards.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .colour import to_rgb

RawOutputs = dict[str, torch.Tensor]


def normalise(images: torch.Tensor, mean: Sequence[float] | torch.Tensor,
              std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> float32 ``(x / 255 - mean) / std``, the model's input.
    Training calls this too, so it sees exactly what the predictor feeds the model."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected an (N, 3, H, W) image batch, got shape {tuple(images.shape)}")
    m = torch.as_tensor(mean, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.as_tensor(std, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (images.float() / 255.0 - m) / s


class FrameNetwork(nn.Module):
    """forward(images, channels): (N, H, W, C) uint8 frames in ``channels`` order
    (``colour.CHANNEL_ORDERS``) on the model's device -> the raw head outputs.
    ``prepare`` alone gives the normalised (N, 3, H, W) input in the model's dtype
    and memory format (what an exported ONNX graph takes)."""

    def __init__(self, module: nn.Module, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype,
                 memory_format: torch.memory_format, device: torch.device) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype
        self.memory_format = memory_format
        # buffers: on the device once, not uploaded with every frame
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32, device=device), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32, device=device), persistent=False)

    def set_memory_format(self, memory_format: torch.memory_format) -> None:
        """Move the module's weights (and the prepared input) to ``memory_format``."""
        if self.module is not None:
            self.module.to(memory_format=memory_format)
        self.memory_format = memory_format

    def prepare(self, images: torch.Tensor, channels: str = "rgb") -> torch.Tensor:
        x = normalise(to_rgb(images, channels).permute(0, 3, 1, 2), self.mean, self.std)
        return x.to(dtype=self.dtype).contiguous(memory_format=self.memory_format)

    def forward(self, images: torch.Tensor, channels: str = "rgb") -> RawOutputs:
        return self.module(self.prepare(images, channels))
