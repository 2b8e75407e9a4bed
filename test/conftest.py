"""Shared fixtures: small random-weight models written as real weights files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hydranet_ros.inference.weights import ModelCard, save_weights
from hydranet_ros.model import HydraNet, ModelConfig
from hydranet_ros.model.presets import KITTI6


def make_card(num_classes: int = 6, **overrides) -> ModelCard:
    names = list(KITTI6.class_names) if num_classes == 6 else [f"class{i}" for i in range(num_classes)]
    palette = list(KITTI6.palette) if num_classes == 6 else [((37 * i) % 256, (91 * i) % 256, (151 * i) % 256)
                                                              for i in range(num_classes)]
    fields = dict(model=ModelConfig(num_classes=num_classes), class_names=names, palette=palette,
                  depth_range=KITTI6.depth_range, provenance={"source": "test fixture, random weights"})
    fields.update(overrides)
    return ModelCard(**fields)


def make_model(card: ModelCard, seed: int = 0) -> HydraNet:
    torch.manual_seed(seed)
    return HydraNet(card.model).eval()


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    """A 6-class KITTI-style weights file with seeded random weights."""
    card = make_card()
    path = tmp_path / "random_kitti6.safetensors"
    save_weights(path, make_model(card), card)
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """On a small shared machine several torch threads thrash: the training and
    benchmark tests ran 4-15x slower with two threads while other jobs ran."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
