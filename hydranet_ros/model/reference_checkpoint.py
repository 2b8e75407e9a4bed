"""Reading the reference implementation's checkpoints (DrSleep/multi-task-refinenet).

Their state dicts use flat names (``conv8``, ``crp4.0.1_outvar_dimred``,
``pre_segm`` ...). We map each name onto our encoder/decoder/heads modules with
an explicit table, and refuse anything that does not map completely.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..model import ModelConfig

# reference decoder module -> (our stage index, what it is in the stage)
_LATERALS = {"conv8": (0, 0), "conv7": (0, 1), "conv6": (1, 0), "conv5": (1, 1), "conv4": (2, 0), "conv3": (3, 0)}
_CRP = {"crp4": 0, "crp3": 1, "crp2": 2, "crp1": 3}
_ADAPT = {"conv_adapt4": 0, "conv_adapt3": 1, "conv_adapt2": 2}
_HEADS = {"segm": "segm", "depth": "depth", "normal": "normals"}


def map_reference_key(key: str) -> str:
    """Our state-dict key for one reference key; ``KeyError`` if it has none."""
    if re.match(r"layer[1-8]\.", key):
        return f"encoder.{key}"
    name, _, rest = key.partition(".")
    if name in _LATERALS:
        stage, index = _LATERALS[name]
        return f"decoder.stages.{stage}.laterals.{index}.{rest}"
    if name in _ADAPT:
        return f"decoder.stages.{_ADAPT[name]}.adapt.{rest}"
    if name in _CRP:
        match = re.fullmatch(r"0\.(\d+)_outvar_dimred\.(\w+)", rest)
        if match:
            return f"decoder.stages.{_CRP[name]}.crp.convs.{int(match.group(1)) - 1}.{match.group(2)}"
    if name.startswith("pre_") and name[4:] in _HEADS:
        return f"heads.{_HEADS[name[4:]]}.pre.{rest}"
    if name in _HEADS:
        return f"heads.{_HEADS[name]}.out.{rest}"
    raise KeyError(f"no counterpart for reference key {key!r}")


def load_reference_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a reference ``.ckpt`` (loaded without unpickling code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict with a 'state_dict' of tensors")
    odd = [k for k in state if not isinstance(k, str)]
    if odd:
        raise ValueError(f"{path}: state dict keys must be parameter names (strings), found {odd[:3]!r}")
    # checkpoints saved from nn.DataParallel prefix every key with "module."
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_reference_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """Map a reference state dict to ours and infer the model config from it."""
    if "segm.weight" not in state or "depth.weight" not in state:
        raise ValueError("not a reference HydraNet state dict: 'segm.weight' or 'depth.weight' is missing")
    for key in ("segm.weight", "depth.weight", "normal.weight"):
        # a head's conv weight is (out, in, k, k); its first dimension is the class count
        if key in state and state[key].dim() != 4:
            raise ValueError(f"reference key {key!r} should be a 4-d conv weight, "
                             f"got shape {tuple(state[key].shape)}")
    extra = {"normals": int(state["normal.weight"].shape[0])} if "normal.weight" in state else {}
    config = ModelConfig(num_classes=int(state["segm.weight"].shape[0]), extra_heads=extra)
    converted: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        try:
            converted[map_reference_key(key)] = value
        except KeyError:
            unmapped.append(key)
    if unmapped:
        raise ValueError(f"reference state dict has {len(unmapped)} keys with no counterpart, "
                         f"e.g. {unmapped[:5]}")
    return converted, config


def read_reference_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """A reference ``.ckpt`` converted to our key names, and its model config; every
    ValueError names the file (the conversion's own messages name only the key)."""
    state = load_reference_state_dict(path)
    try:
        return convert_reference_state_dict(state)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
