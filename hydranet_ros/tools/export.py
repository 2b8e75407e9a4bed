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
import logging
import sys
from pathlib import Path
from typing import Sequence

from ..common.arguments import positive_int, size_arg
from ..common.atomic import atomic_write
from ..inference.onnx import (
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    TRACE_SIZE,
    compare_with_torch,
    export_onnx,
    within_tolerance,
)
from ..inference.weights import WeightsError, load_weights

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hydranet_export", description=__doc__.split("\n\n")[0],
        epilog="The graph maps the normalised float32 (N,3,H,W) image to the raw head outputs at stride 4; "
               "the model card is stored in its metadata. Run it with "
               "load_predictor('model.onnx', backend='onnxruntime' or 'tensorrt').")
    parser.add_argument("weights", type=Path, help="a HydraNet weights file (.safetensors)")
    parser.add_argument("-o", "--output", type=Path, help="the .onnx file to write (default: WEIGHTS with .onnx)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, >= 17 (default {DEFAULT_OPSET})")
    parser.add_argument("--fixed-size", metavar="WxH", type=size_arg, help="export one fixed input size (and batch) instead of dynamic axes")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch size of a fixed-size export and of the check (default 1)")
    parser.add_argument("--check-size", metavar="WxH", type=size_arg, action="append",
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
        fixed = args.fixed_size[::-1] if args.fixed_size else None  # (height, width)
        if fixed and args.check_size:
            parser.error("--check-size needs a dynamic export; a --fixed-size graph is checked at its size")
        checks = [size[::-1] for size in args.check_size] if args.check_size else \
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
