"""Which device and precision the predictor runs at: ``auto`` and the fallbacks for a
request the device cannot honour."""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_CHOICES = ("auto", *PRECISIONS)


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available "
                         "(torch.cuda.is_available() is False); use 'cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return dev


class UnsupportedPrecisionError(ValueError):
    """A known precision that this device cannot run."""


# The next best precision when the requested one cannot run on the device.
PRECISION_FALLBACKS = {("cpu", "fp16"): "fp32", ("cuda", "bf16"): "fp16"}


def precision_name(precision: str, device: torch.device, backend: str = "auto") -> str:
    """The concrete precision for a request; ``auto`` is the fastest one that keeps
    the results: fp16 on CUDA (fp32 for the onnxruntime backend, whose exported graph
    is fp32), fp32 on the CPU, where fp16 is not supported and bf16 is slower on most
    processors. Raises UnsupportedPrecisionError for one the device cannot run."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    if precision == "auto":
        return "fp16" if device.type == "cuda" and backend != "onnxruntime" else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise UnsupportedPrecisionError("precision 'fp16' is not supported on the CPU; use 'fp32', 'bf16' or 'auto'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UnsupportedPrecisionError(f"precision 'bf16' is not supported on {torch.cuda.get_device_name(device)}")
    return precision


def choose_precision(precision: str, device: torch.device, backend: str = "auto") -> str:
    """``precision_name``, except that a precision the device cannot run falls back
    to the next best one with a warning (the caller reports what was chosen)."""
    try:
        return precision_name(precision, device, backend)
    except UnsupportedPrecisionError as error:
        fallback = PRECISION_FALLBACKS[(device.type, precision)]
        log.warning("%s (falling back to %s)", error, fallback)
        return fallback


def resolve_precision(precision: str, device: torch.device, backend: str = "auto") -> torch.dtype:
    return PRECISIONS[precision_name(precision, device, backend)]
