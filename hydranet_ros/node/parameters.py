"""The node's parameters: the table, the rules and the config they make, with no ROS import.

``node.py`` declares the parameters from ``PARAMS`` (with their ranges, for
``ros2 param describe``), checks every value with the same rules at start-up, at
``configure`` and when a parameter is set at run time, and turns them into a
``NodeConfig``. ``parameter_docs.py`` prints the same table for ``--help``, the
README and ``config/hydranet.yaml``. The module runs past 300 lines because the
table's descriptions (the user's documentation) are half of it.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ..inference.backends import BACKENDS
from ..inference.colour import COLORMAPS
from ..inference.points import COLOUR_SOURCES, DEFAULT_STRIDE, PointsOptions, UnknownClassError, points_options
from ..inference.device import PRECISION_CHOICES, resolve_device
from ..inference.shipped import SHIPPED_WEIGHTS, shipped_weights
from ..inference.weights import WeightsError
from ..messages.image import DEFAULT_MAX_INPUT_PIXELS
from ..messages.topics import OUTPUT_SPECS, POINTS_TOPIC, OutputSpec
from .param_rules import as_bool, as_float, as_int, as_str, bounded, camera_names, choice, device, size_or_empty, \
    string_list

NODE_NAME = "hydranet_node"
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("auto", "best_effort", "reliable")
DEFAULT_WARMUP_SIZE = "640x480"
# the outputs a bare `ros2 run` publishes; the colour images are for display and opt-in
DEFAULT_ON_OUTPUTS = ("depth", "labels", "overlay")

# When a parameter takes effect (ParamSpec.applies):
LIVE = "live"            # at once, whatever the lifecycle state
CONFIGURE = "configure"  # at the next configure; refused while the node is configured
START = "start"          # read once when the process starts; read-only afterwards


class ParamError(ValueError):
    """One or more parameters are invalid; the message names each of them."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"parameter '{name}': {why}" for name, why in self.problems))


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    check: Callable[[Any], Any]
    choices: tuple[str, ...] = ()
    bounds: tuple[float, float | None] | None = None   # (min, max or None = unbounded), numbers only
    applies: str = CONFIGURE

    @property
    def type_name(self) -> str:
        return {bool: "bool", int: "int", float: "double", str: "string", list: "string array"}[type(self.default)]


def _number(name: str, default: float | int, description: str, lo: float, hi: float | None = None,
            applies: str = CONFIGURE) -> ParamSpec:
    convert = as_int if isinstance(default, int) else as_float
    return ParamSpec(name, default, description, bounded(convert, lo, hi), bounds=(lo, hi), applies=applies)


def publish_param(spec: OutputSpec) -> str:
    """The parameter that switches an image output on, e.g. ``publish_depth``."""
    return f"publish_{spec.name}"


