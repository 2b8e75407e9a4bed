"""hydranet_ros: joint depth and semantic segmentation (HydraNet) for ROS 2 and offline tools."""
from __future__ import annotations

__version__ = "0.1.0"

from .inference.predictor import Prediction, Predictor, load_predictor  # noqa: E402

__all__ = ["Prediction", "Predictor", "__version__", "load_predictor"]
