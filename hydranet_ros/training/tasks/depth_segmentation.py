"""The depth + segmentation HydraNet task (recipe ``task: depth_segmentation``, the
default): street or indoor datasets with depth and/or labels, the Light-Weight
RefineNet HydraNet, masked per-pixel losses, validation through the ``Predictor``."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import torch
from torch.utils.data import DataLoader

from ...inference.colour import colorize_depth, colormap_lut, palette_lut
from ...inference.predictor import Predictor
from ...inference.weights import DEPTH_SEGMENTATION, ModelCard
from ...model import HydraNet, ModelConfig
from ...offline.metrics import DepthMetrics, SegmentationMetrics
from ..config import Config
from ..distributed import SINGLE, Distributed
from ..losses import DepthTask, SegmentationTask, TaskLoss
from .datasets import build_recipe_datasets
from .model_init import init_model

DEPTH_ACTIVATION = "abs"  # what the card declares and the depth loss applies (the reference's choice)
SUMMARY_METRICS = ("miou", "pixel_accuracy", "rmse", "abs_rel", "delta1")
METRICS = ("miou", "pixel_accuracy", "rmse", "log_rmse", "abs_rel", "sq_rel", "delta1", "delta2", "delta3")


def build_datasets(config: Config) -> tuple[Any, Any | None]:
    from ..data import eval_transforms, train_transforms

    data = config["data"]
    return build_recipe_datasets(config, lambda settings: train_transforms(**settings),
                                 eval_transforms(**data["val_transform"]))


def build_model(config: Config, train_set: Any) -> tuple[HydraNet, str]:
    """The model for ``train_set``'s classes and a one-line description of its initialisation (for the card)."""
    m = config["model"]
    model_config = ModelConfig(num_classes=len(train_set.class_names), backbone=m["backbone"],
                               decoder_width=m["decoder_width"])
    return init_model(config, lambda encoder: HydraNet(model_config, encoder=encoder), DEPTH_SEGMENTATION)


def build_tasks(config: Config) -> list[TaskLoss]:
    losses = config["losses"]
    return [SegmentationTask("segm", ignore_index=losses["ignore_index"]),
            DepthTask(losses["depth"], "depth", activation=DEPTH_ACTIVATION,
                      berhu_threshold=losses["berhu_threshold"], silog_lambda=losses["silog_lambda"])]


def make_card(config: Config, model: HydraNet, dataset: Any, provenance: Mapping[str, Any]) -> ModelCard:
    return ModelCard(model=model.config, class_names=list(dataset.class_names),
                     palette=[tuple(int(v) for v in c) for c in dataset.palette],
                     depth_activation=DEPTH_ACTIVATION, depth_range=tuple(config["data"]["depth_range"]),
                     ignore_index=config["losses"]["ignore_index"], provenance=dict(provenance))


def evaluate(model: HydraNet, card: ModelCard, dataset: Any, config: Config, device: torch.device,
             sample_images: int = 0, dist: Distributed = SINGLE) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Metrics through the ``Predictor`` (the deployed path: upsample, abs, argmax),
    and up to ``sample_images`` (H*5, W, 3) uint8 panels: image, labels, predicted
    labels, depth, predicted depth. With several processes each evaluates its share and
    the confusion matrix and depth sums are added up: the metrics of the whole set."""
    # eager: validation runs the network being trained, in place; the CPU's auto (ONNX Runtime)
    # would export it again at every validation
    with _layout_kept(model):
        predictor = Predictor(model, card, device=device, backend="eager")
        return _evaluate(predictor, model, card, dataset, config, sample_images, dist)


@contextmanager
def _layout_kept(model: torch.nn.Module) -> Iterator[None]:
    """The predictor lays the weights out for inference (channels-last for eager on the CPU);
    training goes on in the layout it had, so that a run resumed from a checkpoint computes
    exactly what an uninterrupted one does (other kernels round differently)."""
    channels_last = any(p.dim() == 4 and not p.is_contiguous() for p in model.parameters())
    try:
        yield
    finally:
        model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _evaluate(predictor: Predictor, model: HydraNet, card: ModelCard, dataset: Any, config: Config,
              sample_images: int, dist: Distributed) -> tuple[dict[str, Any], list[torch.Tensor]]:
    data = config["data"]
    lo, hi = data["depth_range"]
    segm = SegmentationMetrics(card.model.num_classes, card.ignore_index, card.class_names)
    depth = DepthMetrics(min_depth=max(lo, 1e-3), max_depth=hi)
    palette = torch.from_numpy(palette_lut(card.palette))
    depth_lut = torch.from_numpy(colormap_lut(predictor.depth_colormap))
    panels: list[torch.Tensor] = []
    loader = DataLoader(dist.shard(dataset), batch_size=data["val_batch_size"], num_workers=data["num_workers"],
                        generator=torch.Generator().manual_seed(0))
    wanted = ("depth", "labels") + (("segm_colour", "depth_colour") if sample_images else ())
    for batch in loader:
        images = batch["image"].permute(0, 2, 3, 1)
        out = {k: v.cpu() for k, v in predictor.predict_batch(images, wanted).items()}
        for i in range(images.shape[0]):
            if batch["has_labels"][i]:
                segm.update(out["labels"][i], batch["labels"][i])
            if batch["has_depth"][i]:
                depth.update(out["depth"][i], batch["depth"][i])
            if len(panels) < sample_images:
                gt_labels = palette[batch["labels"][i].clamp(0, 255)]
                gt_depth = colorize_depth(batch["depth"][i], depth_lut, (lo, hi))
                panels.append(torch.cat([images[i], gt_labels, out["segm_colour"][i], gt_depth,
                                         out["depth_colour"][i]], dim=0))
    model.train()
    dist.sum_metrics(segm, depth)
    return {**segm.compute(), **depth.compute()}, panels
