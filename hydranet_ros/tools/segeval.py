"""Segmentation of a weights file or a teacher on recorded frames, in our classes:
scored against ground truth whose ids belong to another label set (e.g. CamVid's),
and/or written as label PNGs that ``hydranet_replay --gt-labels-dir`` reads.

    hydranet_segeval camvid/val --model weights.safetensors \\
        --gt-labels-dir camvid/valannot --gt-classes camvid
    hydranet_segeval camvid/val --model teacher.tflite --classes cityscapes \\
        --gt-labels-dir camvid/valannot --gt-classes camvid
    hydranet_segeval my_bag --start 2400 --model teacher.tflite --classes cityscapes \\
        --write-labels held_back/     # then: hydranet_replay my_bag --gt-labels-dir held_back/

Frames come from anything ``hydranet_replay`` reads; ground truth and written labels are
named like the frame (the image's stem, or the stamp in ns for bags and videos). The
numbers come from ``offline.metrics``, the code replay and training report with.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from ..common.arguments import non_negative_int, positive_int
from ..common.atomic import atomic_write
from ..common.image_files import write_image
from ..inference.weights import WeightsError
from ..messages.image import ImageDecodeError
from ..model.presets import KITTI6
from ..offline.evaluation import GroundTruthError, GroundTruthFolder, json_safe
from ..offline.metrics import SegmentationMetrics
from ..offline.sources import Frame, SourceError, open_source
from ..training.distill import ClassMapError, TeacherError, class_lut, load_teacher

PROG = "hydranet_segeval"  # also python -m hydranet_ros.tools.segeval
IGNORE = 255


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="bag, video or image folder")
    parser.add_argument("--model", type=Path, required=True,
                        help="a weights file (.safetensors) or a teacher (.tflite, .onnx)")
    parser.add_argument("--classes", help="a teacher's label set (cityscapes, camvid) or a YAML list of its names")
    parser.add_argument("--class-map", help="a teacher's YAML mapping {its class: our class}; default: same names")
    parser.add_argument("--our-classes", help="YAML list of our classes for a teacher (default: the synthetic "
                        "street classes); a weights file's card names them")
    parser.add_argument("--gt-labels-dir", type=Path, help="ground-truth label PNGs named like the frames")
    parser.add_argument("--gt-classes", help="label set of the ground truth (cityscapes, camvid, or a YAML list); "
                        "default: already our ids")
    parser.add_argument("--gt-class-map", help="YAML mapping {ground-truth class: our class}; default: same names")
    parser.add_argument("--write-labels", type=Path, help="folder for the predicted labels (mono8 PNG, our ids)")
    parser.add_argument("--topic", help="image topic of a bag with several")
    parser.add_argument("--start", type=non_negative_int, default=0,
                        help="skip the frames before this index (0-based): label a held-back tail only")
    parser.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    parser.add_argument("--threads", type=positive_int, default=2, help="CPU threads")
    parser.add_argument("--json", type=Path, help="write the metrics here")
    return parser


def _yaml(text: str | None) -> Any:
    return None if text is None else yaml.safe_load(text)


def make_labeller(args: argparse.Namespace) -> tuple[Callable[[np.ndarray], np.ndarray], list[str], str]:
    """frame -> our class ids (H, W) uint8, our class names, and a line naming the model."""
    if args.model.suffix.lower() in (".tflite", ".onnx"):
        teacher = load_teacher(args.model, threads=args.threads)
        ours = list(_yaml(args.our_classes) or KITTI6.class_names)
        lut = class_lut(_yaml(args.class_map), _yaml(args.classes), ours, teacher.num_classes,
                        what=f"class map for teacher {args.model}")
        return (lambda rgb: lut[teacher.label(rgb)[0]]), ours, f"teacher {args.model}"
    import torch

    from ..inference.predictor import load_predictor

    torch.set_num_threads(args.threads)
    predictor = load_predictor(args.model, device="cpu", precision="fp32")
    return (lambda rgb: predictor.predict(rgb, ["labels"]).labels), list(predictor.card.class_names), \
        f"weights {args.model}"


def evaluate(args: argparse.Namespace, progress: Callable[[str], None] = print) -> dict[str, Any]:
    label, ours, what = make_labeller(args)
    truth = gt_lut = None
    if args.gt_labels_dir is not None:
        truth = GroundTruthFolder(args.gt_labels_dir, "labels")
        gt_lut = class_lut(_yaml(args.gt_class_map), _yaml(args.gt_classes), ours, what="ground-truth class map") \
            if args.gt_classes or args.gt_class_map else None
    # a teacher's classes we do not have (person, pole ...) are predictions of none of ours:
    # scored as an extra class that no ground truth has (metrics would clip 255 onto our last class)
    other = len(ours)
    metrics = SegmentationMetrics(other + 1, IGNORE, ours + ["(none of ours)"])
    frames = open_source(args.input, args.topic)
    counts = {"frames": 0, "evaluated": 0, "without_truth": 0, "undecodable": 0}
    try:
        for frame in frames.messages(topics=()):
            if not isinstance(frame, Frame) or frame.index < args.start:
                continue
            if args.max_frames is not None and counts["frames"] >= args.max_frames:
                break
            counts["frames"] += 1
            try:
                rgb = frame.decode().to_rgb()   # a teacher takes RGB only
            except ImageDecodeError as error:
                counts["undecodable"] += 1
                progress(f"{PROG}: skipping frame {frame.index} ({frame.name}): {error}")
                continue
            predicted = label(rgb)
            if args.write_labels is not None:
                write_image(args.write_labels / f"{frame.name}.png", predicted)
            if truth is not None:
                gt = truth.load(frame.name)
                if gt is None:
                    counts["without_truth"] += 1
                    continue
                if gt.shape != predicted.shape:
                    raise GroundTruthError(f"{truth.files[frame.name]}: {gt.shape[1]}x{gt.shape[0]} but frame "
                                           f"{frame.name} is {predicted.shape[1]}x{predicted.shape[0]}")
                metrics.update(np.where(predicted == IGNORE, other, predicted), gt_lut[gt] if gt_lut is not None else gt)
                counts["evaluated"] += 1
    finally:
        frames.close()
    result: dict[str, Any] = {"model": what, "input": str(args.input), **counts}
    if truth is not None:
        result["segmentation"] = metrics.compute()
    return result


def format_result(result: dict[str, Any]) -> str:
    lines = [f"{result['model']} on {result['input']}: {result['frames']} frames, {result['evaluated']} with "
             f"ground truth, {result['without_truth']} without, {result['undecodable']} undecodable"]
    seg = result.get("segmentation")
    if seg:
        lines.append(f"mIoU {seg['miou']:.3f}  pixel accuracy {seg['pixel_accuracy']:.3f}")
        lines.append("  ".join(f"{name} {iou:.3f}" for name, iou in seg["per_class_iou"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = evaluate(args)
    except (TeacherError, ClassMapError, WeightsError, SourceError, GroundTruthError, OSError, ValueError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(format_result(result))
    if args.json is not None:
        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(json_safe(result), indent=1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
