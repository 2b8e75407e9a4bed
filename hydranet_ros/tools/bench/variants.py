"""The networks the benchmark compares, and the naive end-to-end baseline."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ...inference.colour import palette_lut
from ...inference.predictor import apply_depth_activation
from ...inference.weights import ModelCard
from ...model import HydraNet, ModelConfig
from ...model.presets import KITTI6

VARIANTS = ("segm", "depth", "stacked", "hydranet", "naive")
# The networks each variant runs, one after the other ("hydranet": both heads).
VARIANT_TASKS = {"segm": ("segm",), "depth": ("depth",), "stacked": ("segm", "depth"),
                 "hydranet": ("hydranet",), "naive": ("hydranet",)}
# What each network's end-to-end run returns: what the node publishes for it.
TASK_OUTPUTS = {"segm": ("labels", "overlay"), "depth": ("depth",), "hydranet": ("depth", "labels", "overlay")}


def single_task(model: HydraNet, task: str) -> HydraNet:
    """A copy of ``model`` with only the ``task`` head: the single-task network with
    the same encoder and decoder. (Its ``config`` still lists every head; it is
    only for measuring, never saved.)"""
    if task not in model.heads:
        raise ValueError(f"unknown task {task!r}; the model has heads {', '.join(model.heads)}")
    single = copy.deepcopy(model)
    single.heads = nn.ModuleDict({task: single.heads[task]})
    return single


def random_model(num_classes: int = len(KITTI6.class_names)) -> tuple[HydraNet, ModelCard]:
    """Seeded random weights with a KITTI-style card: timings do not depend on the values."""
    torch.manual_seed(0)
    card = ModelCard(model=ModelConfig(num_classes=num_classes), class_names=list(KITTI6.class_names),
                     palette=list(KITTI6.palette), depth_range=KITTI6.depth_range,
                     provenance={"source": "hydranet_bench, random weights"})
    return HydraNet(card.model).eval(), card


class NaivePipeline:
    """HydraNet end to end the tutorial way, deliberately: the fast path's baseline.
    Pre- and post-processing happen on the CPU in numpy/OpenCV, the network in fp32
    without channels-last, raw outputs are copied back before upsampling."""

    def __init__(self, model: HydraNet, card: ModelCard, device: torch.device, overlay_alpha: float = 0.5) -> None:
        self.model = copy.deepcopy(model).float().eval().to(device)
        self.device = device
        self.mean = np.asarray(card.mean, dtype=np.float32)
        self.std = np.asarray(card.std, dtype=np.float32)
        self.palette = palette_lut(card.palette)
        self.alpha = overlay_alpha
        self.depth_activation = card.depth_activation

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import cv2

        height, width = image.shape[:2]
        x = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)
        raw = {name: value[0].cpu().numpy() for name, value in self.model(x).items()}
        depth = cv2.resize(raw["depth"][0], (width, height), interpolation=cv2.INTER_LINEAR)
        depth = apply_depth_activation(torch.from_numpy(depth), self.depth_activation).numpy()
        logits = cv2.resize(raw["segm"].transpose(1, 2, 0), (width, height), interpolation=cv2.INTER_LINEAR)
        labels = (logits.argmax(axis=2) if logits.ndim == 3 else np.zeros((height, width))).astype(np.uint8)
        colours = self.palette[labels]
        overlay = np.round(image * (1.0 - self.alpha) + colours * self.alpha).astype(np.uint8)
        return depth, labels, overlay
