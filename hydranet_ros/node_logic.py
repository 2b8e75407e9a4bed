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
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Mapping, Sequence, TypeVar

import numpy as np
import torch

from .backends import BACKENDS
from .colour import COLORMAPS
from .export import parse_size
from .image_codec import decode_compressed, decode_image
from .outputs import OUTPUT_SPECS, OutputSpec
from .predictor import PRECISION_CHOICES, resolve_device
from .timing import stage_stats

NODE_NAME = "hydranet_node"
PACKAGE = "hydranet_ros"
# relative to the package's share directory
SHIPPED_WEIGHTS = "weights/hydranet_synthetic_street.safetensors"
IMAGE_TOPIC = "image"
# image_transport's convention: the compressed form lives under the raw topic
COMPRESSED_TOPIC = "image/compressed"
CAMERA_INFO_TOPIC = "camera_info"
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEFAULT_WARMUP_SIZE = "640x480"
UNLABELED_ID = 255
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
        "# Generated by hydranet_ros.node_logic.parameters_yaml(); test_node_logic checks it is current.",
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

@dataclass(frozen=True)
class QosChoice:
    reliability: str   # "best_effort" | "reliable"
    depth: int
    durability: str = "volatile"   # "volatile" | "transient_local"
    history: str = "keep_last"


def subscription_qos(config: NodeConfig) -> QosChoice:
    """Sensor-data style by default: best effort matches reliable and best-effort publishers."""
    return QosChoice(reliability=config.qos_reliability, depth=config.qos_depth)


# Outputs are reliable (RViz and recorders default to reliable) but keep only the newest
# frame, so a slow subscriber never makes the node hold old images.
PUBLISHER_QOS = QosChoice(reliability="reliable", depth=1)
# Camera drivers publish camera_info reliable or best effort; best effort accepts both.
CAMERA_INFO_QOS = QosChoice(reliability="best_effort", depth=1)
# Class names and colours are sent once; late joiners get them from the publisher's history.
LATCHED_QOS = QosChoice(reliability="reliable", depth=1, durability="transient_local")


def input_topic(transport: str) -> str:
    return COMPRESSED_TOPIC if transport == "compressed" else IMAGE_TOPIC


# ----------------------------------------------------------------------------
# Newest-frame slot: the subscription writes, the worker thread takes.
# ----------------------------------------------------------------------------

T = TypeVar("T")


class FrameSlot(Generic[T]):
    """Holds only the newest frame. ``put`` overwrites and counts what it overwrote as
    dropped, so a slow GPU skips frames instead of building a backlog."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._closed = False
        self._dropped = 0
        self._cond = threading.Condition()

    def put(self, item: T) -> bool:
        """Store ``item``; True if an unprocessed frame was overwritten (dropped)."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self._dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest frame, waiting up to ``timeout`` s; None on timeout or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake the worker and make every later ``take`` return None."""
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        return self._dropped


# ----------------------------------------------------------------------------
# Which outputs to compute.
# ----------------------------------------------------------------------------

def select_outputs(enabled: Iterable[str], subscriber_counts: Mapping[str, int]) -> tuple[str, ...]:
    """The enabled outputs somebody listens to, in OUTPUT_SPECS order; the predictor
    computes exactly these, so an output nobody subscribes to costs nothing."""
    wanted = set(enabled)
    return tuple(spec.name for spec in OUTPUT_SPECS
                 if spec.name in wanted and subscriber_counts.get(spec.name, 0) > 0)


# ----------------------------------------------------------------------------
# Input decoding rules on duck-typed message fields.
# ----------------------------------------------------------------------------

