"""hydranet_replay: run the predictor over recorded data, with no ROS installation.

Input: a rosbag2 (sqlite3 or MCAP) directory, a ROS 1 ``.bag``, a video file or
a folder of images. Output: a rosbag2 holding the recording plus the node's
topics, and/or an MP4 / PNG sequence of overlay | coloured depth; always a
speed report, and metrics when ground truth is given.

Output topics are the node's (``outputs.OUTPUT_SPECS``) under the camera's
namespace: the image topic's parent, after dropping image_transport's
``/compressed`` level. ``/camera/image_raw`` and ``/camera/image_raw/compressed``
both give ``/camera/depth/image``, ``/camera/segmentation/image`` ...;
``--output-namespace`` replaces ``/camera``. Headers and log times are the
input message's. ``<ns>/depth/camera_info`` is the camera's CameraInfo
(``<camera ns>/camera_info``) restamped with each image's header.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TextIO

import numpy as np

from ..common.atomic import OutputExistsError, StagedPath, check_writable
from ..common.timing import StageTimer, format_table
from ..inference.backends import BACKENDS
from ..inference.predictor import PRECISION_CHOICES, Prediction, Predictor, load_predictor
from ..inference.weights import WeightsError
from ..messages.image import ImageDecodeError
from ..messages.stamps import header_of
from ..messages.topics import DEPTH_CAMERA_INFO_TOPIC, OUTPUT_SPECS, camera_namespace, join_topic
from .bagio import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    DISTROS,
    IMAGE_TYPE,
    STORAGES,
    BagError,
    BagMessage,
    BagWriter,
    compressed_message,
    find_camera_info_topic,
    first_message,
    image_message,
    image_to_array,
    require_topic,
    with_header,
)
from .evaluation import (
    Evaluation,
    GroundTruthError,
    GroundTruthFolder,
    depth_from_array,
    json_safe,
    labels_from_array,
    write_rows,
)
from .sources import BagSource, Frame, FrameSource, SourceError, open_source
from .video import DEFAULT_FOURCC, SideBySideWriter

PROG = "hydranet_replay"
STAGES = ("read", "decode", "predict", "encode", "write", "evaluate")
DEFAULT_BAG_OUTPUTS = ("depth", "labels", "overlay", "depth_colour")
VIDEO_OUTPUTS = ("overlay", "depth_colour")
MAX_LISTED_SKIPS = 100


class ReplayError(ValueError):
    """An expected failure (bad input, bad option); reported as one line, no traceback."""


EXPECTED_ERRORS = (ReplayError, BagError, SourceError, GroundTruthError, WeightsError, OutputExistsError)


@dataclass
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
    warmup: int = 1
    fourcc: str = DEFAULT_FOURCC
    overwrite: bool = False
    progress: bool = True

    @property
    def gt_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, given in (("depth", self.gt_depth_topic or self.gt_depth_dir),
                                              ("labels", self.gt_labels_topic or self.gt_labels_dir)) if given)


@dataclass
class _Run:
    """Mutable state of one replay."""

    frames_read: int = 0
    frames_done: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    skipped_count: int = 0
    camera_info: Any = None      # latest CameraInfo as a writer-typestore message
    warmup_s: float = 0.0
    truth_s: float = 0.0         # ground-truth handling since the last frame, moved from 'read' to 'evaluate'


# ---------------------------------------------------------------- the replay

def replay(options: ReplayOptions, out: TextIO | None = None) -> dict[str, Any]:
    """Run one replay; returns the report (also written to ``options.report``). Prints to ``out``
    (default: the current sys.stdout)."""
    out = out or sys.stdout
    first_output = options.output_bag or options.video or options.png_dir
    if options.report is None and first_output is not None:
        options.report = _sibling(first_output, "_report.json")
    if options.per_frame is None and options.report is not None and options.gt_kinds:
        options.per_frame = _sibling(options.report, "_frames.csv")
    staged = [p for p in (options.output_bag, options.video, options.png_dir, options.report, options.per_frame)
              if p is not None]
    for path in staged:  # before any work: an hour of inference must not end in 'exists'
        check_writable(path, options.overwrite)
        if path.resolve() == options.input.resolve():
            raise ReplayError(f"output {path} is the input")
    if len(set(map(Path.resolve, staged))) != len(staged):
        raise ReplayError("two outputs have the same path")
    predictor = _load_predictor(options)
    exclude = [t for t in (options.gt_depth_topic, options.gt_labels_topic) if t]
    source = open_source(options.input, options.topic, exclude, options.frame_id, fps=options.fps)
    try:
        return _replay(options, predictor, source, out)
    finally:
        source.close()


def _load_predictor(options: ReplayOptions) -> Predictor:
    if options.weights is None:
        from ..inference.shipped import shipped_weights

        options.weights = shipped_weights()
    try:
        return load_predictor(options.weights, device=options.device, precision=options.precision,
                              backend=options.backend, overlay_alpha=options.overlay_alpha,
                              depth_colormap=options.depth_colormap, depth_range=options.depth_range)
    except WeightsError:
        raise
    except ValueError as error:  # device, precision, colour map or range the predictor refuses
        raise ReplayError(str(error)) from None


@dataclass
class _Plan:
    """Topics and outputs decided before the first frame."""

    namespace: str
    output_topics: dict[str, str]            # prediction field -> output topic
    depth_info_topic: str | None
    camera_info_topic: str | None
    gt_topics: dict[str, str]                 # topic -> kind
    gt_folders: dict[str, GroundTruthFolder]  # kind -> folder
    gt_depth_scale: float
    predict_outputs: tuple[str, ...]


def _plan(options: ReplayOptions, source: FrameSource) -> _Plan:
    namespace = (options.output_namespace if options.output_namespace is not None
                 else camera_namespace(source.image_topic, source.image_msgtype))
    output_topics = {spec.name: join_topic(namespace, spec.topic) for spec in OUTPUT_SPECS
                     if spec.name in options.outputs} if options.output_bag else {}
    gt_topics = {t: k for k, t in (("depth", options.gt_depth_topic), ("labels", options.gt_labels_topic)) if t}
    camera_info_topic = None
    if isinstance(source, BagSource):
        for topic, kind in gt_topics.items():
            require_topic(source.reader, topic, (IMAGE_TYPE,), f"ground-truth {kind}")
        camera_info_topic = options.camera_info_topic or find_camera_info_topic(
            source.reader, camera_namespace(source.image_topic, source.image_msgtype))
        if options.camera_info_topic:
            require_topic(source.reader, camera_info_topic, (CAMERA_INFO_TYPE,), "camera info")
        taken = set(source.topics) & (set(output_topics.values()) | {join_topic(namespace, DEPTH_CAMERA_INFO_TOPIC)})
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
    return _Plan(namespace, output_topics, depth_info, camera_info_topic, gt_topics, gt_folders,
                 options.gt_depth_scale, tuple(spec.name for spec in OUTPUT_SPECS if spec.name in wanted))


def _replay(options: ReplayOptions, predictor: Predictor, source: FrameSource, out: TextIO) -> dict[str, Any]:
    plan = _plan(options, source)
    card = predictor.card
    evaluation = None
    if options.gt_kinds:
        evaluation = Evaluation(options.gt_kinds, card.model.num_classes, card.ignore_index, card.class_names,
                                options.min_depth, options.max_depth or float("inf"))
    timer, run = StageTimer(STAGES if evaluation else STAGES[:-1]), _Run()
    with ExitStack() as staging:
        staged = {name: StagedPath(path, options.overwrite) for name, path in
                  (("bag", options.output_bag), ("video", options.video), ("png", options.png_dir),
                   ("report", options.report), ("per_frame", options.per_frame)) if path}
        tmp = {name: staging.enter_context(s) for name, s in staged.items()}
        start = time.perf_counter()
        with ExitStack() as writers:
            bag = None
            if "bag" in tmp:
                storage = options.storage or (source.storage if isinstance(source, BagSource)
                                              and source.storage in STORAGES else "sqlite3")
                bag = writers.enter_context(BagWriter(tmp["bag"], storage=storage, distro=options.distro))
                if isinstance(source, BagSource):
                    bag.add_copies(source.reader, source.reader.connections)
                    if plan.camera_info_topic:
                        first = first_message(source.reader, plan.camera_info_topic)
                        run.camera_info = _camera_info(bag, first) if first else None
            video = None
            if "video" in tmp or "png" in tmp:
                fps = options.fps or getattr(source, "fps", None) or 10.0
                video = writers.enter_context(SideBySideWriter(tmp.get("video"), tmp.get("png"), fps, options.fourcc))
            topics = None if bag else list(plan.gt_topics)
            progress = _progress(options, source)
            frames = source.messages(topics)
            try:
                last = time.perf_counter()
                for item in frames:
                    if not isinstance(item, Frame):
                        _message(item, plan, source, bag, evaluation, run)
                        continue
                    # 'read' is everything since the previous frame: reading, copying other messages, ground truth
                    read_s = time.perf_counter() - last
                    _frame(item, read_s, options, plan, predictor, source, bag, video, evaluation, timer, run)
                    progress.update(1)
                    if options.max_frames is not None and run.frames_read >= options.max_frames:
                        break
                    last = time.perf_counter()
            finally:
                progress.close()
        wall_s = time.perf_counter() - start - run.warmup_s
        summary = evaluation.finish() if evaluation else None
        if "per_frame" in tmp:
            write_rows(tmp["per_frame"], evaluation.rows if evaluation else [])
        # a video with no decodable frame was never opened: there is nothing to rename into place
        written = {k: v for k, v in staged.items() if k == "report" or tmp[k].exists()}
        report = _report(options, predictor, source, plan, timer, run, wall_s, summary,
                         {k: str(v.final) for k, v in written.items()})
        if "report" in tmp:
            tmp["report"].write_text(json.dumps(json_safe(report), indent=2) + "\n")
        for path in written.values():
            path.commit()
    _print_report(report, out)
    return report


def _progress(options: ReplayOptions, source: FrameSource) -> Any:
    from tqdm import tqdm

    total = source.total if options.max_frames is None else min(source.total or options.max_frames,
                                                                options.max_frames)
    # disable=None: no bar when stderr is not a terminal (logs, CI)
    return tqdm(total=total, unit="frame", desc=PROG, disable=None if options.progress else True, leave=False)


def _camera_info(bag: BagWriter, message: BagMessage) -> Any:
    """A CameraInfo from the input, as a message of the writer's types (ROS 1 ones converted)."""
    try:
        return bag.typestore.deserialize_cdr(bag.to_cdr(message), CAMERA_INFO_TYPE)
    except Exception:  # noqa: BLE001 - a corrupt CameraInfo only costs depth/camera_info until the next one
        return None


