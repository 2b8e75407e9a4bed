"""A teacher: a segmentation network in a ``.tflite`` (run by ai-edge-litert's interpreter)
or ``.onnx`` (run by ONNX Runtime) file, turning an RGB frame into per-pixel class ids of its
own and, where the network gives scores, a confidence per pixel.

What a teacher may look like, checked when it is opened (so a bad file stops a run before
any frame is labelled, with a message naming the file):
- one image input of rank 4 with 3 colour channels (NHWC or NCHW), batch 1 or dynamic;
  fixed height/width (the frame is resized to fit, keeping its aspect, and padded at the
  bottom/right, as DeepLab does) or dynamic (the frame goes in at its own size);
  uint8 (raw pixels; a quantised input records its own normalisation), int8 (pixels - 128)
  or float (``(pixel / 255 - mean) / std``, the recipe's mean/std, ImageNet's by default);
- its first output: per-pixel class ids, (1, H, W) integers, or per-pixel scores,
  (1, C, H, W) or (1, H, W, C) (the input's layout), at any stride (they are resized).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ...model.presets import IMAGENET_MEAN, IMAGENET_STD

TEACHER_SUFFIXES = (".tflite", ".onnx")
_MIN_OUTPUT_SIDE = 4  # a 1x1 "map" is a classifier's output, not a segmentation


class TeacherError(ValueError):
    """A teacher file that cannot serve as a segmentation teacher; the message names it."""


@dataclass(frozen=True)
class TeacherInput:
    layout: str                      # "NHWC" or "NCHW"
    size: tuple[int, int] | None     # fixed (H, W), or None for dynamic
    kind: str                        # "uint8", "int8" or "float"
    pad_value: float                 # what a padded pixel holds in the model's input units


class Teacher:
    """``label(rgb)`` -> (ids (H, W) int32 in the teacher's own classes, confidence (H, W)
    float32 in 0..1 or None). ``num_classes`` is known when the output holds scores."""

    def __init__(self, path: Path, run: Callable[[np.ndarray], np.ndarray], inp: TeacherInput,
                 output_shape: Sequence[Any], output_integer: bool, mean: Sequence[float],
                 std: Sequence[float]) -> None:
        self.path, self._run, self.input = path, run, inp
        self._mean = np.asarray(mean, np.float32) * 255.0
        self._std = np.asarray(std, np.float32) * 255.0
        rank = len(output_shape)
        spatial = output_shape[1:3] if rank == 3 else (
            output_shape[2:4] if inp.layout == "NCHW" else output_shape[1:3]) if rank == 4 else ()
        channels = output_shape[1 if inp.layout == "NCHW" else 3] if rank == 4 else 1
        small = [d for d in spatial if isinstance(d, int) and d < _MIN_OUTPUT_SIDE]
        # ids: (1, H, W) or a single channel; scores: two or more channels (one float channel is depth-like)
        shaped = (output_integer and (rank == 3 or channels == 1)) or (
            not output_integer and rank == 4 and not (isinstance(channels, int) and channels < 2))
        if not shaped or small:
            raise TeacherError(f"{path}: not a segmentation network: its output has shape {tuple(output_shape)}; "
                               "expected per-pixel class ids (1, H, W) or scores (1, C, H, W) / (1, H, W, C)")
        self.scores = not output_integer
        self.num_classes: int | None = channels if self.scores and isinstance(channels, int) else None

    def _model_input(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """The network's input tensor and the (h, w) of the frame inside it (the rest is padding)."""
        h, w = rgb.shape[:2]
        if self.input.size is None:
            target, inner = (h, w), (h, w)
            image = rgb
        else:
            target = self.input.size
            scale = min(target[0] / h, target[1] / w)
            inner = (max(1, min(target[0], round(h * scale))), max(1, min(target[1], round(w * scale))))
            image = cv2.resize(rgb, (inner[1], inner[0]), interpolation=cv2.INTER_AREA if scale < 1
                               else cv2.INTER_LINEAR)
        if self.input.kind == "float":
            values = (image.astype(np.float32) - self._mean) / self._std
        elif self.input.kind == "int8":
            values = (image.astype(np.int16) - 128).astype(np.int8)
        else:
            values = image
        tensor = np.full((target[0], target[1], 3), self.input.pad_value, dtype=values.dtype)
        tensor[:inner[0], :inner[1]] = values
        if self.input.layout == "NCHW":
            tensor = tensor.transpose(2, 0, 1)
        return np.ascontiguousarray(tensor[None]), inner

    def label(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {rgb.dtype} {rgb.shape}")
        tensor, inner = self._model_input(rgb)
        out = np.asarray(self._run(tensor))[0]
        size_in = tensor.shape[2:4] if self.input.layout == "NCHW" else tensor.shape[1:3]
        h, w = rgb.shape[:2]
        if not self.scores:
            ids = np.squeeze(out).astype(np.int32)
            # the map may be at a stride: the frame's share of it, then back to the frame's size
            crop = ids[:round(inner[0] * ids.shape[0] / size_in[0]), :round(inner[1] * ids.shape[1] / size_in[1])]
            return cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST), None
        scores = out.astype(np.float32)
        if self.input.layout == "NCHW":
            scores = scores.transpose(1, 2, 0)
        oh, ow = scores.shape[:2]
        scores = scores[:max(1, round(inner[0] * oh / size_in[0])), :max(1, round(inner[1] * ow / size_in[1]))]
        scores = np.stack([cv2.resize(np.ascontiguousarray(scores[..., c]), (w, h), interpolation=cv2.INTER_LINEAR)
                           for c in range(scores.shape[2])], axis=-1)
        if not (scores.min() >= 0 and scores.max() <= 1 and np.allclose(scores.sum(-1), 1, atol=1e-2)):
            scores = np.exp(scores - scores.max(-1, keepdims=True))  # logits -> probabilities
            scores /= scores.sum(-1, keepdims=True)
        return scores.argmax(-1).astype(np.int32), scores.max(-1).astype(np.float32)