def decode_input(msg: Any, transport: str, max_pixels: int | None) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage (anything with their fields) -> RGB uint8.
    Raises ``ImageDecodeError`` naming the problem."""
    if transport == "compressed":
        return decode_compressed(msg.data, max_pixels=max_pixels)
    return decode_image(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data,
                        max_pixels=max_pixels)


# ----------------------------------------------------------------------------
# Camera info for the depth image.
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    k: tuple[float, ...]          # 3x3 row-major
    p: tuple[float, ...]          # 3x4 row-major
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)   # x_offset, y_offset, width, height


def scale_intrinsics(info: Intrinsics, input_size: tuple[int, int], output_size: tuple[int, int]) -> Intrinsics:
    """The camera's intrinsics for an output image of ``output_size`` (width, height)
    computed from an input image of ``input_size``.

    Scales like image_proc's resize: fx, cx, fy, cy (in K and P), P's Tx and Ty, the
    calibrated width/height and the ROI all by the output/input ratio. D, R and binning
    do not depend on the image size and are left to the caller to copy. An uncalibrated
    camera_info (width/height 0) stays uncalibrated."""
    (in_w, in_h), (out_w, out_h) = input_size, output_size
    if min(in_w, in_h, out_w, out_h) <= 0:
        raise ValueError(f"image sizes must be positive, got {input_size} -> {output_size}")
    if (in_w, in_h) == (out_w, out_h):
        return info
    sx, sy = out_w / in_w, out_h / in_h
    k = list(info.k)
    k[0], k[2] = k[0] * sx, k[2] * sx          # fx, cx
    k[4], k[5] = k[4] * sy, k[5] * sy          # fy, cy
    p = list(info.p)
    p[0], p[2], p[3] = p[0] * sx, p[2] * sx, p[3] * sx   # fx', cx', Tx = -fx' * baseline
    p[5], p[6], p[7] = p[5] * sy, p[6] * sy, p[7] * sy   # fy', cy', Ty
    x, y, w, h = info.roi
    return Intrinsics(width=round(info.width * sx), height=round(info.height * sy), k=tuple(k), p=tuple(p),
                      roi=(round(x * sx), round(y * sy), round(w * sx), round(h * sy)))


# ----------------------------------------------------------------------------
# Class names and colours.
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelEntry:
    class_id: int
    name: str
    colour: tuple[int, int, int]


def label_entries(class_names: Sequence[str], palette: Sequence[Sequence[int]]) -> list[LabelEntry]:
    """One entry per class plus 255 = unlabeled, as vision_msgs/LabelInfo reserves the
    maximum id of the label image's type for the unlabeled class."""
    entries = [LabelEntry(i, name, tuple(int(c) for c in colour))
               for i, (name, colour) in enumerate(zip(class_names, palette))]
    entries.append(LabelEntry(UNLABELED_ID, "unlabeled", (0, 0, 0)))
    return entries


def label_info_json(entries: Sequence[LabelEntry]) -> str:
    """The std_msgs/String fallback when vision_msgs is not installed."""
    return json.dumps({"unlabeled_id": UNLABELED_ID,
                       "classes": [{"id": e.class_id, "name": e.name, "colour": list(e.colour)}
                                   for e in entries]})


# ----------------------------------------------------------------------------
# Statistics for diagnostics and the periodic log line.
# ----------------------------------------------------------------------------

def stamp_to_ns(sec: int, nanosec: int) -> int:
    return int(sec) * 1_000_000_000 + int(nanosec)


def stamp_latency(stamp_ns: int, now_ns: int) -> float | None:
    """Seconds from the image stamp to now; None for an unset (zero) stamp, which would
    report the age of the epoch, or while simulated time has not started (now = 0).
    May be negative when the camera's clock runs ahead of ours."""
    if stamp_ns <= 0 or now_ns <= 0:
        return None
    return (now_ns - stamp_ns) / 1e9


@dataclass(frozen=True)
class StatsSnapshot:
    received: int
    processed: int
    dropped: int
    bad: int
    out_of_memory: int
    errors: int
    idle: int               # frames skipped because nobody subscribed
    fps: float
    latency_ms: tuple[float, float, float]     # p50, p95, max over the window
    inference_ms: tuple[float, float, float]
    last_error: str
    device: str
    seconds_since_frame: float | None

    def as_pairs(self) -> list[tuple[str, str]]:
        """Key/value strings for a diagnostic status."""
        def ms(values: tuple[float, float, float]) -> str:
            return "n/a" if math.isnan(values[0]) else "/".join(f"{v:.1f}" for v in values)
        return [("device", self.device), ("frame rate (Hz)", f"{self.fps:.2f}"),
                ("latency stamp->publish p50/p95/max (ms)", ms(self.latency_ms)),
                ("inference p50/p95/max (ms)", ms(self.inference_ms)),
                ("frames received", str(self.received)), ("frames processed", str(self.processed)),
                ("frames dropped (newer frame arrived)", str(self.dropped)),
                ("frames bad (could not decode)", str(self.bad)),
                ("frames skipped (no subscribers)", str(self.idle)),
                ("GPU out of memory", str(self.out_of_memory)), ("inference errors", str(self.errors)),
                ("last error", self.last_error or "none")]