def _message(message: BagMessage, plan: _Plan, source: FrameSource, bag: BagWriter | None,
             evaluation: Evaluation | None, run: _Run) -> None:
    """A non-image message: copy it, and take ground truth and camera info from it."""
    if bag is not None:
        bag.copy(message)
        if message.topic == plan.camera_info_topic:
            run.camera_info = _camera_info(bag, message) or run.camera_info
    kind = plan.gt_topics.get(message.topic)
    if kind is None or evaluation is None:
        return
    assert isinstance(source, BagSource)
    start = time.perf_counter()
    try:
        msg = source.deserialize(message)
        array, encoding = image_to_array(msg)
        truth = (depth_from_array(array, encoding, plan.gt_depth_scale) if kind == "depth"
                 else labels_from_array(array, encoding))
        evaluation.add_truth(kind, header_of(msg).stamp_ns, truth)
    except (GroundTruthError, ImageDecodeError) as error:
        evaluation.truth_error(f"{message.topic} at {message.log_time_ns}: {error}")
    except Exception as error:  # noqa: BLE001 - corrupt bytes: see sources.BagSource._frame
        evaluation.truth_error(f"{message.topic} at {message.log_time_ns}: could not be deserialised ({error})")
    finally:
        run.truth_s += time.perf_counter() - start


