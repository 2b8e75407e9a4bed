"""Where a model's starting weights come from, for any task (the recipe's ``init``
section): a weights file or a reference checkpoint whose tensors fit, else a
torchvision ImageNet encoder when asked for, else random ("scratch")."""
from __future__ import annotations

import warnings
from typing import Callable, Mapping, TypeVar

import torch
from torch import nn

from ...inference.weights import DEPTH_SEGMENTATION, WeightsError, load_weights
from ...model import build_encoder
from ...model.reference_checkpoint import convert_reference_state_dict, load_reference_state_dict
from ..config import Config
from ..tasks import PROG, TrainingError

M = TypeVar("M", bound=nn.Module)


def init_model(config: Config, build: Callable[[nn.Module | None], M], task: str) -> tuple[M, str]:
    """``build(encoder)`` makes the task's model (``None``: with a random encoder of
    its own); returns it initialised as ``config["init"]`` says, and a one-line
    description of that for the model card."""
    init, backbone = config["init"], config["model"]["backbone"]
    source: str | None = None
    if init["reference_checkpoint"]:
        if task != DEPTH_SEGMENTATION:
            raise TrainingError(f"init.reference_checkpoint holds depth + segmentation weights; a {task} recipe "
                                "starts from init.weights (a file of its own task) or init.imagenet")
        source = str(init["reference_checkpoint"])
        tensors, _ = convert_reference_state_dict(load_reference_state_dict(source))
    elif init["weights"]:
        source = str(init["weights"])
        tensors = load_weights(source, task=task)[0].state_dict()
    if source is not None:
        model = build(None)
        fresh = load_matching(model, tensors, source)
        note = f"; re-initialised {', '.join(sorted({k.rsplit('.', 1)[0] for k in fresh}))}" if fresh else ""
        print(f"{PROG}: initialised from {source}{note}")
        return model, f"{source}{note}"
    encoder = imagenet_encoder(backbone, init["on_missing_weights"]) if init["imagenet"] else None
    description = f"ImageNet {backbone} encoder (torchvision)" if encoder is not None else "scratch"
    return build(encoder), description


def imagenet_encoder(backbone: str, on_missing: str) -> nn.Module | None:
    """The torchvision ImageNet encoder, or None (scratch) with a message saying what is missing."""
    if backbone == "mobilenet_v2":
        problem = ("backbone mobilenet_v2 (the reference encoder) has no ImageNet weights in torchvision; "
                   "use model.backbone: tv_mobilenet_v2 for an ImageNet start")
    else:
        try:
            return build_encoder(backbone, "DEFAULT")
        except Exception as exc:  # urllib, hash and unpickling errors all mean "not available"
            problem = (f"ImageNet weights for {backbone} ({_weights_file(backbone)}) are not in the torch hub cache "
                       f"({torch.hub.get_dir()}/checkpoints) and could not be downloaded ({type(exc).__name__}: {exc})")
    if on_missing == "stop":
        raise TrainingError(problem + "; set init.on_missing_weights: scratch to train from scratch")
    warnings.warn(problem + ": training the encoder from scratch", RuntimeWarning, stacklevel=2)
    return None


def _weights_file(backbone: str) -> str:
    import torchvision

    name = "mobilenet_v2" if backbone == "tv_mobilenet_v2" else backbone
    return torchvision.models.get_model_weights(name).DEFAULT.url.rsplit("/", 1)[-1]


def load_matching(model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """Load ``tensors`` into ``model``. Task heads whose shape differs (another class
    count) or that the file lacks keep their fresh initialisation; anything else
    that does not fit is an error. Returns the re-initialised keys."""
    expected = model.state_dict()
    fits = {k: v for k, v in tensors.items() if k in expected and v.shape == expected[k].shape}
    fresh = sorted(set(expected) - set(fits))
    not_heads = [k for k in fresh if not k.startswith("heads.")]
    if not_heads:
        raise WeightsError(f"{source}: does not fit the recipe's model (model.backbone/decoder_width?): "
                           f"{len(not_heads)} encoder/decoder tensors missing or mis-shaped, e.g. {not_heads[:3]}")
    model.load_state_dict({**expected, **fits})
    return fresh
