"""Where a model's starting weights come from, for any task (the recipe's ``init``
section and ``model.encoder_weights``): a weights file or a reference checkpoint whose
tensors fit, else an encoder file (``encoder_files``: a local file, or torchvision's
ImageNet download when ``init.imagenet`` asks for it), else random ("scratch")."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Mapping, TypeVar

import torch
from torch import nn

from ...inference.weights import DEPTH_SEGMENTATION, WeightsError, load_weights
from ...model import build_encoder
from ...model.reference_checkpoint import read_reference_checkpoint
from ..config import Config
from ..tasks import PROG, TrainingError
from .encoder_files import encoder_from_file, imagenet_file, load_into, torchvision_imagenet

M = TypeVar("M", bound=nn.Module)


def init_model(config: Config, build: Callable[[nn.Module | None], M], task: str) -> tuple[M, str]:
    """``build(encoder)`` makes the task's model (``None``: with a random encoder of
    its own); returns it initialised as ``config["init"]`` says, and a one-line
    description of that for the model card."""
    init = config["init"]
    source: str | None = None
    if init["reference_checkpoint"]:
        if task != DEPTH_SEGMENTATION:
            raise TrainingError(f"init.reference_checkpoint holds depth + segmentation weights; a {task} recipe "
                                "starts from init.weights (a file of its own task) or init.imagenet")
        source = str(init["reference_checkpoint"])
        tensors, _ = read_reference_checkpoint(source)
    elif init["weights"]:
        source = str(init["weights"])
        tensors = load_weights(source, task=task)[0].state_dict()
    if source is not None:
        model = build(None)
        fresh = load_matching(model, tensors, source)
        note = f"; re-initialised {', '.join(sorted({k.rsplit('.', 1)[0] for k in fresh}))}" if fresh else ""
        print(f"{PROG}: initialised from {source}{note}")
        return model, f"{source}{note}"
    encoder, description = initial_encoder(config)
    return build(encoder), description


def initial_encoder(config: Config) -> tuple[nn.Module | None, str]:
    """The encoder a recipe starts from (None: the model's own random one) and its description.

    ``model.encoder_weights`` (a local file) comes first; else ``init.imagenet`` takes
    torchvision's ImageNet file from the torch hub cache or the network. Both load through
    ``encoder_files.load_into``, which names what was loaded and what was not. A file that is
    missing or does not fit stops the run; an unavailable download follows
    ``init.on_missing_weights``."""
    backbone, path = config["model"]["backbone"], config["model"]["encoder_weights"]
    if path:
        encoder, report = encoder_from_file(path, backbone)
        print(f"{PROG}: {report}")
        return encoder, f"{backbone} encoder from {Path(path).name}"
    if not config["init"]["imagenet"]:
        return None, "scratch"
    try:
        tensors, name = torchvision_imagenet(backbone)
    except Exception as exc:  # urllib, hash and unpickling errors all mean "not available"
        return missing_imagenet(backbone, exc, config["init"]["on_missing_weights"]), "scratch"
    encoder, source = build_encoder(backbone), f"torchvision's ImageNet {name}"
    print(f"{PROG}: {load_into(encoder, tensors, backbone, source)}")
    return encoder, f"ImageNet {backbone} encoder (torchvision {name})"


def missing_imagenet(backbone: str, error: BaseException, on_missing: str) -> None:
    """Say that torchvision's ImageNet file could not be had; stop, or go on from scratch."""
    name = imagenet_file(backbone)
    problem = (f"ImageNet weights for {backbone} ({name}) are not in the torch hub cache "
               f"({torch.hub.get_dir()}/checkpoints) and could not be downloaded ({type(error).__name__}: {error}); "
               f"copy {name} there or set model.encoder_weights to its path")
    if on_missing == "stop":
        raise TrainingError(problem + "; set init.on_missing_weights: scratch to train from scratch")
    warnings.warn(problem + ": training the encoder from scratch", RuntimeWarning, stacklevel=3)
    return None


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
