"""An encoder's starting weights from a file: one path for every source.

``model_init.initial_encoder`` uses it for the recipe's ``model.encoder_weights`` (a
local file, no network) and for ``init.imagenet`` (torchvision's download, or its cache):

1. ``read_encoder_file`` picks a reader by the file's suffix (``READERS``); a reader returns
   the file's tensors keyed by our encoder's names or by torchvision's. ``.pth``/``.pt`` load
   with ``weights_only=True`` (no pickled code runs), ``.safetensors`` hold no code, and a
   ``.tflite`` ImageNet MobileNetV2 is converted by ``training.encoders.tflite_mobilenet``.
2. ``encoder_names`` maps torchvision's names onto the encoder ``model.backbone`` builds (ours
   keep the reference implementation's names: ``layer1`` ... ``layer8`` for MobileNetV2).
3. ``load_into`` loads them, refuses a file that does not fit (naming it and a tensor) and
   says which tensors came from the file and which did not.

``load_encoder_state(path, backbone)`` is steps 1 and 2 for other callers.

torchvision's MobileNetV2 has no 1x1 expansion conv in its first block (expansion factor 1);
the reference encoder has one. It starts as the identity, with batch-norm statistics measured
on a few rendered frames: exact in eval mode, and close to it in training mode, where batch
norm uses each batch's own statistics (``training.encoders`` does the same for ``.tflite``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from ...inference.weights import WeightsError
from ...model.mobilenet import MOBILENET_V2_SETTINGS, MobileNetV2Encoder

Reader = Callable[[Path], dict[str, torch.Tensor]]
# the reference block whose expansion conv torchvision lacks
IDENTITY_EXPANSION = "layer2.0.output.0"


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("expected a state dict of tensors")
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _read_tflite(path: Path) -> dict[str, torch.Tensor]:
    from ..encoders.tflite_mobilenet import tflite_encoder_state

    return tflite_encoder_state(path)


READERS: dict[str, Reader] = {".pth": _read_torch, ".pt": _read_torch, ".safetensors": _read_safetensors,
                              ".tflite": _read_tflite}


def read_encoder_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors in ``path``, read by its suffix; WeightsError naming the file otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"encoder weights file {str(path)!r} not found")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise WeightsError(f"encoder weights file {str(path)!r}: unknown format {path.suffix!r}; "
                           f"use {', '.join(READERS)}")
    try:
        tensors = reader(path)
    except WeightsError:
        raise
    except Exception as exc:  # truncated or foreign files raise many error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"encoder weights file {str(path)!r} is not readable ({first})") from None
    # DataParallel / our own model's prefixes
    return {re.sub(r"^(module\.)?(encoder\.)?", "", k): v for k, v in tensors.items()}


def _mobilenet_blocks() -> list[str]:
    """Our name of torchvision's ``features.i`` for i = 1 .. 17 (list index i - 1)."""
    return [f"layer{layer}.{repeat}" for layer, (_, _, n, _) in enumerate(MOBILENET_V2_SETTINGS, start=2)
            for repeat in range(n)]


_BLOCKS = _mobilenet_blocks()
# torchvision's inverted-residual parts -> the reference's (expanding blocks, then block 1)
_PARTS = {"conv.0.0": "output.0.0", "conv.0.1": "output.0.1", "conv.1.0": "output.1.0", "conv.1.1": "output.1.1",
          "conv.2": "output.2.0", "conv.3": "output.2.1"}
_FIRST_BLOCK_PARTS = {"conv.0.0": "output.1.0", "conv.0.1": "output.1.1", "conv.1": "output.2.0",
                      "conv.2": "output.2.1"}


def _torchvision_to_reference_mobilenet(key: str) -> str | None:
    match = re.fullmatch(r"features\.(\d+)\.(.+)\.(\w+)", key)
    if not match:
        return None
    index, part, leaf = int(match.group(1)), match.group(2), match.group(3)
    if index == 0:
        return f"layer1.{part}.{leaf}" if part in ("0", "1") else None
    if not 1 <= index <= len(_BLOCKS):
        return None  # features.18 (conv to 1280) belongs to the classifier
    ours = (_FIRST_BLOCK_PARTS if index == 1 else _PARTS).get(part)
    return f"{_BLOCKS[index - 1]}.{ours}.{leaf}" if ours else None


def _torchvision_to_resnet(key: str) -> str | None:
    for theirs, ours in (("conv1.", "stem.0."), ("bn1.", "stem.1.")):
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return key if key.startswith("layer") else None


# torchvision's names -> the names of the encoder model.backbone builds
RENAMES: dict[str, Callable[[str], str | None]] = {
    "mobilenet_v2": _torchvision_to_reference_mobilenet,
    "tv_mobilenet_v2": lambda key: key if re.match(r"features\.(\d|1[0-7])\.", key) else None,
    "resnet18": _torchvision_to_resnet, "resnet34": _torchvision_to_resnet, "resnet50": _torchvision_to_resnet,
}


