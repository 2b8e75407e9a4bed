"""A TensorFlow Lite file's operators and constant tensors, read with the ``tflite``
package (the maintained flatbuffer schema bindings) and dequantised to float32.

Only what the converters here need: the operator list in graph order, each with its
builtin name, input/output tensor ids and options, and a tensor's shape, float value
(``scale * (q - zero_point)``, per tensor or per channel) and quantisation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# the schema's TensorType values that hold constants we can read
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}


class TfliteError(ValueError):
    """A file that is not a TensorFlow Lite model, or not the one the caller needs; names the file."""


def _tflite() -> Any:
    try:
        import tflite
    except ImportError:
        raise TfliteError("reading .tflite files needs the 'tflite' package: pip install tflite") from None
    return tflite


@dataclass(frozen=True)
class TfliteOp:
    index: int
    name: str                   # builtin operator name, e.g. "CONV_2D"
    inputs: tuple[int, ...]     # tensor ids (-1 = optional input left out)
    outputs: tuple[int, ...]
    options: Any                # the builtin options table (Conv2DOptions ...) or None


class TfliteFile:
    """The first subgraph of a ``.tflite`` file."""

    _OPTIONS = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions"}

    def __init__(self, path: str | Path) -> None:
        tflite = _tflite()
        self.path = Path(path)
        try:
            self._buf = self.path.read_bytes()
        except OSError as error:
            raise TfliteError(f"{self.path}: cannot read ({error.strerror or error})") from None
        if len(self._buf) < 8 or not tflite.Model.ModelBufferHasIdentifier(self._buf, 0):
            raise TfliteError(f"{self.path}: not a TensorFlow Lite model (no TFL3 identifier)")
        self.model = tflite.Model.GetRootAsModel(self._buf, 0)
        if self.model.SubgraphsLength() < 1:
            raise TfliteError(f"{self.path}: the model has no subgraph")
        self.graph = self.model.Subgraphs(0)
        codes = [self.model.OperatorCodes(i) for i in range(self.model.OperatorCodesLength())]
        # newer files keep small codes in the deprecated field and large ones in BuiltinCode
        self._op_names = [tflite.opcode2name(max(c.BuiltinCode(), c.DeprecatedBuiltinCode())) for c in codes]

    def error(self, message: str) -> TfliteError:
        return TfliteError(f"{self.path}: {message}")

    @property
    def inputs(self) -> tuple[int, ...]:
        return tuple(int(t) for t in self.graph.InputsAsNumpy())

    @property
    def outputs(self) -> tuple[int, ...]:
        return tuple(int(t) for t in self.graph.OutputsAsNumpy())

    def ops(self) -> list[TfliteOp]:
        tflite = _tflite()
        result = []
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            name = self._op_names[op.OpcodeIndex()]
            options = None
            if name in self._OPTIONS and op.BuiltinOptions() is not None:
                table = op.BuiltinOptions()
                options = getattr(tflite, self._OPTIONS[name])()
                options.Init(table.Bytes, table.Pos)
            result.append(TfliteOp(i, name, tuple(int(t) for t in op.InputsAsNumpy()),
                                   tuple(int(t) for t in op.OutputsAsNumpy()), options))
        return result

    def shape(self, tensor: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.graph.Tensors(tensor).ShapeAsNumpy())

    def tensor_name(self, tensor: int) -> str:
        return self.graph.Tensors(tensor).Name().decode(errors="replace")

    def quantisation(self, tensor: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(scales, zero points, quantised axis), or None for a float tensor."""
        q = self.graph.Tensors(tensor).Quantization()
        if q is None or q.ScaleLength() == 0:
            return None
        zero = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(q.ScaleLength(), np.int64)
        return q.ScaleAsNumpy().astype(np.float64), np.asarray(zero, np.int64), q.QuantizedDimension()

    def raw(self, tensor: int) -> np.ndarray:
        """A constant tensor's stored values in its own dtype and shape."""
        t = self.graph.Tensors(tensor)
        dtype = _NUMPY_TYPES.get(t.Type())
        if dtype is None:
            raise self.error(f"tensor {self.tensor_name(tensor)!r} has unsupported type {t.Type()}")
        buffer = self.model.Buffers(t.Buffer())
        if buffer.DataLength():
            data = buffer.DataAsNumpy().tobytes()
        elif buffer.Offset() > 1:  # files over 2 GB keep data after the flatbuffer
            data = self._buf[buffer.Offset():buffer.Offset() + buffer.Size()]
        else:
            raise self.error(f"tensor {self.tensor_name(tensor)!r} is not a constant")
        shape = self.shape(tensor)
        values = np.frombuffer(data, dtype=dtype)
        if values.size != int(np.prod(shape)):
            raise self.error(f"tensor {self.tensor_name(tensor)!r} holds {values.size} values for shape {shape}")
        return values.reshape(shape)

    def dequantised(self, tensor: int) -> np.ndarray:
        """A constant tensor as float32 real values."""
        values = self.raw(tensor)
        quant = self.quantisation(tensor)
        if quant is None:
            return values.astype(np.float32)
        scales, zeros, axis = quant
        if scales.size > 1:  # per-channel: broadcast along the quantised axis
            shape = [1] * values.ndim
            shape[axis] = scales.size
            scales, zeros = scales.reshape(shape), zeros.reshape(shape)
        return ((values.astype(np.float64) - zeros) * scales).astype(np.float32)
