"""Face attributes from RGB face crops: the one path shared by training validation
and ``hydranet_faces``, so that validation measures what the command reports.

Images are resized on the host exactly as the UTKFace loader resizes them for
training, then normalised with the card's mean/std (``frame_network.normalise``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..common.image_files import image_tensor, resize_rgb
from ..model import FaceHydraNet
from ..model.faces import GENDER_NAMES
from .device import resolve_device
from .frame_network import normalise
from .predictor import check_image
from .weights import FACE_ATTRIBUTES, ModelCard, WeightsError, load_weights


@dataclass
class FacePrediction:
    age: float                 # years
    gender: str                # "male" or "female"
    gender_probability: float  # of the gender given
    race: str
    race_probability: float    # of the race given
    race_probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FacePredictor:
    def __init__(self, model: FaceHydraNet, card: ModelCard, device: str | torch.device = "auto") -> None:
        if card.task != FACE_ATTRIBUTES:
            raise WeightsError(f"the model card describes a {card.task} model, not a face-attribute model")
        self.device = resolve_device(device)
        self.card = card
        self.image_size: tuple[int, int] = tuple(card.model.image_size)  # type: ignore[union-attr]
        self.module = model.eval().to(self.device)

    @torch.inference_mode()
    def predict_batch(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) uint8 at the card's image size -> device tensors ``age`` (N,)
        years, ``female_probability`` (N,) and ``race_probabilities`` (N, classes)."""
        if tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(f"expected images of {self.image_size[0]}x{self.image_size[1]} (height x width), "
                             f"got {tuple(images.shape)}; predict() resizes")
        raw = self.module(normalise(images.to(self.device), self.card.mean, self.card.std))
        return {"age": raw["age"].float().clamp_min(0.0),  # an age below 0 only adds error
                "female_probability": torch.sigmoid(raw["gender"].float()),
                "race_probabilities": torch.softmax(raw["race"].float(), dim=1)}

    def predict(self, images: Sequence[np.ndarray]) -> list[FacePrediction]:
        """uint8 (H, W, 3) RGB face crops of any size -> one FacePrediction each."""
        for image in images:
            check_image(image)
        batch = torch.stack([image_tensor(resize_rgb(image, self.image_size)) for image in images])
        out = {k: v.cpu() for k, v in self.predict_batch(batch).items()}
        results = []
        for age, female, races in zip(out["age"].tolist(), out["female_probability"].tolist(),
                                      out["race_probabilities"].tolist()):
            race = int(np.argmax(races))
            is_female = female >= 0.5
            results.append(FacePrediction(
                age=age, gender=GENDER_NAMES[int(is_female)], gender_probability=female if is_female else 1 - female,
                race=self.card.class_names[race], race_probability=races[race],
                race_probabilities=dict(zip(self.card.class_names, races))))
        return results


def load_face_predictor(path: str | Path, device: str = "auto") -> FacePredictor:
    model, card = load_weights(path, task=FACE_ATTRIBUTES)
    return FacePredictor(model, card, device=device)
