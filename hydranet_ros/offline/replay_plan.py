"""What one replay will do, decided before the first frame: its options, output paths and topics.

Output topics are the node's (``messages.topics.OUTPUT_SPECS``) under the camera's
namespace: the image topic's parent, after dropping image_transport's
``/compressed`` level. ``/camera/image_raw`` and ``/camera/image_raw/compressed``
both give ``/camera/depth/image``, ``/camera/segmentation/image`` ...;
``--output-namespace`` replaces ``/camera``.

Beside the images the bag gets what the node publishes by default whatever images
it publishes: ``depth/camera_info`` (when the input has a CameraInfo) and
``segmentation/label_info`` (the node's ``publish_label_info`` is on by default). So,
like ``depth/camera_info``, label info is no ``--outputs`` name.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..inference.points import DEFAULT_STRIDE
from ..messages.image import DEFAULT_MAX_INPUT_PIXELS
from ..messages.topics import (
    DEPTH_CAMERA_INFO_TOPIC,
    LABEL_INFO_TOPIC,
    OUTPUT_SPECS,
    POINTS_TOPIC,
    camera_namespace,
    join_topic,
)
from .bagio import CAMERA_INFO_TYPE, IMAGE_TYPE, find_camera_info_topic, require_topic
from .evaluation import GroundTruthFolder
from .sources import BagSource, FrameSource
from .video import DEFAULT_FOURCC

DEFAULT_BAG_OUTPUTS = ("depth", "labels", "overlay", "depth_colour")
VIDEO_OUTPUTS = ("overlay", "depth_colour")


class ReplayError(ValueError):
    """An expected failure (bad input, bad option); reported as one line, no traceback."""


@dataclass(frozen=True)
class ReplayOptions:
    input: Path
    weights: Path | None = None
    topic: str | None = None
    output_bag: Path | None = None
    video: Path | None = None
    png_dir: Path | None = None
    report: Path | None = None
    per_frame: Path | None = None
    outputs: tuple[str, ...] = DEFAULT_BAG_OUTPUTS
    output_namespace: str | None = None
    camera_info_topic: str | None = None
    storage: str | None = None
    distro: str = "humble"
    gt_depth_topic: str | None = None
    gt_labels_topic: str | None = None
    gt_depth_dir: Path | None = None
    gt_labels_dir: Path | None = None
    gt_depth_scale: float = 0.001
    min_depth: float = 1e-3
    max_depth: float | None = None
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    overlay_alpha: float = 0.5
    depth_colormap: str = "turbo"
    depth_range: tuple[float, float] | None = None
    fps: float | None = None
    frame_id: str = "camera"
    max_frames: int | None = None
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS   # as the node's: 0 = no limit
    warmup: int = 1
    fourcc: str = DEFAULT_FOURCC
    overwrite: bool = False
    progress: bool = True
    # the labelled point cloud (--outputs ...,points), see inference.points
    points_stride: int = DEFAULT_STRIDE
    points_max_depth: float | None = None
    points_exclude: tuple[str, ...] = ()
    points_organized: bool = False
    points_colour: str = "input"

    @property
    def gt_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, given in (("depth", self.gt_depth_topic or self.gt_depth_dir),
                                              ("labels", self.gt_labels_topic or self.gt_labels_dir)) if given)

    def with_default_paths(self) -> "ReplayOptions":
        """The report beside the first output (``out`` -> ``out_report.json``) and, with ground
        truth, the per-frame rows beside the report, where not given."""
        report, per_frame = self.report, self.per_frame
        first_output = self.output_bag or self.video or self.png_dir
        if report is None and first_output is not None:
            report = _sibling(first_output, "_report.json")
        if per_frame is None and report is not None and self.gt_kinds:
            per_frame = _sibling(report, "_frames.csv")
        return dataclasses.replace(self, report=report, per_frame=per_frame)

    def staged_paths(self) -> dict[str, Path]:
        """Output kind -> final path, for every output asked for."""
        paths = {"bag": self.output_bag, "video": self.video, "png": self.png_dir, "report": self.report,
                 "per_frame": self.per_frame}
        return {kind: path for kind, path in paths.items() if path is not None}


def _sibling(path: Path, suffix: str) -> Path:
    """``out/run.json`` -> ``out/run<suffix>``."""
    return path.with_name(path.stem + suffix)


@dataclass(frozen=True)
class Plan:
    """Topics and outputs decided before the first frame."""

    namespace: str
    output_topics: dict[str, str]            # prediction field -> output topic
    depth_info_topic: str | None
    camera_info_topic: str | None
    gt_topics: dict[str, str]                 # topic -> kind
    gt_folders: dict[str, GroundTruthFolder]  # kind -> folder
    predict_outputs: tuple[str, ...]
    points_topic: str | None = None           # PointCloud2 output, when asked for
    label_info_topic: str | None = None       # the classes, once, with an output bag


def make_plan(options: ReplayOptions, source: FrameSource) -> Plan:
    namespace = (options.output_namespace if options.output_namespace is not None
                 else camera_namespace(source.image_topic, source.image_msgtype))
    output_topics = {spec.name: join_topic(namespace, spec.topic) for spec in OUTPUT_SPECS
                     if spec.name in options.outputs} if options.output_bag else {}
    points_topic = join_topic(namespace, POINTS_TOPIC) if options.output_bag and "points" in options.outputs else None
    label_info_topic = join_topic(namespace, LABEL_INFO_TOPIC) if options.output_bag else None
    gt_topics = {t: k for k, t in (("depth", options.gt_depth_topic), ("labels", options.gt_labels_topic)) if t}
    camera_info_topic = None
    if isinstance(source, BagSource):
        for topic, kind in gt_topics.items():
            require_topic(source.reader, topic, (IMAGE_TYPE,), f"ground-truth {kind}")
        camera_info_topic = options.camera_info_topic or find_camera_info_topic(
            source.reader, camera_namespace(source.image_topic, source.image_msgtype))
        if options.camera_info_topic:
            require_topic(source.reader, camera_info_topic, (CAMERA_INFO_TYPE,), "camera info")
        taken = set(source.topics) & (set(output_topics.values()) | {join_topic(namespace, DEPTH_CAMERA_INFO_TOPIC),
                                                                     points_topic, label_info_topic})
        if taken and options.output_bag:
            raise ReplayError(f"the input already has {', '.join(sorted(taken))}; "
                              "choose another prefix with --output-namespace")
    elif gt_topics:
        raise ReplayError("--gt-depth-topic/--gt-labels-topic need a bag input; use --gt-depth-dir/--gt-labels-dir")
    gt_folders = {kind: GroundTruthFolder(path, kind, options.gt_depth_scale)
                  for kind, path in (("depth", options.gt_depth_dir), ("labels", options.gt_labels_dir)) if path}
    wanted = set(output_topics) | set(options.gt_kinds)
    if options.video or options.png_dir:
        wanted |= set(VIDEO_OUTPUTS)
    depth_info = join_topic(namespace, DEPTH_CAMERA_INFO_TOPIC) if options.output_bag and camera_info_topic else None
    return Plan(namespace, output_topics, depth_info, camera_info_topic, gt_topics, gt_folders,
                tuple(spec.name for spec in OUTPUT_SPECS if spec.name in wanted), points_topic, label_info_topic)
