"""hydranet_faces: age, gender and race of face crops, with a face-attribute weights file.

    hydranet_faces --weights weights/hydranet_utkface.safetensors faces/ me.jpg --json faces.json

Prints one table row per image (age in years, gender and race with their
probabilities) and optionally writes every probability as JSON. An image that
cannot be read is reported and skipped; the exit status is 1 only when no image
could be read at all (or the weights cannot be used).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..common.arguments import positive_int
from ..common.atomic import atomic_write
from ..common.image_files import IMAGE_SUFFIXES, ImageFileError, image_files, read_rgb
from ..inference.face_predictor import FacePrediction, FacePredictor, load_face_predictor
from ..inference.weights import WeightsError

PROG = "hydranet_faces"
EXIT_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Predict the age, gender and race of face crops (one face filling each image, "
        "like UTKFace's aligned crops) with a face-attribute weights file made by "
        "hydranet_train --config config/train_utkface.yaml.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER",
                   help=f"image files, or folders searched recursively for {', '.join(IMAGE_SUFFIXES)}")
    p.add_argument("--weights", type=Path, required=True, help="face-attribute weights file (.safetensors)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the predictions (all probabilities) here")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass (default 32)")
    return p


def collect_images(inputs: Iterable[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """The image files the inputs name, and a problem entry for each input that names none."""
    files: list[Path] = []
    problems: list[dict[str, str]] = []
    for path in inputs:
        if path.is_dir():
            found = image_files(path)
            files.extend(found)
            if not found:
                problems.append({"image": str(path), "error": f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder"})
        elif path.is_file():
            files.append(path)
        else:
            problems.append({"image": str(path), "error": "no such file or folder"})
    return files, problems


def predict_files(predictor: FacePredictor, files: Sequence[Path], batch_size: int
                  ) -> tuple[list[tuple[Path, FacePrediction]], list[dict[str, str]]]:
    """Predictions for the readable files; the others are reported on stderr and returned as skipped."""
    results: list[tuple[Path, FacePrediction]] = []
    skipped: list[dict[str, str]] = []
    for start in range(0, len(files), batch_size):
        readable: list[tuple[Path, np.ndarray]] = []
        for path in files[start:start + batch_size]:
            try:
                readable.append((path, read_rgb(path)))
            except ImageFileError as error:
                print(f"{PROG}: skipping {error}", file=sys.stderr)
                skipped.append({"image": str(path), "error": str(error)})
        if readable:
            predictions = predictor.predict([image for _, image in readable])
            results.extend(zip((path for path, _ in readable), predictions))
    return results, skipped


def format_table(results: Sequence[tuple[Path, FacePrediction]]) -> str:
    width = max([len("image")] + [len(str(path)) for path, _ in results])
    lines = [f"{'image':<{width}}  {'age':>5}  {'gender':<6} {'p':>4}  {'race':<6} {'p':>4}"]
    for path, p in results:
        lines.append(f"{str(path):<{width}}  {p.age:5.1f}  {p.gender:<6} {p.gender_probability:4.2f}  "
                     f"{p.race:<6} {p.race_probability:4.2f}")
    return "\n".join(lines)


def report(weights: Path, results: Sequence[tuple[Path, FacePrediction]],
           skipped: Sequence[dict[str, str]]) -> dict[str, Any]:
    return {"weights": str(weights),
            "predictions": [{"image": str(path), **prediction.to_dict()} for path, prediction in results],
            "skipped": list(skipped)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        predictor = load_face_predictor(args.weights, device=args.device)
    except (WeightsError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    files, skipped = collect_images(args.inputs)
    for problem in skipped:
        print(f"{PROG}: skipping {problem['image']}: {problem['error']}", file=sys.stderr)
    results, unreadable = predict_files(predictor, files, args.batch_size)
    skipped += unreadable
    if results:
        print(format_table(results))
    if args.json is not None:
        text = json.dumps(report(args.weights, results, skipped), indent=2)
        atomic_write(args.json, lambda tmp: tmp.write_text(text + "\n"))
    if skipped:
        print(f"{PROG}: {len(results)} image(s) predicted, {len(skipped)} skipped", file=sys.stderr)
    return 0 if results else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