def encoder_names(tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                  backbone: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(the file's tensors under our encoder's names, the file's keys with no place in it)."""
    rename = RENAMES.get(backbone, lambda key: None)
    mapped: dict[str, torch.Tensor] = {}
    unused = []
    for key, value in tensors.items():
        ours = key if key in expected else rename(key)
        if ours is None or ours not in expected:
            unused.append(key)
        else:
            mapped[ours] = value
    return mapped, unused


def load_encoder_state(path: str | Path, backbone: str = "mobilenet_v2") -> dict[str, torch.Tensor]:
    """The tensors of the encoder file ``path`` under the names of our ``backbone`` encoder
    (those it has; see ``init_encoder`` for the checks and the report)."""
    from ...model import build_encoder

    return encoder_names(read_encoder_file(path), build_encoder(backbone).state_dict(), backbone)[0]


def encoder_from_file(path: str | Path, backbone: str) -> tuple[nn.Module, str]:
    """A ``backbone`` encoder loaded from the file ``path`` (``model.encoder_weights``) and the
    report line; WeightsError naming the file when it is not such an encoder."""
    from ...model import build_encoder

    encoder = build_encoder(backbone)
    return encoder, load_into(encoder, read_encoder_file(path), backbone, str(path))


def load_into(encoder: nn.Module, tensors: Mapping[str, torch.Tensor], backbone: str, source: str) -> str:
    """Load ``tensors`` (a file's, any naming) into ``encoder``; returns the report line.
    WeightsError naming ``source`` when they do not fit."""
    expected = encoder.state_dict()
    mapped, unused = encoder_names(tensors, expected, backbone)
    if not mapped:
        example = next(iter(tensors), "nothing")
        raise WeightsError(f"{source}: none of its {len(tensors)} tensors (e.g. {example!r}) belongs to a "
                           f"{backbone} encoder; is it the file for model.backbone {backbone}?")
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise WeightsError(f"{source}: tensor for {key} has shape {list(value.shape)}, the {backbone} encoder's "
                               f"is {list(expected[key].shape)}; is it the file for model.backbone {backbone}?")
    identity = backbone == "mobilenet_v2" and not any(k.startswith(IDENTITY_EXPANSION + ".") for k in mapped)
    missing = [k for k in expected if k not in mapped and not k.endswith("num_batches_tracked")
               and not (identity and k.startswith(IDENTITY_EXPANSION + "."))]
    if missing:
        raise WeightsError(f"{source}: lacks {len(missing)} of the {backbone} encoder's tensors, e.g. "
                           f"{missing[:3]}; is it a whole {backbone} encoder?")
    encoder.load_state_dict({**expected, **{k: v.to(expected[k].dtype) for k, v in mapped.items()}})
    report = f"encoder {backbone} from {source}: loaded {len(mapped)} of the encoder's {len(expected)} tensors"
    if identity:
        _identity_expansion(encoder)
        report += f"; {IDENTITY_EXPANSION} set to pass its input through (torchvision's first block has none)"
    if unused:
        report += f"; not used from the file: {_summary(unused)}"
    return report


def _identity_expansion(encoder: nn.Module) -> None:
    from ..encoders.tflite_mobilenet import synthetic_calibration_frames

    assert isinstance(encoder, MobileNetV2Encoder)
    unit = encoder.layer2[0].output[0]
    conv, bn = unit[0], unit[1]
    with torch.no_grad():
        conv.weight.copy_(torch.eye(conv.out_channels)[:, :, None, None])
        features = encoder.layer1.eval()(synthetic_calibration_frames())
        encoder.layer1.train()
        mean, var = features.mean((0, 2, 3)), features.var((0, 2, 3))
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_((var + bn.eps).sqrt())
        bn.bias.copy_(mean)


def _summary(keys: list[str]) -> str:
    """``features.18.0.weight, features.18.1.bias, classifier.1.weight`` -> ``features.18.*, classifier.*``."""
    groups: list[str] = []
    for key in keys:
        parts = key.split(".")
        group = ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
        if f"{group}.*" not in groups:
            groups.append(f"{group}.*")
    return ", ".join(groups)


def torchvision_imagenet(backbone: str) -> tuple[dict[str, torch.Tensor], str]:
    """torchvision's ImageNet weights for ``backbone`` (from the torch hub cache, else
    downloaded) and the file's name; raises whatever the download raises."""
    import torchvision

    name = "mobilenet_v2" if backbone.endswith("mobilenet_v2") else backbone
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return weights.get_state_dict(progress=False, map_location="cpu", weights_only=True), imagenet_file(backbone)


def imagenet_file(backbone: str) -> str:
    """The file name of torchvision's ImageNet weights for ``backbone``."""
    import torchvision

    name = "mobilenet_v2" if backbone.endswith("mobilenet_v2") else backbone
    return torchvision.models.get_model_weights(name).DEFAULT.url.rsplit("/", 1)[-1]