def _frame(frame: Frame, read_s: float, options: ReplayOptions, plan: _Plan, predictor: Predictor,
           source: FrameSource, bag: BagWriter | None, video: SideBySideWriter | None, evaluation: Evaluation | None,
           timer: StageTimer, run: _Run) -> None:
    run.frames_read += 1
    try:
        with timer.stage("decode"):
            rgb = frame.decode()
    except ImageDecodeError as error:
        run.skipped_count += 1
        if len(run.skipped) < MAX_LISTED_SKIPS:
            run.skipped.append({"index": frame.index, "stamp_ns": frame.header.stamp_ns, "reason": str(error)})
        if bag is not None and frame.original is not None:
            bag.copy(frame.original)  # the recording stays complete; only the outputs are missing
        return
    # ground truth logged between frames is evaluation work, not reading (totals exact, attribution +-1 frame)
    truth_s, run.truth_s = run.truth_s, 0.0
    timer.record("read", read_s - truth_s)
    if run.frames_done == 0 and options.warmup > 0:
        # lazy initialisation (allocators, cuDNN autotuning) would otherwise be the first frame's latency
        warm = time.perf_counter()
        predictor.warmup(rgb.shape[0], rgb.shape[1], options.warmup)
        run.warmup_s = time.perf_counter() - warm
    with timer.stage("predict"):
        prediction = predictor.predict(rgb, plan.predict_outputs)
    with timer.stage("encode"):
        messages = _encode_messages(frame, rgb, prediction, plan, source, bag, run) if bag else []
        composed = video.compose(prediction.overlay, prediction.depth_colour) if video else None
    with timer.stage("write"):
        if bag is not None:
            if frame.original is not None:
                bag.copy(frame.original)
            for topic, msgtype, raw in messages:
                bag.write_serialized(topic, msgtype, raw, frame.log_time_ns)
        if video is not None:
            video.write(composed, frame.index)
    if evaluation is not None:
        start = time.perf_counter()
        _evaluate(frame, prediction, plan, evaluation)
        timer.record("evaluate", time.perf_counter() - start + truth_s)
    run.frames_done += 1


