"""Integrity of a weights file's tensors: a checksum written at save and verified at
load, and a check that no tensor holds NaN or inf.

safetensors checks the header and the tensor offsets, not the values: a flipped bit
in the data, or a training run that diverged before it was saved, loads without a
word and then predicts all-NaN depth. The checksum lives in the file's header next to
the model card (key ``hydranet_tensors_sha256``), not inside the card: earlier
versions refuse unknown card fields but ignore other header keys, so files written now
still load there, and the card, which also travels into exported ONNX graphs, stays a
description of the model rather than of one file's bytes.
"""
from __future__ import annotations

import hashlib
from typing import Mapping

import torch

CHECKSUM_KEY = "hydranet_tensors_sha256"


def tensor_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: the
    same tensors give the same checksum however the file lays them out."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        # bytes through a uint8 view: numpy has no bfloat16, and no copy is made
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def non_finite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold NaN or inf, in name order."""
    return [name for name in sorted(tensors)
            if tensors[name].is_floating_point() and not bool(torch.isfinite(tensors[name]).all())]
