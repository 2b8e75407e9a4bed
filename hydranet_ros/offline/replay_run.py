"""One replay: staged outputs around the frame loop, so that every output appears only when complete.

``replay_plan`` decides the topics, ``replay_loop`` runs the frames,
``replay_outputs`` writes the bag and video and evaluates, ``replay_report``
reports; this module opens and commits the outputs.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence, TextIO

from ..common.atomic import StagedPath, check_writable, stale_partials
from ..common.timing import StageTimer
from ..inference.points import PointsOptions
from ..inference.predictor import Predictor, load_predictor
from ..inference.weights import WeightsError
from ..messages.label_info import LabelEntry, label_entries
from .bagio import STORAGES, BagWriter
from .evaluation import Evaluation, json_safe, write_rows
from .replay_loop import STAGES, FrameCounts, FrameLoop
from .replay_outputs import BagOutput, FrameOutput, GroundTruth, VideoOutput
from .replay_plan import Plan, ReplayError, ReplayOptions, make_plan
from .replay_points import PointsRequest, missing_camera_info, replay_points_options
from .replay_report import PROG, build_report, print_report
from .sources import BagSource, FrameSource, open_source
from .video import SideBySideWriter


def replay(options: ReplayOptions, out: TextIO | None = None) -> dict[str, Any]:
    """Run one replay; returns the report (also written to ``options.report``). Prints to ``out``
    (default: the current sys.stdout)."""
    out = out or sys.stdout
    options = options.with_default_paths()
    staged = list(options.staged_paths().values())
    for path in staged:  # before any work: an hour of inference must not end in 'exists'
        check_writable(path, options.overwrite)
        if path.resolve() == options.input.resolve():
            raise ReplayError(f"output {path} is the input")
    if len(set(map(Path.resolve, staged))) != len(staged):
        raise ReplayError("two outputs have the same path")
    _clear_stale_partials(staged, options.overwrite)
    weights = options.weights
    if weights is None:
        from ..inference.shipped import shipped_weights

        weights = shipped_weights()
    predictor = _load_predictor(options, weights)
    points = replay_points_options(options, predictor.class_names) if "points" in options.outputs else None
    exclude = [t for t in (options.gt_depth_topic, options.gt_labels_topic) if t]
    source = open_source(options.input, options.topic, exclude, options.frame_id, fps=options.fps,
                         max_pixels=options.max_input_pixels or None)
    try:
        report = _run(options, weights, predictor, source, points)
    finally:
        source.close()
    print_report(report, out)
    return report


def _clear_stale_partials(paths: Sequence[Path], overwrite: bool) -> None:
    """Say so when a killed run left hidden partial outputs here; ``--overwrite`` removes them."""
    for path in paths:
        stale = stale_partials(path)
        if not stale:
            continue
        names = ", ".join(str(p) for p in stale)
        if overwrite:
            for partial in stale:
                shutil.rmtree(partial, ignore_errors=True)
            print(f"{PROG}: removed unfinished output(s) of an interrupted run: {names}", file=sys.stderr)
        else:
            print(f"{PROG}: note: unfinished output(s) of an interrupted run: {names} "
                  "(--overwrite removes them)", file=sys.stderr)


def _load_predictor(options: ReplayOptions, weights: Path) -> Predictor:
    try:
        return load_predictor(weights, device=options.device, precision=options.precision,
                              backend=options.backend, overlay_alpha=options.overlay_alpha,
                              depth_colormap=options.depth_colormap, depth_range=options.depth_range)
    except WeightsError:
        raise
    except ValueError as error:  # device, precision, colour map or range the predictor refuses
        raise ReplayError(str(error)) from None


def _run(options: ReplayOptions, weights: Path, predictor: Predictor, source: FrameSource,
         points_options: PointsOptions | None = None) -> dict[str, Any]:
    """The frame loop inside staged outputs: every output is renamed into place only at the end."""
    plan = make_plan(options, source)
    card = predictor.card
    evaluation = None
    if options.gt_kinds:
        evaluation = Evaluation(options.gt_kinds, card.model.num_classes, card.ignore_index, card.class_names,
                                options.min_depth, options.max_depth or float("inf"))
    timer = StageTimer(STAGES if evaluation else STAGES[:-1])
    with ExitStack() as staging:
        staged = {kind: StagedPath(path, options.overwrite) for kind, path in options.staged_paths().items()}
        tmp = {kind: staging.enter_context(s) for kind, s in staged.items()}
        start = time.perf_counter()
        with ExitStack() as writers:
            classes = label_entries(card.class_names, card.palette)
            outputs = _open_outputs(options, source, plan, tmp, writers, classes)
            bag_output = next((o for o in outputs if isinstance(o, BagOutput)), None)
            ground_truth = GroundTruth(evaluation, plan, source, options.gt_depth_scale) if evaluation else None
            points = None
            if plan.points_topic and bag_output is not None and points_options is not None:
                points = PointsRequest(points_options, lambda: bag_output.camera_info,
                                       missing_camera_info(plan, source))
            loop = FrameLoop(predictor, plan.predict_outputs, outputs, ground_truth, timer, options.warmup, points)
            progress = _progress(options, source)
            try:
                # without an output bag only the ground-truth topics need reading
                counts = loop.run(source.messages(None if bag_output else list(plan.gt_topics)),
                                  options.max_frames, progress)
            finally:
                progress.close()
            _check_frames(options, counts)
        wall_s = time.perf_counter() - start - counts.warmup_s
        summary = evaluation.finish() if evaluation else None
        if "per_frame" in tmp:
            write_rows(tmp["per_frame"], evaluation.rows if evaluation else [])
        # a video with no decodable frame was never opened: there is nothing to rename into place
        written = {k: v for k, v in staged.items() if k == "report" or tmp[k].exists()}
        has_camera_info = bag_output is not None and bag_output.camera_info is not None
        report = build_report(options.input, weights, predictor, source, plan, has_camera_info, timer, counts,
                              wall_s, summary, {k: str(v.final) for k, v in written.items()},
                              points.report(plan.points_topic) if points else None)
        if "report" in tmp:
            tmp["report"].write_text(json.dumps(json_safe(report), indent=2) + "\n")
        for path in written.values():
            path.commit()
    return report


def _open_outputs(options: ReplayOptions, source: FrameSource, plan: Plan, tmp: dict[str, Path],
                  writers: ExitStack, classes: Sequence[LabelEntry]) -> list[FrameOutput]:
    outputs: list[FrameOutput] = []
    if "bag" in tmp:
        storage = options.storage or (source.storage if isinstance(source, BagSource)
                                      and source.storage in STORAGES else "sqlite3")
        bag = writers.enter_context(BagWriter(tmp["bag"], storage=storage, distro=options.distro))
        outputs.append(BagOutput(bag, source, plan, classes))
    if "video" in tmp or "png" in tmp:
        fps = options.fps or getattr(source, "fps", None) or 10.0
        outputs.append(VideoOutput(writers.enter_context(
            SideBySideWriter(tmp.get("video"), tmp.get("png"), fps, options.fourcc))))
    return outputs


def _check_frames(options: ReplayOptions, counts: FrameCounts) -> None:
    """A replay that predicted nothing failed, even if it could write an (empty) output."""
    if counts.done:
        return
    if not counts.read:
        raise ReplayError(f"{options.input} has no frames")
    first = counts.skipped[0]
    raise ReplayError(f"none of the {counts.read} frame(s) of {options.input} could be decoded; "
                      f"frame {first['index']}: {first['reason']}")


def _progress(options: ReplayOptions, source: FrameSource) -> Any:
    from tqdm import tqdm

    total = source.total if options.max_frames is None else min(source.total or options.max_frames,
                                                                options.max_frames)
    # disable=None: no bar when stderr is not a terminal (logs, CI)
    return tqdm(total=total, unit="frame", desc=PROG, disable=None if options.progress else True, leave=False)


