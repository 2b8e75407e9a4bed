"""hydranet_ros: joint depth and semantic segmentation (HydraNet) for ROS 2 and offline tools.

The public API (``from hydranet_ros import load_predictor``) is loaded on first use
(PEP 562): importing a light module such as ``hydranet_ros.messages.topics`` (the
launch files do) must not import torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {"Prediction": ".inference.predictor", "Predictor": ".inference.predictor",
        "load_predictor": ".inference.predictor"}

if TYPE_CHECKING:
    from .inference.predictor import Prediction, Predictor, load_predictor  # noqa: F401

__all__ = ["Prediction", "Predictor", "__version__", "load_predictor"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name], __name__), name)
    globals()[name] = value   # later lookups skip this function
    return value
