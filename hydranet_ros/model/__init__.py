"""HydraNet: MobileNetV2 (or a torchvision backbone) -> Light-Weight RefineNet -> task heads."""
from .backbones import BACKBONES, build_encoder
from .hydranet import HydraNet, ModelConfig

__all__ = ["BACKBONES", "HydraNet", "ModelConfig", "build_encoder"]