def _encode_messages(frame: Frame, rgb: np.ndarray, prediction: Prediction, plan: _Plan, source: FrameSource,
                     bag: BagWriter, run: _Run) -> list[tuple[str, str, Any]]:
    """The frame's output messages, serialised: (topic, msgtype, CDR bytes)."""
    ts, header = bag.typestore, frame.header
    msgs = [(topic, image_message(ts, getattr(prediction, spec.name), spec.encoding, header))
            for spec in OUTPUT_SPECS if (topic := plan.output_topics.get(spec.name))]
    if plan.depth_info_topic and run.camera_info is not None:
        msgs.append((plan.depth_info_topic, with_header(ts, run.camera_info, header)))
    if frame.original is None:  # video or folder: the frame itself becomes the recording
        original = (compressed_message(ts, rgb, header) if source.image_msgtype == COMPRESSED_TYPE
                    else image_message(ts, rgb, "rgb8", header))
        msgs.insert(0, (source.image_topic, original))
    return [(topic, msg.__msgtype__, bag.serialize(msg)) for topic, msg in msgs]


def _evaluate(frame: Frame, prediction: Prediction, plan: _Plan, evaluation: Evaluation) -> None:
    for kind, folder in plan.gt_folders.items():
        try:
            truth = folder.load(frame.name)
        except GroundTruthError as error:
            evaluation.truth_error(str(error))
            continue
        if truth is not None:
            evaluation.add_truth(kind, frame.header.stamp_ns, truth)
    evaluation.add_prediction(frame.index, frame.name, frame.header.stamp_ns, prediction.depth, prediction.labels)


