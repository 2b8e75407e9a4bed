"""Everything the ROS 2 node decides, with no ROS import.

``node.py`` is a thin rclpy shell around this module: the parameter table, the
QoS choice (as plain values), the newest-frame slot, camera-info scaling,
statistics and the choice of which outputs to compute all live here, so they
are tested with plain pytest on machines without ROS 2.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..common.sizes import parse_size
from ..inference.backends import BACKENDS
from ..inference.colour import COLORMAPS
from ..inference.predictor import PRECISION_CHOICES, resolve_device
from ..inference.shipped import PACKAGE, SHIPPED_WEIGHTS
from ..messages.topics import CAMERA_INFO_TOPIC, COMPRESSED_TOPIC, IMAGE_TOPIC, OUTPUT_SPECS, OutputSpec

NODE_NAME = "hydranet_node"
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEFAULT_WARMUP_SIZE = "640x480"
# 4K UHD: large enough for any camera we expect, small enough to catch garbage headers
DEFAULT_MAX_INPUT_PIXELS = 3840 * 2160
# the outputs a bare `ros2 run` publishes; the colour images are for display and opt-in
DEFAULT_ON_OUTPUTS = ("depth", "labels", "overlay")


class ParamError(ValueError):
    """One or more parameters are invalid; the message names each of them."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"parameter '{name}': {why}" for name, why in self.problems))


# ----------------------------------------------------------------------------
# Parameter table: node.py declares from it, --help and the README print it.
# ----------------------------------------------------------------------------

def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"expected true or false, got {value!r}")


def _as_float(value: Any) -> float:
    # bool is an int subclass; `overlay_alpha: true` is a typo, not 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value.strip()


def _size_or_empty(value: Any) -> tuple[int, int] | None:
    text = _as_str(value)
    return parse_size(text) if text else None


