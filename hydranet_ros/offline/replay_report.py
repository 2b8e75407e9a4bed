"""The replay's report: what ran, how fast, what was skipped, how accurate; as JSON and as text."""
from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from ..common.timing import StageStats, StageTimer, format_table
from ..inference.predictor import Predictor
from .replay_loop import FrameCounts
from .replay_plan import Plan
from .replay_points import points_lines
from .sources import FrameSource

PROG = "hydranet_replay"


def build_report(input_path: Path, weights: Path, predictor: Predictor, source: FrameSource, plan: Plan,
                 has_camera_info: bool, timer: StageTimer, counts: FrameCounts, wall_s: float,
                 evaluation: dict[str, Any] | None, outputs: dict[str, str],
                 points: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "input": str(input_path),
        "source": source.kind,
        "image_topic": source.image_topic,
        "image_type": source.image_msgtype,
        "output_topics": plan.output_topics,
        "depth_camera_info": plan.depth_info_topic if has_camera_info else None,
        "weights": str(weights),
        "model": predictor.card.provenance,
        "device": str(predictor.device),
        "precision": predictor.precision,
        "backend": predictor.backend,
        "frames": {"read": counts.read, "processed": counts.done, "skipped": counts.skipped_count,
                   "skipped_frames": counts.skipped},
        "speed": {"frames": counts.done, "wall_s": wall_s,
                  "fps": counts.done / wall_s if wall_s > 0 else float("nan"), "warmup_s": counts.warmup_s,
                  "stages_ms": {name: stats.to_dict() for name, stats in timer.stats().items()}},
        "evaluation": evaluation,
        "points": points,
        "outputs": outputs,
    }


def print_report(report: dict[str, Any], out: TextIO) -> None:
    frames, speed = report["frames"], report["speed"]
    print(f"{PROG}: {report['input']} ({report['source']}), image topic {report['image_topic']}", file=out)
    print(f"frames: {frames['processed']} processed, {frames['skipped']} skipped", file=out)
    for skip in frames["skipped_frames"][:5]:
        print(f"  skipped frame {skip['index']} (stamp {skip['stamp_ns']}): {skip['reason']}", file=out)
    print(f"speed: {speed['fps']:.2f} FPS, {speed['frames']} frames in {speed['wall_s']:.2f} s on "
          f"{report['device']} ({report['precision']}, {report['backend']}), "
          f"warm-up {speed['warmup_s']:.2f} s excluded", file=out)
    print(format_table({k: StageStats(**v) for k, v in speed["stages_ms"].items()}), file=out)
    if report.get("points"):
        print(points_lines(report["points"]), file=out)
    evaluation = report["evaluation"]
    if evaluation:
        _print_evaluation(evaluation, out)
    for name, path in report["outputs"].items():
        print(f"wrote {name}: {path}", file=out)


def _print_evaluation(evaluation: dict[str, Any], out: TextIO) -> None:
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