def _sibling(path: Path, suffix: str) -> Path:
    """``out/run.json`` -> ``out/run<suffix>``."""
    return path.with_name(path.stem + suffix)


# ---------------------------------------------------------------- report

def _report(options: ReplayOptions, predictor: Predictor, source: FrameSource, plan: _Plan, timer: StageTimer,
            run: _Run, wall_s: float, evaluation: dict[str, Any] | None, outputs: dict[str, str]) -> dict[str, Any]:
    return {
        "input": str(options.input),
        "source": source.kind,
        "image_topic": source.image_topic,
        "image_type": source.image_msgtype,
        "output_topics": plan.output_topics,
        "depth_camera_info": plan.depth_info_topic if run.camera_info is not None else None,
        "weights": str(options.weights),
        "model": predictor.card.provenance,
        "device": str(predictor.device),
        "precision": predictor.precision,
        "backend": getattr(predictor, "backend", "eager"),
        "frames": {"read": run.frames_read, "processed": run.frames_done, "skipped": run.skipped_count,
                   "skipped_frames": run.skipped},
        "speed": {"frames": run.frames_done, "wall_s": wall_s,
                  "fps": run.frames_done / wall_s if wall_s > 0 else float("nan"), "warmup_s": run.warmup_s,
                  "stages_ms": {name: stats.to_dict() for name, stats in timer.stats().items()}},
        "evaluation": evaluation,
        "outputs": outputs,
    }


def _print_report(report: dict[str, Any], out: TextIO) -> None:
    frames, speed = report["frames"], report["speed"]
    print(f"{PROG}: {report['input']} ({report['source']}), image topic {report['image_topic']}", file=out)
    print(f"frames: {frames['processed']} processed, {frames['skipped']} skipped", file=out)
    for skip in frames["skipped_frames"][:5]:
        print(f"  skipped frame {skip['index']} (stamp {skip['stamp_ns']}): {skip['reason']}", file=out)
    print(f"speed: {speed['fps']:.2f} FPS, {speed['frames']} frames in {speed['wall_s']:.2f} s on "
          f"{report['device']} ({report['precision']}, {report['backend']}), "
          f"warm-up {speed['warmup_s']:.2f} s excluded", file=out)
    from ..common.timing import StageStats

    print(format_table({k: StageStats(**v) for k, v in speed["stages_ms"].items()}), file=out)
    evaluation = report["evaluation"]
    if evaluation:
        print(f"evaluation: {evaluation['frames_evaluated']} frames with ground truth, "
              f"{evaluation['frames_without_ground_truth']} without, "
              f"{len(evaluation['ground_truth_errors'])} ground-truth errors", file=out)
        for error in evaluation["ground_truth_errors"][:3]:
            print(f"  {error}", file=out)
        if evaluation["segmentation"]:
            seg = evaluation["segmentation"]
            print(f"  segmentation: mIoU {seg['miou']:.4f}, pixel accuracy {seg['pixel_accuracy']:.4f}", file=out)
        if evaluation["depth"]:
            d = evaluation["depth"]
            print(f"  depth: RMSE {d['rmse']:.3f} m, AbsRel {d['abs_rel']:.4f}, log RMSE {d['log_rmse']:.4f}, "
                  f"delta<1.25 {d['delta1']:.4f}, <1.25^2 {d['delta2']:.4f}, <1.25^3 {d['delta3']:.4f}", file=out)
    for name, path in report["outputs"].items():
        print(f"wrote {name}: {path}", file=out)


# ---------------------------------------------------------------- command line