def _output_params() -> tuple[ParamSpec, ...]:
    return tuple(
        ParamSpec(publish_param(spec), spec.name in DEFAULT_ON_OUTPUTS,
                  f"Publish {spec.topic} ({spec.encoding}, {spec.description})", as_bool, applies=LIVE)
        for spec in OUTPUT_SPECS)


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("weights", "",
              "Weights file (.safetensors with model card); empty = the package's shipped "
              f"{SHIPPED_WEIGHTS}", as_str),
    ParamSpec("device", "auto", "Inference device: auto (CUDA if available), cpu, cuda or cuda:N",
              device),
    ParamSpec("precision", "auto",
              "Inference precision: auto (fp16 on CUDA, fp32 on the CPU and with the onnxruntime backend, "
              "whose graph is fp32), fp32, fp16 or bf16; one the device cannot run falls back with a "
              "warning (fp16 on the CPU to fp32, bf16 to fp16)",
              choice(PRECISION_CHOICES), PRECISION_CHOICES),
    ParamSpec("backend", "auto",
              "How the network runs: auto (the fastest the device offers, as hydranet_bench "
              "--compare-backends measures it: CUDA graphs on a GPU; on the CPU onnxruntime, else "
              "compile, else eager), eager, compile (torch.compile), cudagraph, onnxruntime or tensorrt; "
              "an unavailable one falls back with a warning and the log and diagnostics name the one "
              "that runs",
              choice(BACKENDS), BACKENDS),
    ParamSpec("warmup_size", DEFAULT_WARMUP_SIZE,
              "Input size WIDTHxHEIGHT run through the network before the first frame, so that "
              "compilation, CUDA-graph capture and cuDNN autotuning happen then: set it to the "
              "camera's size; empty = no warm-up (the first frame of each size pays instead)",
              size_or_empty),
    *_output_params(),
    ParamSpec("publish_depth_camera_info", True,
              "Subscribe to camera_info and publish depth/camera_info (the camera's intrinsics, which "
              "describe the depth image too, with the depth image's header)", as_bool, applies=LIVE),
    ParamSpec("publish_points", False,
              f"Subscribe to camera_info and publish {POINTS_TOPIC} (sensor_msgs/PointCloud2): the depth "
              "back-projected through the camera's K in the input's optical frame, fields x, y, z, rgb, label",
              as_bool, applies=LIVE),
    _number("points_stride", DEFAULT_STRIDE,
            "Take every Nth pixel in each direction into the cloud (4: 19,200 points at 640x480)", 1,
            applies=LIVE),
    _number("points_max_depth", 0.0, "Leave points farther than this many metres out of the cloud; 0 = no limit",
            0.0, applies=LIVE),
    ParamSpec("points_exclude_classes", [],
              "Class names (the model card's) whose points are left out of the cloud, e.g. [sky], or [sky, road] "
              "for an obstacle cloud; a name the model lacks is refused", string_list, applies=LIVE),
    ParamSpec("points_organized", False,
              "Keep the cloud on the strided image grid, NaN where a point is left out; false = only the kept "
              "points (1 x N)", as_bool, applies=LIVE),
    ParamSpec("points_colour", "input",
              "The rgb field of the cloud's points: input (the camera pixel) or class (the class colour)",
              choice(COLOUR_SOURCES), COLOUR_SOURCES, applies=LIVE),
    ParamSpec("publish_label_info", True,
              "Publish the classes once, latched (transient local), on segmentation/label_info: "
              "vision_msgs/LabelInfo (ids, names; 255 = unlabeled) where vision_msgs is installed, "
              "else std_msgs/String JSON with ids, names and colours", as_bool, applies=LIVE),
    _number("overlay_alpha", 0.5, "Opacity of the class colours in overlay/image, 0..1", 0.0, 1.0,
            applies=LIVE),
    _number("depth_display_min", 0.0, "Depth in metres at the low end of the colour map in depth/colorized",
            0.0, applies=LIVE),
    _number("depth_display_max", 0.0,
            "Depth in metres at the high end of the colour map in depth/colorized; "
            "0 = the display range in the weights' model card", 0.0, applies=LIVE),
    ParamSpec("depth_colormap", "turbo", f"Colour map of depth/colorized: {', '.join(COLORMAPS)}",
              choice(COLORMAPS), COLORMAPS, applies=LIVE),
    ParamSpec("qos_reliability", "auto",
              "Reliability of the image subscription: auto = what the camera offers (reliable when "
              "every publisher is reliable, else best effort; re-checked every second); best_effort "
              "accepts every camera but lets the transport drop large frames; reliable accepts only "
              "reliable cameras", choice(RELIABILITIES), RELIABILITIES),
    _number("qos_depth", 1, "History depth of the image subscription (keep last N)", 1),
    ParamSpec("input_transport", "raw",
              "raw: sensor_msgs/Image on 'image'; compressed: sensor_msgs/CompressedImage on "
              "'image/compressed'", choice(TRANSPORTS), TRANSPORTS),
    _number("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS,
            "Frames with more pixels (width x height) are dropped as bad; 0 = no limit", 0),
    ParamSpec("cameras", [],
              "Camera names for one node serving several cameras with one network, e.g. [front, left, right]: "
              "each reads <name>/image (or <name>/image/compressed) and <name>/camera_info and publishes "
              "<name>/depth/image, ... <name>/points; empty = one camera on image", camera_names),
    _number("batch_wait_ms", 0.0,
            "With several cameras: how long the first waiting frame may wait for the other cameras' frames "
            "so that they run as one batch; 0 = batch only the frames already waiting", 0.0, applies=LIVE),
    _number("log_period", 10.0, "Seconds between status lines in the log (fps, latency, drops); 0 = never",
            0.0, applies=LIVE),
    ParamSpec("autostart", True,
              "Configure and activate at start, as a plain node; false = stay unconfigured until a "
              "lifecycle manager (or `ros2 lifecycle set`) configures it", as_bool, applies=START),
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
    publish_points: bool
    points_stride: int
    points_max_depth: float             # 0 = no limit
    points_exclude_classes: tuple[str, ...]
    points_organized: bool
    points_colour: str
    publish_label_info: bool
    overlay_alpha: float
    depth_range: tuple[float, float] | None   # None = from the model card
    depth_colormap: str
    qos_reliability: str
    qos_depth: int
    input_transport: str
    max_input_pixels: int | None        # None = no limit
    cameras: tuple[str, ...]            # () = one camera on the plain topics
    batch_wait_s: float
    log_period: float
    autostart: bool = True

    def predictor_options(self) -> dict[str, Any]:
        """Keyword arguments for ``load_predictor`` besides the path."""
        return dict(device=self.device, precision=self.precision, backend=self.backend,
                    **self.display_options())

    def display_options(self) -> dict[str, Any]:
        """The predictor's display options, which may change while it runs."""
        return dict(overlay_alpha=self.overlay_alpha, depth_colormap=self.depth_colormap,
                    depth_range=self.depth_range)

    @property
    def wants_camera_info(self) -> bool:
        return self.publish_depth_camera_info or self.publish_points

    def points_options(self, class_names: Sequence[str]) -> PointsOptions:
        """The cloud's options for a model with ``class_names``; a ``ParamError`` naming
        ``points_exclude_classes`` for a class the model lacks."""
        try:
            return points_options(class_names, stride=self.points_stride, max_depth=self.points_max_depth,
                                  exclude_classes=self.points_exclude_classes, organized=self.points_organized,
                                  colour=self.points_colour)
        except UnknownClassError as error:
            raise ParamError([("points_exclude_classes", str(error))]) from None


