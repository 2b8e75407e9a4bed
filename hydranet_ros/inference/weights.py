"""The weights file: safetensors tensors plus a JSON model card in its metadata.

safetensors holds no pickled code, so loading a file from the internet cannot
execute anything, and its header can be read without loading the tensors.
The model card is the one source of truth for class names, palette,
normalisation, output stride and depth units: every tool reads them from here.
Its ``task`` says which network the file holds: the depth + segmentation
HydraNet (the default, which older cards imply) or the face-attribute HydraNet.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

import torch

from ..common.atomic import atomic_write
from ..model import FaceHydraNet, FaceModelConfig, HydraNet, ModelConfig
from ..model.presets import IMAGENET_MEAN, IMAGENET_STD
from .integrity import CHECKSUM_KEY, non_finite_tensors, tensor_checksum

log = logging.getLogger(__name__)

CARD_KEY = "hydranet_model_card"
FORMAT_VERSION = 1
DEPTH_ACTIVATIONS = ("abs", "relu", "none")


class TaskKind(NamedTuple):
    """What a card's ``task`` means: how to rebuild its model, and how to name it to a
    user whose tool got the wrong kind of file."""

    config: type
    network: type
    what: str
    tools: str


DEPTH_SEGMENTATION, FACE_ATTRIBUTES = "depth_segmentation", "face_attributes"
TASKS: dict[str, TaskKind] = {
    DEPTH_SEGMENTATION: TaskKind(ModelConfig, HydraNet, "a depth + segmentation HydraNet",
                                 "hydranet_node, hydranet_replay, hydranet_bench or hydranet_export"),
    FACE_ATTRIBUTES: TaskKind(FaceModelConfig, FaceHydraNet, "a face-attribute (age, gender, race) model",
                              "hydranet_faces"),
}
AnyModelConfig = Union[ModelConfig, FaceModelConfig]
AnyModel = Union[HydraNet, FaceHydraNet]


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or does not fit its model card."""


