"""The network as an ONNX graph: export, the card in its metadata, and the check against PyTorch.

The exported graph is the network alone: input ``image``, the normalised float32
(N, 3, H, W) tensor, and one output per head (``segm`` logits, ``depth`` raw),
at stride 4. Normalisation, upsampling, argmax and colouring stay in the
predictor, which wraps the graph exactly as it wraps the PyTorch model.
The model card travels inside the file (``metadata_props``, key
``hydranet_model_card``), so ``load_predictor("model.onnx")`` needs only the path.
"""
from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .weights import CARD_KEY, ModelCard, WeightsError

DEFAULT_OPSET = 17
INPUT_NAME = "image"
GRAPH_KEY = "hydranet_graph"
GRAPH_DESCRIPTION = "input: normalised float32 (N,3,H,W); outputs: raw head outputs at stride 4"


# Dynamic exports are traced at this (odd, non-multiple-of-32) size: any shape
# arithmetic that was baked in as a constant shows up in the check at other sizes.
TRACE_SIZE = (72, 104)  # height, width
DEFAULT_TOLERANCE = 1e-4


def export_onnx(model: nn.Module, card: ModelCard | None = None, opset: int = DEFAULT_OPSET,
                fixed_size: tuple[int, int] | None = None, batch: int = 1) -> bytes:
    """The serialised ONNX graph of ``model`` (fp32, CPU copy; ``model`` is untouched).
    ``fixed_size`` is (height, width); without it batch, height and width are dynamic."""
    import onnx

    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    cpu_model = copy.deepcopy(model).float().cpu().eval()
    height, width = fixed_size or TRACE_SIZE
    sample = torch.zeros(batch, 3, height, width)
    outputs = list(cpu_model.heads)
    dynamic_axes = None
    if fixed_size is None:
        # both strides-4 sizes are named per output: ONNX infers them from the graph anyway
        dynamic_axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
        dynamic_axes.update({name: {0: "batch", 2: "height_4", 3: "width_4"} for name in outputs})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the torch.export one,
        # which needs onnxscript; this one has no extra dependency and handles the
        # decoder's shape-dependent upsampling with dynamic axes (checked below).
        # Its tracer also flags the input-shape check in HydraNet.forward, which is
        # constant for every valid input.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(cpu_model, (sample,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=outputs, dynamic_axes=dynamic_axes)
    graph = onnx.load_from_string(buffer.getvalue())
    metadata = {GRAPH_KEY: GRAPH_DESCRIPTION}
    if card is not None:
        metadata[CARD_KEY] = card.to_json()
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(graph)
    return graph.SerializeToString()


def read_onnx_card(path: str | Path) -> ModelCard:
    """The model card stored in an exported graph (read through onnxruntime, which the ONNX backends need anyway)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # metadata only
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable ONNX graph ({exc})") from exc
    metadata = session.get_modelmeta().custom_metadata_map
    if CARD_KEY not in metadata:
        raise WeightsError(f"{path}: has no HydraNet model card (was it made by hydranet_export?)")
    try:
        return ModelCard.from_json(metadata[CARD_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path}: malformed model card ({exc})") from exc


def compare_with_torch(model: nn.Module, graph: bytes, sizes: Sequence[tuple[int, int]], batch: int = 1,
                       seed: int = 0) -> list[dict[str, float | int | str]]:
    """Run ``model`` (fp32, CPU) and the graph (onnxruntime, CPU) on the same random
    normalised input per (height, width); one row per size and output with the max
    absolute difference and the output's scale (max absolute value)."""
    from .onnxruntime_runner import OnnxRuntimeRunner  # local: needs onnxruntime

    cpu_model = copy.deepcopy(model).float().cpu().eval()
    runner = OnnxRuntimeRunner(graph, torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, float | int | str]] = []
    for height, width in sizes:
        x = torch.randn(batch, 3, height, width, generator=generator)
        with torch.inference_mode():
            expected = cpu_model(x)
        actual = runner.run_normalised(x)
        for name, reference in expected.items():
            if actual[name].shape != reference.shape:
                raise AssertionError(f"{name} at {width}x{height}: ONNX shape {tuple(actual[name].shape)} "
                                     f"!= PyTorch {tuple(reference.shape)}")
            rows.append({"width": width, "height": height, "output": name,
                         "max_abs_diff": float((actual[name] - reference).abs().max()),
                         "scale": float(reference.abs().max())})
    return rows


def within_tolerance(row: dict, tolerance: float) -> bool:
    """Relative to the output's scale (max absolute value): raw logits of trained
    weights reach tens, random ones stay near 0.01. The 1e-6 absolute floor only
    absorbs float32 rounding on outputs that are all but zero."""
    return row["max_abs_diff"] <= tolerance * row["scale"] + 1e-6
