"""ONNX export: ``hydranet_export WEIGHTS [-o OUT.onnx]``.

The exported graph is the network alone: input ``image``, the normalised float32
(N, 3, H, W) tensor, and one output per head (``segm`` logits, ``depth`` raw),
at stride 4. Normalisation, upsampling, argmax and colouring stay in the
predictor, which wraps the graph exactly as it wraps the PyTorch model, so both
paths share one implementation of everything around the network. Batch, height
and width are dynamic unless ``--fixed-size`` is given (TensorRT builds faster
and better engines for one shape).

The model card travels inside the file (``metadata_props``, key
``hydranet_model_card``), so ``load_predictor("model.onnx")`` needs only the path.
The export is checked against PyTorch on the same inputs through onnxruntime.
"""
from __future__ import annotations

import argparse
import copy
import io
import logging
import sys
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .weights import CARD_KEY, ModelCard, WeightsError, atomic_write, load_weights

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "image"
GRAPH_KEY = "hydranet_graph"
GRAPH_DESCRIPTION = "input: normalised float32 (N,3,H,W); outputs: raw head outputs at stride 4"
# Dynamic exports are traced at this (odd, non-multiple-of-32) size: any shape
# arithmetic that was baked in as a constant shows up in the check at other sizes.
TRACE_SIZE = (72, 104)  # height, width
DEFAULT_TOLERANCE = 1e-4


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (width, height), both positive."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected a size as WIDTHxHEIGHT (e.g. 640x480), got {text!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return width, height


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
    from .backends import OnnxRuntimeRunner

    cpu_model = copy.deepcopy(model).float().cpu().eval()
    runner = OnnxRuntimeRunner(graph, torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, float | int | str]] = []
    for height, width in sizes:
        x = torch.randn(batch, 3, height, width, generator=generator)
        with torch.inference_mode():
            expected = cpu_model(x)
        actual = runner(x)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hydranet_export", description=__doc__.split("\n\n")[0],
        epilog="The graph maps the normalised float32 (N,3,H,W) image to the raw head outputs at stride 4; "
               "the model card is stored in its metadata. Run it with "
               "load_predictor('model.onnx', backend='onnxruntime' or 'tensorrt').")
    parser.add_argument("weights", type=Path, help="a HydraNet weights file (.safetensors)")
    parser.add_argument("-o", "--output", type=Path, help="the .onnx file to write (default: WEIGHTS with .onnx)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, >= 17 (default {DEFAULT_OPSET})")
    parser.add_argument("--fixed-size", metavar="WxH", help="export one fixed input size (and batch) instead of dynamic axes")
    parser.add_argument("--batch", type=int, default=1, help="batch size of a fixed-size export and of the check (default 1)")
    parser.add_argument("--check-size", metavar="WxH", action="append",
                        help="sizes to compare with PyTorch (repeatable; default: an odd size 101x75 and the trace size, "
                             "or the fixed size)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"max difference from PyTorch, relative to the output's largest value (default {DEFAULT_TOLERANCE})")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fixed = parse_size(args.fixed_size)[::-1] if args.fixed_size else None  # (height, width)
        if fixed and args.check_size:
            parser.error("--check-size needs a dynamic export; a --fixed-size graph is checked at its size")
        checks = [parse_size(s)[::-1] for s in args.check_size] if args.check_size else \
            ([fixed] if fixed else [(75, 101), TRACE_SIZE])
        model, card = load_weights(args.weights)
        graph = export_onnx(model, card, opset=args.opset, fixed_size=fixed, batch=args.batch)
    except (ValueError, WeightsError) as exc:
        parser.error(str(exc))
    except ImportError as exc:
        print(f"hydranet_export: {exc.name} is not installed; pip install onnx onnxruntime", file=sys.stderr)
        return 2
    output = args.output or args.weights.with_suffix(".onnx")
    axes = f"fixed {fixed[1]}x{fixed[0]}, batch {args.batch}" if fixed else "dynamic batch, height and width"
    if not args.no_check:
        # checked before writing, so a graph that disagrees never reaches disk
        failed = False
        for row in compare_with_torch(model, graph, checks, batch=args.batch):
            ok = within_tolerance(row, args.tolerance)
            failed |= not ok
            print(f"{row['width']}x{row['height']} {row['output']:<8} max |onnxruntime - pytorch| = "
                  f"{row['max_abs_diff']:.3g} (output scale {row['scale']:.3g}) {'ok' if ok else 'FAILED'}")
        if failed:
            print(f"hydranet_export: the ONNX graph differs from PyTorch by more than {args.tolerance} "
                  f"(relative); {output} not written", file=sys.stderr)
            return 1
    atomic_write(output, lambda tmp: tmp.write_bytes(graph))
    print(f"wrote {output} ({len(graph) / 2**20:.1f} MiB, opset {args.opset}, {axes})")
    return 0

if __name__ == "__main__":
    sys.exit(main())