@dataclass
class ModelCard:
    model: AnyModelConfig
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    output_stride: int = 4
    depth_unit: str = "m"
    # applied to the raw depth head output; the reference takes abs()
    depth_activation: str = "abs"
    depth_range: tuple[float, float] = (0.0, 80.0)
    ignore_index: int = 255
    # where the weights came from: source, licence, dataset, training run ...
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # which network ``model`` describes; a face card leaves the palette empty and the
    # depth fields at their defaults (it has no label or depth image)
    task: str = DEPTH_SEGMENTATION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        problems = []
        if self.task not in TASKS:
            raise WeightsError(f"model card task {self.task!r} is unknown; known: {', '.join(TASKS)}")
        if not isinstance(self.model, TASKS[self.task].config):
            problems.append(f"a {type(self.model).__name__} does not describe a {self.task} model")
        n = self.model.num_classes
        if len(self.class_names) != n:
            problems.append(f"{len(self.class_names)} class names for {n} classes")
        if len(self.palette) != n and (self.task == DEPTH_SEGMENTATION or self.palette):
            problems.append(f"{len(self.palette)} palette colours for {n} classes")
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.palette):
            problems.append("palette colours must be three integers in 0..255")
        if n > 255:
            problems.append("at most 255 classes fit a mono8 label image with 255 = unlabeled")
        for name in ("mean", "std", "depth_range"):
            values = getattr(self, name)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise WeightsError(f"invalid model card: {name} must hold finite numbers, got {list(values)}")
        for name in ("output_stride", "ignore_index"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise WeightsError(f"invalid model card: {name} must be an integer, got {value!r}")
        if self.output_stride < 1:
            problems.append(f"output_stride must be at least 1, got {self.output_stride}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            problems.append("mean and std need three values, std > 0")
        if self.depth_activation not in DEPTH_ACTIVATIONS:
            problems.append(f"depth_activation {self.depth_activation!r} not in {DEPTH_ACTIVATIONS}")
        if self.depth_unit != "m":
            problems.append(f"depth_unit must be 'm', got {self.depth_unit!r}")
        lo, hi = self.depth_range
        if not 0 <= lo < hi:
            problems.append(f"depth_range must satisfy 0 <= min < max, got {self.depth_range}")
        if problems:
            raise WeightsError("invalid model card: " + "; ".join(problems))

    def to_json(self) -> str:
        data = asdict(self)
        data["model"] = self.model.to_dict()
        if self.task == DEPTH_SEGMENTATION:
            # the default goes unwritten: a depth + segmentation card stays byte for byte
            # what earlier versions wrote, and those versions can still read it
            del data["task"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        """Parse and validate a card; anything that is not a well-formed card raises
        a ``WeightsError`` (never an AttributeError from a card that is JSON null)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise WeightsError(f"the model card must be a JSON object, got {_json_kind(data)}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise WeightsError(f"model card format {version} is not supported (expected {FORMAT_VERSION})")
        task = data.get("task", DEPTH_SEGMENTATION)
        if task not in TASKS:
            raise WeightsError(f"model card task {task!r} is not known to this version (known: {', '.join(TASKS)})")
        if "model" not in data:
            raise WeightsError("the model card has no 'model' field")
        try:
            data["model"] = TASKS[task].config.from_dict(data["model"])
        except (ValueError, TypeError) as exc:  # ConfigError names the field
            raise WeightsError(f"the model card's 'model' field cannot describe a network: {exc}") from None
        for key in ("class_names", "palette", "mean", "std", "depth_range"):
            if key in data and not isinstance(data[key], list):
                raise WeightsError(f"model card field {key!r} must be a list, got {_json_kind(data[key])}")
        if "provenance" in data and not isinstance(data["provenance"], dict):
            raise WeightsError(f"model card field 'provenance' must be an object, got {_json_kind(data['provenance'])}")
        if not all(isinstance(name, str) for name in data.get("class_names", [])):
            raise WeightsError("model card field 'class_names' must hold strings")
        if not all(isinstance(c, list) and all(isinstance(v, int) for v in c) for c in data.get("palette", [])):
            raise WeightsError("model card field 'palette' must hold [r, g, b] lists of integers")
        if "palette" in data:
            data["palette"] = [tuple(c) for c in data["palette"]]
        for key in ("mean", "std", "depth_range"):
            if key in data:
                data[key] = tuple(data[key])
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise WeightsError(f"unknown model card fields: {sorted(unknown)}")
        return cls(**data)


def _json_kind(value: Any) -> str:
    return "null" if value is None else {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a number ({value!r})" if isinstance(value, (int, float)) else type(value).__name__)


def save_weights(path: str | Path, model: AnyModel, card: ModelCard) -> None:
    """Write the model's tensors with the card and a checksum of the tensors (verified at load)."""
    from safetensors.torch import save_file

    if model.config != card.model:
        raise WeightsError(f"model config {model.config} does not match the card's {card.model}")
    # safetensors refuses shared or non-contiguous storage; clone makes each tensor its own
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    bad = non_finite_tensors(tensors)
    if bad:
        raise WeightsError(f"{path}: not saved: non-finite values (NaN or inf) in {_some(bad)}")
    metadata = {CARD_KEY: card.to_json(), CHECKSUM_KEY: tensor_checksum(tensors)}
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_card(path: str | Path) -> ModelCard:
    """The model card alone, without loading the tensors."""
    return _card_from_metadata(path, _metadata(_existing(path)))


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable safetensors weights file ({exc})") from exc


def _card_from_metadata(path: Path, metadata: dict[str, str]) -> ModelCard:
    if CARD_KEY not in metadata:
        raise WeightsError(f"{path}: has no HydraNet model card (was it made by hydranet_convert or hydranet_train?)")
    try:
        return ModelCard.from_json(metadata[CARD_KEY])
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path}: malformed model card ({exc})") from exc


def load_weights(path: str | Path, map_location: str | torch.device = "cpu",
                 task: str | None = DEPTH_SEGMENTATION) -> tuple[AnyModel, ModelCard]:
    """Build the model its card describes and load every tensor, strictly. ``task``
    is the kind of model the caller can use (None: any); another kind is refused
    with a message saying what the file holds and which tool runs it."""
    from safetensors.torch import load_file

    path = _existing(path)
    metadata = _metadata(path)
    card = _card_from_metadata(path, metadata)
    if task is not None and card.task != task:
        found = TASKS[card.task]
        raise WeightsError(f"{path}: holds {found.what} (model card task {card.task!r}), not {TASKS[task].what}; "
                           f"use it with {found.tools}")
    try:
        tensors = load_file(str(path), device=str(map_location))
    except Exception as exc:
        raise WeightsError(f"{path}: could not read tensors ({exc})") from exc
    verify_tensors(path, tensors, metadata.get(CHECKSUM_KEY))
    try:
        model = TASKS[card.task].network(card.model)
    except (ValueError, RuntimeError) as exc:  # the card's checks should have caught it; name the file anyway
        raise WeightsError(f"{path}: the model card's config cannot build a network ({exc})") from exc
    load_state_dict_strict(model, tensors, source=str(path))
    return model.eval(), card


def verify_tensors(path: Path, tensors: dict[str, torch.Tensor], checksum: str | None) -> None:
    """Refuse tensors that differ from what was saved (a flipped bit) or hold NaN/inf;
    a file from before checksums existed loads with a notice."""
    if checksum is None:
        log.warning("%s: has no tensor checksum (written by an earlier version); its tensors are loaded "
                    "unverified", path)
    elif tensor_checksum(tensors) != checksum:
        raise WeightsError(f"{path}: the tensors do not match the checksum written when the file was saved: "
                           "the file is corrupted (re-download or re-create it)")
    bad = non_finite_tensors(tensors)
    if bad:
        raise WeightsError(f"{path}: non-finite values (NaN or inf) in {_some(bad)}")


def _some(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more tensors" if len(names) > 5 else "")


def load_state_dict_strict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load or raise a ``WeightsError`` that lists missing, unexpected and mis-shaped keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mis_shaped = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected.keys() & tensors.keys() if tensors[k].shape != expected[k].shape]
    if missing or unexpected or mis_shaped:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise WeightsError(f"{source}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(tensors, strict=True)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    return path