def _outputs_arg(text: str) -> tuple[str, ...]:
    names = [spec.name for spec in OUTPUT_SPECS]
    chosen = names if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown output(s) {', '.join(unknown)}; choose from {', '.join(names)} "
                                         "or 'all'")
    return tuple(chosen)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run HydraNet over a recording (rosbag2 sqlite3/MCAP, ROS 1 bag, video or image folder) "
                    "and write a bag with the node's topics, an overlay video, a speed report and metrics.",
        epilog="Output topics go under the camera's namespace: /camera/image_raw and /camera/image_raw/compressed "
               "give /camera/depth/image, /camera/segmentation/image, /camera/overlay/image, /camera/depth/colorized, "
               "/camera/segmentation/colorized and /camera/depth/camera_info.\n"
               f"Demo: {PROG} --demo [--output-dir DIR]")
    parser.add_argument("input", nargs="?", type=Path, help="rosbag2 directory, ROS 1 .bag, video file or image folder")
    parser.add_argument("--demo", action="store_true",
                        help="render a synthetic street sequence into a bag and replay it with the shipped weights")
    parser.add_argument("--weights", type=Path, help="weights file (default: the shipped demo weights)")
    parser.add_argument("--topic", help="image topic of a bag with several; for video/folder input, the topic the "
                                        "frames get in the output bag (default /camera/image_raw; .../compressed "
                                        "stores JPEG)")
    out = parser.add_argument_group("outputs")
    out.add_argument("-o", "--output-bag", type=Path, help="rosbag2 to write: the input plus the node's topics")
    out.add_argument("--video", type=Path, help="MP4 of overlay | coloured depth")
    out.add_argument("--png-dir", type=Path, help="folder for a PNG sequence of overlay | coloured depth")
    out.add_argument("--report", type=Path, help="JSON report (speed, skipped frames, metrics); default "
                                                 "<first output>_report.json when there is an output")
    out.add_argument("--per-frame", type=Path,
                     help="per-frame metrics, .csv or .jsonl (default with ground truth: <report>_frames.csv)")
    out.add_argument("--outputs", type=_outputs_arg, default=DEFAULT_BAG_OUTPUTS,
                     help=f"topics for the bag, comma-separated or 'all' (default {','.join(DEFAULT_BAG_OUTPUTS)})")
    out.add_argument("--output-namespace", help="prefix of the output topics (default: the camera's namespace)")
    out.add_argument("--camera-info-topic", help="CameraInfo to copy to depth/camera_info "
                                                 "(default <camera namespace>/camera_info when present)")
    out.add_argument("--storage", choices=sorted(STORAGES), help="output bag storage (default: the input's, "
                                                                 "sqlite3 for other inputs)")
    out.add_argument("--distro", choices=sorted(DISTROS), default="humble", help="ROS 2 types and bag version")
    out.add_argument("--fps", type=float, help="frame rate of folder input stamps and of the video "
                                               "(default: the input video's, else 10)")
    out.add_argument("--fourcc", default=DEFAULT_FOURCC, help="video codec for OpenCV (default mp4v)")
    out.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    gt = parser.add_argument_group("evaluation")
    gt.add_argument("--gt-depth-topic", help="ground-truth depth topic (32FC1 metres or 16UC1), matched by stamp")
    gt.add_argument("--gt-labels-topic", help="ground-truth label topic (mono8 class ids), matched by stamp")
    gt.add_argument("--gt-depth-dir", type=Path, help="ground-truth depth files (.npy/.png/.tiff) named like the "
                                                      "images (folder input) or by stamp in ns")
    gt.add_argument("--gt-labels-dir", type=Path, help="ground-truth label .png files, named as for --gt-depth-dir")
    gt.add_argument("--gt-depth-scale", type=float, default=0.001,
                    help="metres per unit of 16-bit ground-truth depth (default 0.001: millimetres)")
    gt.add_argument("--min-depth", type=float, default=1e-3, help="smallest ground-truth depth evaluated (m)")
    gt.add_argument("--max-depth", type=float, help="largest ground-truth depth evaluated (m; default: no limit)")
    model = parser.add_argument_group("model")
    model.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    model.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                       help="default auto: fp16 on CUDA, fp32 on the CPU")
    model.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="how the network runs (default auto: CUDA graphs on CUDA, eager on the CPU); "
                            "an unavailable one falls back with a warning and the report names the one that ran")
    model.add_argument("--overlay-alpha", type=float, default=0.5)
    model.add_argument("--depth-colormap", default="turbo")
    model.add_argument("--depth-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                       help="colour-map range in metres (default: the model card's)")
    model.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs on the first frame's size")
    run = parser.add_argument_group("run")
    run.add_argument("--max-frames", type=int, help="stop after this many frames")
    run.add_argument("--frame-id", default="camera", help="frame_id of video/folder frames")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo = parser.add_argument_group("demo")
    demo.add_argument("--output-dir", type=Path, default=Path("hydranet_demo"), help="demo output folder")
    demo.add_argument("--frames", type=int, default=40, help="demo sequence length")
    demo.add_argument("--width", type=int, default=384, help="demo image width")
    demo.add_argument("--height", type=int, default=192, help="demo image height")
    demo.add_argument("--seed", type=int, default=0, help="demo scene seed")
    demo.add_argument("--raw", action="store_true", help="demo camera as raw rgb8 Image instead of JPEG")
    return parser


def options_from_args(args: argparse.Namespace) -> ReplayOptions:
    """Command-line flags -> options; flags are named after the option fields."""
    if args.input is None:
        raise ReplayError("give an input (bag, video or image folder), or --demo")
    names = {f.name for f in dataclasses.fields(ReplayOptions)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["depth_range"] = tuple(args.depth_range) if args.depth_range else None
    values["progress"] = not args.no_progress
    return ReplayOptions(**values)


def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> dict[str, Any]:
    """Render the synthetic sequence into a bag, then replay and evaluate it."""
    out = out or sys.stdout
    from ..inference.shipped import shipped_weights
    from .demo import DemoTopics, render_demo_frames, write_camera_bag

    if args.frames < 1 or args.width < 16 or args.height < 16:
        raise ReplayError("--frames must be >= 1 and --width/--height >= 16")
    weights = args.weights or shipped_weights()  # before rendering: a missing file should fail at once
    directory: Path = args.output_dir
    input_bag = directory / "synthetic_street"
    options = options_from_args(argparse.Namespace(**{**vars(args), "input": input_bag, "weights": weights}))
    topics = DemoTopics.for_transport(compressed=not args.raw)
    options.topic, options.gt_depth_topic, options.gt_labels_topic = topics.image, topics.gt_depth, topics.gt_labels
    options.output_bag = args.output_bag or directory / "synthetic_street_hydranet"
    options.video = args.video or directory / "synthetic_street_hydranet.mp4"
    options.report = args.report or directory / "report.json"
    for path in (input_bag, options.output_bag, options.video, options.report):
        check_writable(path, options.overwrite)
    start = time.perf_counter()
    staged = StagedPath(input_bag, options.overwrite)
    with staged as tmp:
        count = write_camera_bag(tmp, render_demo_frames(args.frames, args.width, args.height, args.seed), topics,
                                 storage=args.storage or "sqlite3", distro=args.distro)
        staged.commit()
    render_s = time.perf_counter() - start
    print(f"{PROG} demo: rendered {count} synthetic frames ({args.width}x{args.height}) into {input_bag} "
          f"in {render_s:.1f} s", file=out)
    report = replay(options, out)
    print(f"{PROG} demo: input bag {input_bag}\n"
          f"  output bag {options.output_bag}  (ros2 bag play it, or open it in Foxglove)\n"
          f"  video      {options.video}\n  report     {options.report}\n"
          f"  {report['speed']['fps']:.2f} FPS on {report['device']} ({report['precision']}), "
          f"total {time.perf_counter() - start:.1f} s", file=out)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.demo and args.input is not None:
            raise ReplayError("--demo makes its own input; give no input path with it")
        if args.demo:
            run_demo(args)
        else:
            replay(options_from_args(args))
    except EXPECTED_ERRORS as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # disk full, permissions: the file names are in the message
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; unfinished outputs were removed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
