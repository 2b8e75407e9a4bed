"""The face-attribute HydraNet task (recipe ``task: face_attributes``): UTKFace
crops, a ResNet with age, gender and race heads, L1 + binary cross-entropy (on
logits) + cross-entropy, validation through the ``FacePredictor``."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch.utils.data import DataLoader

from ...inference.face_predictor import FacePredictor
from ...inference.weights import FACE_ATTRIBUTES, ModelCard
from ...model import FACE_BACKBONES, FaceHydraNet, FaceModelConfig
from ...offline.metrics import FaceAttributeMetrics
from ..config import Config
from ..distributed import SINGLE, Distributed
from ..losses import PerImageTask, TaskLoss
from ..tasks import TrainingError
from .datasets import JointDataset, build_recipe_datasets
from .model_init import init_model

SUMMARY_METRICS = ("age_mae", "gender_accuracy", "race_accuracy")
METRICS = SUMMARY_METRICS


def build_datasets(config: Config) -> tuple[Any, Any | None]:
    from ..data import face_train_transforms

    # the loader resizes every face to data.options.image_size; validation needs nothing more
    return build_recipe_datasets(config, lambda settings: face_train_transforms(**settings), None)


def build_model(config: Config, train_set: Any) -> tuple[FaceHydraNet, str]:
    backbone = config["model"]["backbone"]
    if backbone not in FACE_BACKBONES:
        raise TrainingError(f"model.backbone {backbone!r}: the face model takes one of {', '.join(FACE_BACKBONES)}")
    first = train_set.datasets[0] if isinstance(train_set, JointDataset) else train_set
    face = config["face"]
    model_config = FaceModelConfig(race_classes=len(train_set.class_names), backbone=backbone,
                                   head_width=face["head_width"], image_size=tuple(first.image_size),
                                   age_mean=float(face["age_mean"]), age_std=float(face["age_std"]))
    return init_model(config, lambda encoder: FaceHydraNet(model_config, encoder=encoder), FACE_ATTRIBUTES)


def build_tasks(config: Config) -> list[TaskLoss]:
    return [PerImageTask("age", "l1"), PerImageTask("gender", "binary_cross_entropy"),
            PerImageTask("race", "cross_entropy")]


def make_card(config: Config, model: FaceHydraNet, dataset: Any, provenance: Mapping[str, Any]) -> ModelCard:
    return ModelCard(task=FACE_ATTRIBUTES, model=model.config, class_names=list(dataset.class_names), palette=[],
                     provenance=dict(provenance))


def evaluate(model: FaceHydraNet, card: ModelCard, dataset: Any, config: Config, device: torch.device,
             sample_images: int = 0, dist: Distributed = SINGLE) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Metrics through the ``FacePredictor`` (what hydranet_faces reports), summed over the
    processes' shares of ``dataset``. No image panels: the scalars are the whole result
    (``sample_images`` is not used)."""
    predictor = FacePredictor(model, card, device=device)
    metrics = FaceAttributeMetrics(card.class_names)
    loader = DataLoader(dist.shard(dataset), batch_size=config["data"]["val_batch_size"],
                        num_workers=config["data"]["num_workers"])
    for batch in loader:
        out = {k: v.cpu() for k, v in predictor.predict_batch(batch["image"]).items()}
        metrics.update(out["age"], (out["female_probability"] >= 0.5).long(), out["race_probabilities"].argmax(1),
                       batch["age"], batch["gender"].long(), batch["race"])
    model.train()
    dist.sum_metrics(metrics)
    return metrics.compute(), []
