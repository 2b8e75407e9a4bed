"""hydranet_replay: run the predictor over recorded data, with no ROS installation.

Input: a rosbag2 (sqlite3 or MCAP) directory, a ROS 1 ``.bag``, a video file or
a folder of images. Output: a rosbag2 holding the recording plus the node's
topics, and/or an MP4 / PNG sequence of overlay | coloured depth; always a
speed report, and metrics when ground truth is given. This module is the
command line; ``replay_run.replay`` does the work.
"""
from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from ..common.arguments import non_negative_int, positive_float, positive_int
from ..common.atomic import OutputExistsError, StagedPath, check_writable
from ..inference.backends import BACKENDS
from ..inference.points import COLOUR_SOURCES, DEFAULT_STRIDE
from ..inference.device import PRECISION_CHOICES
from ..inference.predictor import POINTS
from ..inference.weights import WeightsError
from ..messages.image import DEFAULT_MAX_INPUT_PIXELS
from ..messages.topics import OUTPUT_SPECS
from .bagio import DISTROS, STORAGES, BagError
from .evaluation import GroundTruthError
from .replay_plan import DEFAULT_BAG_OUTPUTS, ReplayError, ReplayOptions
from .replay_report import PROG
from .replay_run import replay
from .sources import SourceError
from .video import DEFAULT_FOURCC

EXPECTED_ERRORS = (ReplayError, BagError, SourceError, GroundTruthError, WeightsError, OutputExistsError)


# ---------------------------------------------------------------- command line

def _outputs_arg(text: str) -> tuple[str, ...]:
    names = [spec.name for spec in OUTPUT_SPECS] + [POINTS]
    chosen = names if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown output(s) {', '.join(unknown)}; choose from {', '.join(names)} "
                                         "or 'all'")
    return tuple(chosen)


def _names_arg(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run HydraNet over a recording (rosbag2 sqlite3/MCAP, ROS 1 bag, video or image folder) "
                    "and write a bag with the node's topics, an overlay video, a speed report and metrics.",
        epilog="Output topics go under the camera's namespace: /camera/image_raw and /camera/image_raw/compressed "
               "give /camera/depth/image, /camera/segmentation/image, /camera/overlay/image, /camera/depth/colorized, "
               "/camera/segmentation/colorized, /camera/depth/camera_info and /camera/points.\n"
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
    out.add_argument("--fps", type=positive_float, help="frame rate of folder input stamps and of the video "
                                               "(default: the input video's, else 10)")
    out.add_argument("--fourcc", default=DEFAULT_FOURCC, help="video codec for OpenCV (default mp4v)")
    out.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    gt = parser.add_argument_group("evaluation")
    gt.add_argument("--gt-depth-topic", help="ground-truth depth topic (32FC1 metres or 16UC1), matched by stamp")
    gt.add_argument("--gt-labels-topic", help="ground-truth label topic (mono8 class ids), matched by stamp")
    gt.add_argument("--gt-depth-dir", type=Path, help="ground-truth depth files (.npy/.png/.tiff) named like the "
                                                      "images (folder input) or by stamp in ns")
    gt.add_argument("--gt-labels-dir", type=Path, help="ground-truth label .png files, named as for --gt-depth-dir")
    gt.add_argument("--gt-depth-scale", type=positive_float, default=0.001,
                    help="metres per unit of 16-bit ground-truth depth (default 0.001: millimetres)")
    gt.add_argument("--min-depth", type=float, default=1e-3, help="smallest ground-truth depth evaluated (m)")
    gt.add_argument("--max-depth", type=positive_float, help="largest ground-truth depth evaluated (m; default: no limit)")
    cloud = parser.add_argument_group("point cloud (--outputs ...,points: <namespace>/points, sensor_msgs/PointCloud2 "
                                      "with x, y, z, rgb, label, from the bag's camera_info)")
    cloud.add_argument("--points-stride", type=positive_int, default=DEFAULT_STRIDE,
                       help=f"take every Nth pixel in each direction (default {DEFAULT_STRIDE}: "
                            "19,200 points at 640x480)")
    cloud.add_argument("--points-max-depth", type=positive_float,
                       help="drop points farther than this (m; default: no limit)")
    cloud.add_argument("--points-exclude", type=_names_arg, default=(),
                       help="comma-separated class names whose points are left out, e.g. sky, or road for an "
                            "obstacle cloud (names from the model card)")
    cloud.add_argument("--points-organized", action="store_true",
                       help="keep the strided image grid, NaN where a point was dropped (default: a dense list)")
    cloud.add_argument("--points-colour", choices=COLOUR_SOURCES, default="input",
                       help="rgb of a point: the input pixel (default) or its class colour")
    model = parser.add_argument_group("model")
    model.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    model.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                       help="default auto: fp16 on CUDA, fp32 on the CPU")
    model.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="how the network runs (default auto: CUDA graphs on CUDA, ONNX Runtime on the CPU); "
                            "an unavailable one falls back with a warning and the report names the one that ran")
    model.add_argument("--overlay-alpha", type=float, default=0.5)
    model.add_argument("--depth-colormap", default="turbo")
    model.add_argument("--depth-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                       help="colour-map range in metres (default: the model card's)")
    model.add_argument("--warmup", type=non_negative_int, default=1, help="untimed warm-up runs on the first frame's size")
    run = parser.add_argument_group("run")
    run.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    run.add_argument("--max-input-pixels", type=non_negative_int, default=DEFAULT_MAX_INPUT_PIXELS,
                     help="frames with more pixels (width x height) are skipped as bad, as the node's "
                          f"max_input_pixels does; 0 = no limit (default {DEFAULT_MAX_INPUT_PIXELS})")
    run.add_argument("--frame-id", default="camera", help="frame_id of video/folder frames")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo = parser.add_argument_group("demo")
    demo.add_argument("--output-dir", type=Path, default=Path("hydranet_demo"), help="demo output folder")
    demo.add_argument("--frames", type=positive_int, default=40, help="demo sequence length")
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

    if args.width < 16 or args.height < 16:
        raise ReplayError("--width/--height must be >= 16")
    weights = args.weights or shipped_weights()  # before rendering: a missing file should fail at once
    directory: Path = args.output_dir
    input_bag = directory / "synthetic_street"
    topics = DemoTopics.for_transport(compressed=not args.raw)
    options = dataclasses.replace(
        options_from_args(argparse.Namespace(**{**vars(args), "input": input_bag, "weights": weights})),
        topic=topics.image, gt_depth_topic=topics.gt_depth, gt_labels_topic=topics.gt_labels,
        output_bag=args.output_bag or directory / "synthetic_street_hydranet",
        video=args.video or directory / "synthetic_street_hydranet.mp4",
        report=args.report or directory / "report.json")
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds (and cleans up) as Ctrl-C does."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
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
    except Terminated:
        print(f"{PROG}: terminated; unfinished outputs were removed", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; unfinished outputs were removed", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