class Stats:
    """Thread-safe counters and rolling timings; the subscription, the worker and the
    diagnostics timer all touch it."""

    def __init__(self, device: str = "", window_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 max_samples: int = 1000) -> None:
        self.device = device
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._done_times: deque[float] = deque(maxlen=max_samples)
        self._latency: deque[float] = deque(maxlen=max_samples)
        self._inference: deque[float] = deque(maxlen=max_samples)
        self._last_frame: float | None = None
        self.received = self.processed = self.dropped = self.bad = 0
        self.out_of_memory = self.errors = self.idle = 0
        self.last_error = ""

    def frame_received(self, replaced: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(replaced)
            self._last_frame = self._clock()

    def frame_bad(self, reason: str) -> None:
        with self._lock:
            self.bad += 1
            self.last_error = reason

    def frame_idle(self) -> None:
        with self._lock:
            self.idle += 1

    def frame_out_of_memory(self, reason: str) -> None:
        with self._lock:
            self.out_of_memory += 1
            self.last_error = reason

    def frame_error(self, reason: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = reason

    def frame_done(self, inference_s: float, latency_s: float | None) -> None:
        with self._lock:
            self.processed += 1
            self._done_times.append(self._clock())
            self._inference.append(inference_s)
            if latency_s is not None:
                self._latency.append(latency_s)

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            now = self._clock()
            cutoff = now - self._window_s
            recent = [t for t in self._done_times if t >= cutoff]
            span = min(self._window_s, now - self._start)
            fps = len(recent) / span if span > 0 else 0.0
            n = len(recent)

            def summary(samples: deque[float]) -> tuple[float, float, float]:
                # timings of the frames inside the window only, in ms as replay reports them
                stats = stage_stats(list(samples)[-n:] if n else [])
                return stats.p50_ms, stats.p95_ms, stats.max_ms

            return StatsSnapshot(
                received=self.received, processed=self.processed, dropped=self.dropped, bad=self.bad,
                out_of_memory=self.out_of_memory, errors=self.errors, idle=self.idle, fps=fps,
                latency_ms=summary(self._latency),
                inference_ms=summary(self._inference), last_error=self.last_error, device=self.device,
                seconds_since_frame=None if self._last_frame is None else now - self._last_frame)


@dataclass
class Health:
    level: str      # "ok" | "warn" | "error"
    message: str


class HealthJudge:
    """Turns successive snapshots into a diagnostic level: problems are judged on what
    happened since the previous report, so one bad frame an hour ago doesn't keep the
    status at WARN forever."""

    def __init__(self, stale_after_s: float = 5.0) -> None:
        self._stale_after_s = stale_after_s
        self._previous: StatsSnapshot | None = None

    def judge(self, snap: StatsSnapshot, topic: str = IMAGE_TOPIC) -> Health:
        prev = self._previous
        self._previous = snap
        new = {name: getattr(snap, name) - (getattr(prev, name) if prev else 0)
               for name in ("bad", "out_of_memory", "errors", "processed", "idle")}
        if snap.received == 0:
            return Health("warn", f"no images received yet on '{topic}'")
        if new["out_of_memory"]:
            return Health("error", f"{new['out_of_memory']} frame(s) ran out of GPU memory: {snap.last_error}")
        if new["errors"]:
            return Health("error", f"{new['errors']} frame(s) failed: {snap.last_error}")
        if new["bad"]:
            return Health("warn", f"{new['bad']} bad frame(s) dropped: {snap.last_error}")
        if snap.seconds_since_frame is not None and snap.seconds_since_frame > self._stale_after_s:
            return Health("warn", f"no image for {snap.seconds_since_frame:.1f} s on '{topic}'")
        if new["idle"] and not new["processed"]:
            return Health("ok", "idle: no subscribers to any output")
        return Health("ok", f"{snap.fps:.1f} fps")


def format_log_line(snap: StatsSnapshot) -> str:
    def ms(values: tuple[float, float, float]) -> str:
        return "n/a" if math.isnan(values[0]) else f"{values[0]:.0f}/{values[1]:.0f} ms"
    return (f"{snap.fps:.1f} fps on {snap.device}, latency p50/p95 {ms(snap.latency_ms)}, "
            f"inference p50/p95 {ms(snap.inference_ms)}, frames: {snap.received} received, "
            f"{snap.processed} processed, {snap.dropped} dropped, {snap.bad} bad, "
            f"{snap.idle} idle, {snap.out_of_memory} out of memory, {snap.errors} errors")
