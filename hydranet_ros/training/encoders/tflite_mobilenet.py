"""An ImageNet MobileNetV2 1.0 from a TensorFlow Lite file as our encoder's starting weights.

``tflite_encoder_state(path)`` returns a state dict for ``model.mobilenet.MobileNetV2Encoder``
(the reference's layer names) whose float network computes what the file's network computes
(up to its 8-bit rounding and the padding note below). How the file's layout becomes ours:

- Weights and biases are dequantised with each tensor's own scale and zero point (per tensor
  or per channel). TFLite stores convolutions as (O, kH, kW, I) and depthwise ones as
  (1, kH, kW, C); torch wants (O, I, kH, kW) and (C, 1, kH, kW).
- Batch norm was folded into the file's convolutions; our encoder keeps a BatchNorm after each
  convolution (its checkpoints and the reference's need it), so each BatchNorm is set to pass
  the convolution through and add the folded bias: in eval mode it is exact whatever statistics
  it holds, if ``running_mean = mu, running_var = var, weight = sqrt(var + eps), bias = mu + b``.
  We pick mu and var as the convolution's output statistics on a few frames (``calibration``):
  then training mode, which normalises with the batch's own statistics, starts from (nearly)
  the same function instead of rescaling every channel to unit variance, which would throw
  the ImageNet features away at the first fine-tuning step.
- The file's input is uint8 with its own quantisation (MobileNetV2: (x - 128) / 128). Our
  weights files all take ImageNet mean/std (the model card's default), so that affine map is
  folded into the first convolution and its bias instead of giving this encoder a card of its
  own. Exact except at the image border, where TF pads its own input with zeros.
- The first block has expansion factor 1: TF has no 1x1 expansion there, the reference has
  one (32 -> 32, ReLU6); it becomes the identity (its input is already ReLU6's output).
- Padding: TF's "SAME" pads a stride-2 convolution of an even-sized input only at the bottom
  and right; ours pads symmetrically, so each stride-2 layer samples half a pixel off. We keep
  our padding (the decoder, the reference checkpoints and every export assume it);
  ``use_tf_same_padding`` reproduces TF's for measuring the difference (the test does).

The file's 1x1 conv to 1280 channels and the 1001-class ImageNet classifier (class 0 is
"background") are not part of our encoder; ``tflite_classifier`` returns them for tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...model.mobilenet import MOBILENET_V2_SETTINGS, MobileNetV2Encoder
from ...model.presets import IMAGENET_MEAN, IMAGENET_STD
from .tflite_file import TfliteError, TfliteFile

IMAGENET_CLASSES = 1001  # TF-slim's ImageNet head: class 0 is "background"
_RELU6 = 3               # tflite ActivationFunctionType.RELU6
_NONE = 0


@dataclass(frozen=True)
class TfliteConv:
    """One convolution of the file, in torch layout and float32."""

    weight: np.ndarray   # (O, I / groups, kH, kW)
    bias: np.ndarray     # (O,)
    stride: int
    relu6: bool
    depthwise: bool


@dataclass(frozen=True)
class TfliteMobileNetV2:
    convs: list[TfliteConv]        # the encoder's, in graph order (51: no expansion in block 1)
    head: list[TfliteConv]         # Conv_1 (320 -> 1280) and the logits (1280 -> 1001)
    input_scale: float             # real input = input_scale * (uint8 - input_offset)
    input_offset: float


def _not_mobilenet(file: TfliteFile, reason: str) -> TfliteError:
    return file.error(f"not an ImageNet MobileNetV2 1.0: {reason}")


def _conv(file: TfliteFile, op) -> TfliteConv:  # noqa: ANN001 (a TfliteOp)
    weight = file.dequantised(op.inputs[1])
    bias = file.dequantised(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(weight.shape[0],
                                                                                                   np.float32)
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    if depthwise:
        if op.options.DepthMultiplier() not in (0, 1):
            raise _not_mobilenet(file, f"operator {op.index} has depth multiplier {op.options.DepthMultiplier()}")
        weight = weight[0].transpose(2, 0, 1)[:, None]      # (1, kH, kW, C) -> (C, 1, kH, kW)
    else:
        weight = weight.transpose(0, 3, 1, 2)               # (O, kH, kW, I) -> (O, I, kH, kW)
    if op.options.StrideH() != op.options.StrideW():
        raise _not_mobilenet(file, f"operator {op.index} has unequal strides")
    activation = op.options.FusedActivationFunction()
    if activation not in (_RELU6, _NONE):
        raise _not_mobilenet(file, f"operator {op.index} has activation {activation}, not ReLU6 or none")
    return TfliteConv(np.ascontiguousarray(weight), bias, op.options.StrideH(), activation == _RELU6, depthwise)


def read_mobilenet_v2(path: str | Path) -> TfliteMobileNetV2:
    """The file's convolutions; raises TfliteError naming the file unless it is an ImageNet
    MobileNetV2 1.0 (its shapes are checked against our encoder in ``tflite_encoder_state``)."""
    file = TfliteFile(path)
    ops = file.ops()
    conv_ops = [op for op in ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    # the stem, then three convs per block except block 1's missing expansion
    expected = 1 + sum(3 * n for _, _, n, _ in MOBILENET_V2_SETTINGS) - 1
    if len(conv_ops) != expected + 2 or "AVERAGE_POOL_2D" not in [op.name for op in ops]:
        raise _not_mobilenet(file, f"{len(conv_ops)} convolutions, expected {expected} in the encoder plus "
                             "the 1280-channel conv and the classifier, and an average pool")
    convs = [_conv(file, op) for op in conv_ops]
    inp = file.inputs[0]
    shape, quant = file.shape(inp), file.quantisation(inp)
    if len(shape) != 4 or shape[3] != 3:
        raise _not_mobilenet(file, f"input shape {shape}, expected (1, H, W, 3)")
    if quant is None:
        raise file.error("the input is float, so the file does not record its normalisation; "
                         "use a quantised (uint8/int8 input) MobileNetV2")
    scale, zero = float(quant[0][0]), float(quant[1][0])
    dtype = file.graph.Tensors(inp).Type()
    offset = zero if dtype == 3 else zero + 128.0 if dtype == 9 else None  # uint8 / int8 (pixel - 128)
    if offset is None:
        raise file.error(f"input tensor type {dtype} is neither uint8 nor int8")
    head = convs[expected:]
    if head[1].weight.shape[0] != IMAGENET_CLASSES:
        raise _not_mobilenet(file, f"{head[1].weight.shape[0]} classes, expected ImageNet's {IMAGENET_CLASSES}")
    return TfliteMobileNetV2(convs[:expected], head, scale, offset)


def _units(encoder: MobileNetV2Encoder) -> list[tuple[str, nn.Sequential, bool]]:
    """Our conv+BN(+ReLU6) units in forward order: (state-dict prefix, unit, is block-1 expansion)."""
    units = [("layer1", encoder.layer1, False)]
    for index, (t, _, n, _) in enumerate(MOBILENET_V2_SETTINGS, start=2):
        for repeat in range(n):
            block = getattr(encoder, f"layer{index}")[repeat]
            for k in range(3):
                units.append((f"layer{index}.{repeat}.output.{k}", block.output[k], t == 1 and k == 0))
    return units


def _fold_input_normalisation(conv: TfliteConv, scale: float, offset: float,
                              mean: Sequence[float], std: Sequence[float]) -> TfliteConv:
    """The stem conv for input ``(x / 255 - mean) / std`` instead of ``scale * (x - offset)``:
    that input is ``a * ours + c`` per channel, a = 255 * scale * std, c = scale * (255 * mean - offset)."""
    a = 255.0 * scale * np.asarray(std, np.float64)
    c = scale * (255.0 * np.asarray(mean, np.float64) - offset)
    weight = conv.weight.astype(np.float64)
    bias = conv.bias + (weight.sum(axis=(2, 3)) * c).sum(axis=1)
    return TfliteConv((weight * a[None, :, None, None]).astype(np.float32), bias.astype(np.float32),
                      conv.stride, conv.relu6, conv.depthwise)


def tflite_encoder_state(path: str | Path, calibration: torch.Tensor | None = None,
                         mean: Sequence[float] = IMAGENET_MEAN,
                         std: Sequence[float] = IMAGENET_STD) -> dict[str, torch.Tensor]:
    """``MobileNetV2Encoder`` state dict (its 312 keys) from an ImageNet MobileNetV2 1.0 ``.tflite``.

    ``calibration``: (N, 3, H, W) frames normalised with ``mean``/``std`` whose statistics the
    BatchNorms take (see the module notes); None uses a few rendered synthetic streets.
    Raises TfliteError naming the file when it is not such a network."""
    net = read_mobilenet_v2(path)
    encoder = MobileNetV2Encoder()
    units = _units(encoder)
    convs = iter(net.convs)
    state: dict[str, torch.Tensor] = {}
    for position, (prefix, unit, identity_expansion) in enumerate(units):
        conv_module: nn.Conv2d = unit[0]
        if identity_expansion:
            channels = conv_module.out_channels
            conv = TfliteConv(np.eye(channels, dtype=np.float32)[:, :, None, None], np.zeros(channels, np.float32),
                              1, True, False)
        else:
            conv = next(convs)
            if position == 0:
                conv = _fold_input_normalisation(conv, net.input_scale, net.input_offset, mean, std)
        wanted = (tuple(conv_module.weight.shape), conv_module.stride[0], len(unit) == 3,
                  conv_module.groups > 1)
        found = (conv.weight.shape, conv.stride, conv.relu6, conv.depthwise)
        if wanted != found:
            raise TfliteError(f"{path}: not an ImageNet MobileNetV2 1.0: convolution {position} ({prefix}) is "
                              f"(shape, stride, relu6, depthwise) {found}, expected {wanted}")
        state[f"{prefix}.0.weight"] = torch.from_numpy(conv.weight)
        state[f"{prefix}.1.bias"] = torch.from_numpy(conv.bias)  # the BN's shift, finished in _set_batchnorm
    _set_batchnorm(encoder, units, state, calibration)
    return encoder.state_dict()


def _set_batchnorm(encoder: MobileNetV2Encoder, units: list[tuple[str, nn.Sequential, bool]],
                   state: dict[str, torch.Tensor], calibration: torch.Tensor | None) -> None:
    """Load ``state`` with identity BatchNorms, then give each BatchNorm its convolution's
    output statistics on ``calibration`` without changing the eval-mode function."""
    folded_bias = {prefix: state.pop(f"{prefix}.1.bias") for prefix, _, _ in units}
    full = encoder.state_dict()
    for prefix, unit, _ in units:
        bn: nn.BatchNorm2d = unit[1]
        full[f"{prefix}.0.weight"] = state[f"{prefix}.0.weight"]
        full[f"{prefix}.1.running_mean"] = torch.zeros(bn.num_features)
        full[f"{prefix}.1.running_var"] = torch.ones(bn.num_features)
        full[f"{prefix}.1.weight"] = torch.full((bn.num_features,), (1.0 + bn.eps) ** 0.5)
        full[f"{prefix}.1.bias"] = folded_bias[prefix]
    encoder.load_state_dict(full)
    images = calibration if calibration is not None else synthetic_calibration_frames()
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [unit[0].register_forward_hook(
        lambda _m, _i, out, prefix=prefix: stats.__setitem__(prefix, (out.mean((0, 2, 3)), out.var((0, 2, 3)))))
        for prefix, unit, _ in units]
    try:
        with torch.no_grad():
            encoder.eval()(images.float())
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        for prefix, unit, _ in units:
            bn = unit[1]
            mu, var = stats[prefix]
            bn.running_mean.copy_(mu)
            bn.running_var.copy_(var)
            bn.weight.copy_((var + bn.eps).sqrt())
            bn.bias.copy_(folded_bias[prefix] + mu)


def synthetic_calibration_frames(count: int = 4, size: tuple[int, int] = (128, 256)) -> torch.Tensor:
    """A few rendered street frames, ImageNet-normalised: a deterministic stand-in for the user's data."""
    from ...synthetic.camera import render_street_scene

    frames = [render_street_scene(seed, size[1], size[0]).image for seed in range(count)]
    images = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def tflite_classifier(path: str | Path) -> nn.Module:
    """The file's ImageNet head on our encoder's last feature map (N, 320, h, w) -> (N, 1001)
    logits: 1x1 conv to 1280 + ReLU6, global average pool, 1x1 conv to the classes."""
    net = read_mobilenet_v2(path)
    layers: list[nn.Module] = []
    for conv in net.head:
        module = nn.Conv2d(conv.weight.shape[1], conv.weight.shape[0], 1)
        module.weight.data.copy_(torch.from_numpy(conv.weight))
        module.bias.data.copy_(torch.from_numpy(conv.bias))
        layers.append(module)
    return nn.Sequential(layers[0], nn.ReLU6(), nn.AdaptiveAvgPool2d(1), layers[1], nn.Flatten())


def use_tf_same_padding(encoder: nn.Module) -> None:
    """Make each stride-2 3x3 convolution pad like TF's "SAME" (for measurements only):
    all padding at the bottom/right when the input size is even, split evenly when odd."""
    def pad(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = inputs[0]
        pads = []
        for size in (x.shape[3], x.shape[2]):
            total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
            pads += [total // 2, total - total // 2]
        return (F.pad(x, pads),)

    for module in encoder.modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2) and module.kernel_size == (3, 3):
            module.padding = (0, 0)
            module.register_forward_pre_hook(pad)