def _choice(choices: Sequence[str]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _as_str(value).lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text
    return check


def _device(value: Any) -> str:
    text = _as_str(value).lower()
    if not DEVICE_PATTERN.match(text):
        raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
    return text


def _in_range(lo: float, hi: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        number = _as_float(value)
        if not lo <= number <= hi:
            raise ValueError(f"expected a value in [{lo:g}, {hi:g}], got {number:g}")
        return number
    return check


def _non_negative_float(value: Any) -> float:
    number = _as_float(value)
    if number < 0:
        raise ValueError(f"expected a value >= 0, got {number:g}")
    return number


def _at_least(lo: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        number = _as_int(value)
        if number < lo:
            raise ValueError(f"expected an integer >= {lo}, got {number}")
        return number
    return check


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    check: Callable[[Any], Any]
    choices: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        return {bool: "bool", int: "int", float: "double", str: "string"}[type(self.default)]


def publish_param(spec: OutputSpec) -> str:
    """The parameter that switches an image output on, e.g. ``publish_depth``."""
    return f"publish_{spec.name}"


def _output_params() -> tuple[ParamSpec, ...]:
    return tuple(
        ParamSpec(publish_param(spec), spec.name in DEFAULT_ON_OUTPUTS,
                  f"Publish {spec.topic} ({spec.encoding}, {spec.description})", _as_bool)
        for spec in OUTPUT_SPECS)


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("weights", "",
              "Weights file (.safetensors with model card); empty = the package's shipped "
              f"<share>/{PACKAGE}/{SHIPPED_WEIGHTS}", _as_str),
    ParamSpec("device", "auto", "Inference device: auto (CUDA if available), cpu, cuda or cuda:N",
              _device),
    ParamSpec("precision", "auto",
              "Inference precision: auto (fp16 on CUDA, fp32 on the CPU), fp32, fp16 or bf16; one the "
              "device cannot run falls back with a warning (fp16 on the CPU to fp32, bf16 to fp16)",
              _choice(PRECISION_CHOICES), PRECISION_CHOICES),
    ParamSpec("backend", "auto",
              "How the network runs: auto (CUDA graphs on a GPU, eager on the CPU), eager, compile "
              "(torch.compile), cudagraph, onnxruntime or tensorrt; an unavailable one falls back "
              "with a warning and the log and diagnostics name the one that runs",
              _choice(BACKENDS), BACKENDS),
    ParamSpec("warmup_size", DEFAULT_WARMUP_SIZE,
              "Input size WIDTHxHEIGHT run through the network before the first frame, so that "
              "compilation, CUDA-graph capture and cuDNN autotuning happen then: set it to the "
              "camera's size; empty = no warm-up (the first frame of each size pays instead)",
              _size_or_empty),
    *_output_params(),
    ParamSpec("publish_depth_camera_info", True,
              "Subscribe to camera_info and publish depth/camera_info (intrinsics scaled to the "
              "depth image, header of the depth image)", _as_bool),
    ParamSpec("publish_label_info", True,
              "Publish the classes once, latched (transient local), on segmentation/label_info: "
              "vision_msgs/LabelInfo (ids, names; 255 = unlabeled) where vision_msgs is installed, "
              "else std_msgs/String JSON with ids, names and colours", _as_bool),
    ParamSpec("overlay_alpha", 0.5, "Opacity of the class colours in overlay/image, 0..1",
              _in_range(0.0, 1.0)),
    ParamSpec("depth_display_min", 0.0,
              "Depth in metres at the low end of the colour map in depth/colorized",
              _non_negative_float),
    ParamSpec("depth_display_max", 0.0,
              "Depth in metres at the high end of the colour map in depth/colorized; "
              "0 = the display range in the weights' model card", _non_negative_float),
    ParamSpec("depth_colormap", "turbo", f"Colour map of depth/colorized: {', '.join(COLORMAPS)}",
              _choice(COLORMAPS), COLORMAPS),
    ParamSpec("qos_reliability", "best_effort",
              "Reliability of the image subscription: best_effort accepts both reliable and "
              "best-effort cameras; reliable accepts only reliable ones",
              _choice(RELIABILITIES), RELIABILITIES),
    ParamSpec("qos_depth", 1, "History depth of the image subscription (keep last N)", _at_least(1)),
    ParamSpec("input_transport", "raw",
              "raw: sensor_msgs/Image on 'image'; compressed: sensor_msgs/CompressedImage on "
              "'image/compressed'", _choice(TRANSPORTS), TRANSPORTS),
    ParamSpec("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS,
              "Frames with more pixels (width x height) are dropped as bad; 0 = no limit",
              _at_least(0)),
    ParamSpec("log_period", 10.0,
              "Seconds between status lines in the log (fps, latency, drops); 0 = never",
              _non_negative_float),
)
PARAMS_BY_NAME = {spec.name: spec for spec in PARAMS}


@dataclass(frozen=True)
class NodeConfig:
    weights: str
    device: str
    precision: str
    backend: str
    warmup_size: tuple[int, int] | None  # (width, height); None = no warm-up
    outputs: tuple[str, ...]            # image outputs switched on, in OUTPUT_SPECS order
    publish_depth_camera_info: bool
    publish_label_info: bool
    overlay_alpha: float
    depth_range: tuple[float, float] | None   # None = from the model card
    depth_colormap: str
    qos_reliability: str
    qos_depth: int
    input_transport: str
    max_input_pixels: int | None        # None = no limit
    log_period: float

    def predictor_options(self) -> dict[str, Any]:
        """Keyword arguments for ``load_predictor`` besides the path."""
        return dict(device=self.device, precision=self.precision, backend=self.backend, overlay_alpha=self.overlay_alpha,
                    depth_colormap=self.depth_colormap, depth_range=self.depth_range)


def defaults() -> dict[str, Any]:
    return {spec.name: spec.default for spec in PARAMS}


def load_config(values: Mapping[str, Any]) -> NodeConfig:
    """Check every parameter (missing ones take their default) and return the config.

    All problems are gathered into one ``ParamError`` so a user fixes a launch
    file in one go rather than one restart per typo."""
    problems: list[tuple[str, str]] = []
    checked: dict[str, Any] = {}
    for spec in PARAMS:
        try:
            checked[spec.name] = spec.check(values.get(spec.name, spec.default))
        except ValueError as error:
            problems.append((spec.name, str(error)))
    unknown = sorted(set(values) - set(PARAMS_BY_NAME))
    problems += [(name, "unknown parameter") for name in unknown]
    if problems:
        raise ParamError(problems)

    outputs = tuple(spec.name for spec in OUTPUT_SPECS if checked[publish_param(spec)])
    if not outputs and not checked["publish_depth_camera_info"]:
        problems.append((", ".join(publish_param(s) for s in OUTPUT_SPECS),
                         "every output is switched off; the node would have nothing to publish"))
    lo, hi = checked["depth_display_min"], checked["depth_display_max"]
    if hi > 0 and lo >= hi:
        problems.append(("depth_display_min", f"must be below depth_display_max ({hi:g}), got {lo:g}"))
    problems += _device_problems(checked["device"])
    if problems:
        raise ParamError(problems)

    return NodeConfig(
        weights=checked["weights"], device=checked["device"], precision=checked["precision"],
        backend=checked["backend"], warmup_size=checked["warmup_size"], outputs=outputs,
        publish_depth_camera_info=checked["publish_depth_camera_info"],
        publish_label_info=checked["publish_label_info"], overlay_alpha=checked["overlay_alpha"],
        depth_range=(lo, hi) if hi > 0 else None, depth_colormap=checked["depth_colormap"],
        qos_reliability=checked["qos_reliability"], qos_depth=checked["qos_depth"],
        input_transport=checked["input_transport"],
        max_input_pixels=checked["max_input_pixels"] or None, log_period=checked["log_period"])


def _device_problems(device: str) -> list[tuple[str, str]]:
    """Ask the predictor's own resolver, so the node and the tools agree on what is valid.
    (A precision or backend the device cannot run is not a problem: the predictor
    falls back to the next best one, and ``fallback_notes`` says so.)"""
    try:
        resolved = resolve_device(device)
    except (ValueError, RuntimeError) as error:
        return [("device", str(error))]
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        return [("device", f"{device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")]
    return []


def fallback_notes(config: NodeConfig, precision: str, backend: str) -> list[str]:
    """Warnings for each explicit request that is not what runs."""
    notes = []
    if config.precision not in ("auto", precision):
        notes.append(f"precision {config.precision} cannot run here; running {precision}")
    if config.backend not in ("auto", backend):
        notes.append(f"backend {config.backend} cannot run here; running {backend}")
    return notes


def resolve_weights(value: str, share_dir: str | Path | None) -> Path:
    """The weights file to load: the parameter, or the shipped file in the share directory."""
    if value:
        path = Path(value).expanduser()
    elif share_dir is None:
        raise ParamError([("weights", f"is empty and the package '{PACKAGE}' is not installed "
                                      "(no share directory); set it to a .safetensors file")])
    else:
        path = Path(share_dir) / SHIPPED_WEIGHTS
    if not path.is_file():
        hint = "" if value else " (the default, shipped weights are missing from this install)"
        raise ParamError([("weights", f"file not found: {path}{hint}")])
    return path


def format_usage(prog: str = NODE_NAME) -> str:
    """``--help`` text, from the parameter table."""
    width = max(len(spec.name) for spec in PARAMS)
    lines = [
        f"usage: ros2 run {PACKAGE} {prog} [--ros-args -p NAME:=VALUE ... "
        "-r image:=/camera/image_raw --params-file FILE]",
        "",
        "Joint metric depth and semantic segmentation (HydraNet) for a camera stream.",
        f"Subscribes: {IMAGE_TOPIC} (sensor_msgs/Image) or {COMPRESSED_TOPIC} (CompressedImage), "
        f"{CAMERA_INFO_TOPIC}.",
        "Publishes: " + ", ".join(f"{s.topic} ({s.encoding})" for s in OUTPUT_SPECS) + ",",
        "           depth/camera_info, segmentation/label_info; diagnostics on /diagnostics.",
        "",
        "parameters (name, default, description):",
    ]
    for spec in PARAMS:
        lines.append(f"  {spec.name:<{width}}  {json.dumps(spec.default):<13}  {spec.description}")
    return "\n".join(lines)


def parameter_table_markdown() -> str:
    """The README's parameter table."""
    rows = ["| Parameter | Type | Default | Description |", "| --- | --- | --- | --- |"]
    rows += [f"| `{s.name}` | {s.type_name} | `{json.dumps(s.default)}` | {s.description} |"
             for s in PARAMS]
    return "\n".join(rows)


def parameters_yaml() -> str:
    """config/hydranet.yaml: every parameter at its default, with its description."""
    lines = [
        "# Default parameters of hydranet_node (see `ros2 run hydranet_ros hydranet_node --help`).",
        "# Generated by hydranet_ros.node.parameters.parameters_yaml(); test_node_parameters checks it is current.",
        "# Use with: ros2 run hydranet_ros hydranet_node --ros-args --params-file config/hydranet.yaml",
        "/**:",
        "  ros__parameters:",
    ]
    for spec in PARAMS:
        # JSON scalars are YAML scalars, and they keep strings quoted (an empty or "auto" value)
        lines += [f"    # {spec.description}", f"    {spec.name}: {json.dumps(spec.default)}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------
# QoS as plain values; node.py maps them onto rclpy's enums.
# ----------------------------------------------------------------------------









# ----------------------------------------------------------------------------
# Newest-frame slot: the subscription writes, the worker thread takes.
# ----------------------------------------------------------------------------





# ----------------------------------------------------------------------------
# Which outputs to compute.
# ----------------------------------------------------------------------------



# ----------------------------------------------------------------------------
# Input decoding rules on duck-typed message fields.
# ----------------------------------------------------------------------------



# ----------------------------------------------------------------------------
# Camera info for the depth image.
# ----------------------------------------------------------------------------





# ----------------------------------------------------------------------------
# Class names and colours.
# ----------------------------------------------------------------------------







# ----------------------------------------------------------------------------
# Statistics for diagnostics and the periodic log line.
# ----------------------------------------------------------------------------