def defaults() -> dict[str, Any]:
    return {spec.name: spec.default for spec in PARAMS}


def _checked(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Each value through its rule (missing ones take their default), and what failed."""
    problems: list[tuple[str, str]] = []
    checked: dict[str, Any] = {}
    for spec in PARAMS:
        try:
            checked[spec.name] = spec.check(values.get(spec.name, spec.default))
        except ValueError as error:
            problems.append((spec.name, str(error)))
    problems += [(name, "unknown parameter") for name in sorted(set(values) - set(PARAMS_BY_NAME))]
    return checked, problems


def load_config(values: Mapping[str, Any]) -> NodeConfig:
    """Check every parameter (missing ones take their default) and return the config.

    All problems are gathered into one ``ParamError`` so a user fixes a launch
    file in one go rather than one restart per typo."""
    checked, problems = _checked(values)
    if problems:
        raise ParamError(problems)

    outputs = tuple(spec.name for spec in OUTPUT_SPECS if checked[publish_param(spec)])
    if not outputs and not checked["publish_depth_camera_info"] and not checked["publish_points"]:
        problems.append((", ".join([*(publish_param(s) for s in OUTPUT_SPECS), "publish_points"]),
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
        publish_points=checked["publish_points"], points_stride=checked["points_stride"],
        points_max_depth=checked["points_max_depth"], points_exclude_classes=checked["points_exclude_classes"],
        points_organized=checked["points_organized"], points_colour=checked["points_colour"],
        publish_label_info=checked["publish_label_info"], overlay_alpha=checked["overlay_alpha"],
        depth_range=(lo, hi) if hi > 0 else None, depth_colormap=checked["depth_colormap"],
        qos_reliability=checked["qos_reliability"], qos_depth=checked["qos_depth"],
        input_transport=checked["input_transport"],
        max_input_pixels=checked["max_input_pixels"] or None, cameras=checked["cameras"],
        batch_wait_s=checked["batch_wait_ms"] / 1000.0, log_period=checked["log_period"],
        autostart=checked["autostart"])


def check_change(values: Mapping[str, Any], changes: Mapping[str, Any], configured: bool) -> NodeConfig | None:
    """Judge a run-time change of the node's parameters (others in ``changes`` are ignored).

    ``values`` are the current ones. Returns the config with the change applied, or
    None while the node is not configured (it reads its parameters at configure).
    Raises a ``ParamError`` for a value its rule refuses, for a parameter that
    cannot change in this state, or when the change adds a problem to the whole
    (every output off, a display range upside down): the same rules as at start-up."""
    ours = {name: value for name, value in changes.items() if name in PARAMS_BY_NAME}
    refused = [(name, _when_refused(PARAMS_BY_NAME[name].applies))
               for name in ours if not _can_change(PARAMS_BY_NAME[name].applies, configured)]
    if refused:
        raise ParamError(refused)
    before = _problems({name: values[name] for name in values if name in PARAMS_BY_NAME})
    merged = {**values, **ours}
    added = [problem for problem in _problems(merged) if problem not in before]
    if added:
        raise ParamError(added)
    return load_config({name: merged[name] for name in merged if name in PARAMS_BY_NAME}) if configured else None


def _problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    try:
        load_config(values)
    except ParamError as error:
        return error.problems
    return []


def _can_change(applies: str, configured: bool) -> bool:
    return applies == LIVE or (applies == CONFIGURE and not configured)


def _when_refused(applies: str) -> str:
    if applies == START:
        return "is read once at start-up; restart the node to change it"
    return ("is read at configure and the node is configured: deactivate and clean it up "
            "(ros2 lifecycle set <node> deactivate, then cleanup), set it, then configure again")


def unknown_overrides(overrides: Iterable[str], known: Iterable[str]) -> list[str]:
    """A warning for each override that names no parameter of the node (``-p devcie:=cpu``),
    with the closest known name; ROS 2 would otherwise ignore it without a word."""
    known = sorted(set(known))
    notes = []
    for name in sorted(set(overrides) - set(known)):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        notes.append(f"'{name}' is not a parameter of {NODE_NAME} and is ignored{hint}")
    return notes


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


def resolve_weights(value: str) -> Path:
    """The weights file to load: the parameter, or the shipped file wherever this install keeps it."""
    if not value:
        try:
            return shipped_weights(hint="set the parameter to a .safetensors file")
        except WeightsError as error:
            raise ParamError([("weights", f"is empty and {error}")]) from None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ParamError([("weights", f"file not found: {path}")])
    return path
