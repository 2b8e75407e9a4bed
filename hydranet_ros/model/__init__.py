"""HydraNet: MobileNetV2 (or a torchvision backbone) -> Light-Weight RefineNet -> task heads;
and the face-attribute HydraNet (ResNet -> age, gender and race heads)."""
from .backbones import BACKBONES, build_encoder
from .faces import FACE_BACKBONES, FaceHydraNet, FaceModelConfig
from .hydranet import HydraNet, ModelConfig

__all__ = ["BACKBONES", "FACE_BACKBONES", "FaceHydraNet", "FaceModelConfig", "HydraNet", "ModelConfig",
           "build_encoder"]