def _input_spec(path: Path, shape: Sequence[Any], kind: str | None, quant: tuple[float, int] | None,
                mean: Sequence[float], std: Sequence[float]) -> TeacherInput:
    """Layout, size, dtype class and padding of an image input, or TeacherError saying why not."""
    def fixed(d: Any) -> bool:
        return isinstance(d, (int, np.integer)) and d > 0

    if len(shape) != 4 or (fixed(shape[0]) and shape[0] != 1):
        raise TeacherError(f"{path}: its input has shape {tuple(shape)}; a teacher needs one image, (1, H, W, 3) "
                           "or (1, 3, H, W)")
    layout = "NHWC" if shape[3] == 3 else "NCHW" if shape[1] == 3 else None
    if layout is None:
        raise TeacherError(f"{path}: its input {tuple(shape)} has no axis of 3 colour channels")
    spatial = shape[1:3] if layout == "NHWC" else shape[2:4]
    if kind is None:
        raise TeacherError(f"{path}: its input type cannot be fed an image (expected uint8, int8 or float)")
    size = tuple(int(d) for d in spatial) if all(fixed(d) for d in spatial) else None
    if size is None and any(fixed(d) for d in spatial):
        raise TeacherError(f"{path}: its input fixes one side only ({tuple(shape)}); cannot size a frame for it")
    if kind == "float":
        pad = 0.0  # normalised mean
    elif quant is not None and quant[0] > 0:
        pad = float(quant[1])  # the quantised zero: a padded pixel reads as real 0, as in training
    else:
        pad = 0.0 if kind == "int8" else float(np.round(np.mean(mean) * 255))
    return TeacherInput(layout, size, kind, pad)


def _tflite_teacher(path: Path, mean: Sequence[float], std: Sequence[float], threads: int) -> Teacher:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise TeacherError(f"{path}: running a .tflite teacher needs ai-edge-litert "
                           "(pip install ai-edge-litert)") from None
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise TeacherError(f"{path}: not a usable TensorFlow Lite model ({error})") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1:
        raise TeacherError(f"{path}: has {len(inputs)} inputs; a teacher takes one image")
    dtype = np.dtype(inputs[0]["dtype"])
    kind = {np.dtype(np.uint8): "uint8", np.dtype(np.int8): "int8"}.get(
        dtype, "float" if dtype.kind == "f" else None)
    spec = _input_spec(path, [int(d) for d in inputs[0]["shape"]], kind, inputs[0]["quantization"], mean, std)
    out = outputs[0]
    scale, zero = out["quantization"]

    def run(tensor: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inputs[0]["index"], tensor.astype(dtype, copy=False))
        interpreter.invoke()
        result = interpreter.get_tensor(out["index"])
        # quantised scores: dequantise so that confidences are probabilities
        return (result.astype(np.float32) - zero) * scale if scale else result

    integer = np.dtype(out["dtype"]).kind in "iu" and not scale
    return Teacher(path, run, spec, [int(d) for d in out["shape"]], integer, mean, std)


_ORT_KINDS = {"tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(float)": "float",
              "tensor(float16)": "float", "tensor(double)": "float"}


def _onnx_teacher(path: Path, mean: Sequence[float], std: Sequence[float], threads: int) -> Teacher:
    try:
        import onnxruntime as ort
    except ImportError:
        raise TeacherError(f"{path}: running an .onnx teacher needs onnxruntime (pip install onnxruntime)") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for any bad file
        raise TeacherError(f"{path}: not a usable ONNX model ({type(error).__name__}: {error})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise TeacherError(f"{path}: has {len(inputs)} inputs; a teacher takes one image")
    spec = _input_spec(path, inputs[0].shape, _ORT_KINDS.get(inputs[0].type), None, mean, std)
    numpy_type = {"tensor(float16)": np.float16, "tensor(double)": np.float64}.get(inputs[0].type, None)

    def run(tensor: np.ndarray) -> np.ndarray:
        if numpy_type is not None:
            tensor = tensor.astype(numpy_type)
        return session.run([outputs[0].name], {inputs[0].name: tensor})[0]

    integer = outputs[0].type.startswith(("tensor(int", "tensor(uint"))
    return Teacher(path, run, spec, list(outputs[0].shape), integer, mean, std)


def load_teacher(path: str | Path, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 threads: int = 1) -> Teacher:
    """Open a ``.tflite`` or ``.onnx`` segmentation teacher; TeacherError (naming the file) if it cannot be one.
    ``mean``/``std`` normalise the frame for a float input (0..1 pixel units)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TeacherError(f"teacher {path} not found")
    if path.suffix.lower() == ".tflite":
        return _tflite_teacher(path, mean, std, threads)
    if path.suffix.lower() == ".onnx":
        return _onnx_teacher(path, mean, std, threads)
    raise TeacherError(f"{path}: a teacher is a {' or '.join(TEACHER_SUFFIXES)} file")
