"""hydranet_train with a teacher: a recipe's ``data.extra_train_sets`` entry of kind ``teacher``
labels an unlabelled folder once (a tiny ONNX teacher the test builds), trains beside synthetic
depth-supervised scenes, and the student's labels agree with the teacher's on those frames; the
model card says where the labels came from. Missing files and bad teacher entries stop the run
before anything is labelled."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from distill_helpers import CLASS_MAP, OURS, TEACHER_CLASSES, colour_frames, colour_teacher

import hydranet_ros.training.train as T
from hydranet_ros.training.config import ConfigError, load_config
from hydranet_ros.training.recipe_files import check_recipe_files, recipe_files

ROOT = Path(__file__).resolve().parent.parent
DISTILL_RECIPE = ROOT / "config" / "train_street_distill.yaml"
# the shared Coral files: the DeepLab teacher is a .tflite that is not an ImageNet MobileNetV2
DEEPLAB = ROOT.parent / "shared" / "data" / "coral" / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"


def recipe(teacher: Path, frames: Path, **teacher_options: Any) -> dict[str, Any]:
    """Tiny synthetic scenes (depth) plus the teacher-labelled colour frames (labels only)."""
    return {
        "name": "distilled", "device": "cpu", "threads": 1, "seed": 0,
        "model": {"decoder_width": 16},
        "data": {"kind": "synthetic", "options": {"width": 64, "height": 48},
                 "train_options": {"num_samples": 4}, "val_options": {"num_samples": 4},
                 "transform": {"size": [48, 64], "scale_range": [1.0, 1.0], "hflip": True, "colour_jitter": 0.0},
                 "extra_train_sets": [{"kind": "teacher", "root": str(frames), "options": {
                     "teacher": str(teacher), "classes": TEACHER_CLASSES, "class_map": CLASS_MAP,
                     **teacher_options}}],
                 "val_split": None, "batch_size": 4},
        "balancing": {"weights": {"segm": 1.0, "depth": 0.1}},  # berHu in metres outweighs the cross-entropy
        "optim": {"kind": "adamw", "lr_encoder": 1e-2, "lr_decoder": 1e-2},
        "schedule": {"epochs": 16, "warmup_steps": 2, "kind": "cosine"},
        "logging": {"tensorboard": False, "progress": False, "sample_images": 0},
        "provenance": {"teacher": "the test's colour teacher"},
    }


def train(tmp_path: Path, config: dict[str, Any], *args: str) -> int:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return T.main(["--config", str(path), "--run-dir", str(tmp_path / "run"),
                   "--output", str(tmp_path / "distilled.safetensors"), *args])


def test_hydranet_train_distils_a_teacher_onto_unlabelled_frames(tmp_path: Path) -> None:
    from hydranet_ros.common.image_files import read_rgb
    from hydranet_ros.inference.predictor import load_predictor
    from hydranet_ros.training.distill import load_teacher

    teacher, frames = colour_teacher(tmp_path), colour_frames(tmp_path / "unlabelled", count=8)
    assert train(tmp_path, recipe(teacher, frames)) == 0
    # labelled once, next to the run
    cached = list((tmp_path / "run" / "teacher_labels").glob("*/labels/*.png"))
    assert len(cached) == 8

    net, predictor = load_teacher(teacher), load_predictor(tmp_path / "distilled.safetensors", device="cpu")
    ours = np.array([OURS.index(CLASS_MAP[name]) for name in TEACHER_CLASSES])
    agree = total = 0
    counts = np.zeros(len(OURS), np.int64)
    for path in sorted(frames.glob("*.png")):
        rgb = read_rgb(path)
        expected = ours[net.label(rgb)[0]]
        agree += int((predictor.predict(rgb, ["labels"]).labels == expected).sum())
        total += expected.size
        counts += np.bincount(expected.ravel(), minlength=len(OURS))
    majority = counts.max() / total  # always answering the commonest class
    # measured (torch 2.14 CPU, one thread, 48 steps, ~15 s): agreement 0.92, majority 0.52
    assert agree / total > max(0.8, majority + 0.25), (agree / total, majority)

    provenance = predictor.card.provenance
    assert provenance["teacher"] == "the test's colour teacher"  # the recipe's own entries
    (used,) = provenance["teacher_labelled_data"]
    assert used["teacher"] == str(teacher) and used["unlabelled_data"] == str(frames) and used["frames"] == 8
    assert used["class_map"] == CLASS_MAP
    assert provenance["dataset"]["train_samples"] == 4 + 8


def test_each_extra_set_may_change_the_augmentation(tmp_path: Path) -> None:
    import torch

    from hydranet_ros.training.tasks.depth_segmentation import build_datasets

    teacher, frames = colour_teacher(tmp_path), colour_frames(tmp_path / "unlabelled", count=2)
    config = recipe(teacher, frames)
    config["data"]["transform"]["colour_jitter"] = 0.9
    config["data"]["extra_train_sets"][0]["transform"] = {"colour_jitter": 0.0, "hflip": False}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path, [f"run_dir={tmp_path / 'run'}"])
    train_set, _ = build_datasets(loaded)
    real = train_set.datasets[1]
    assert torch.equal(real[0]["image"], real[0]["image"])  # no jitter, no flip: the same every time
    synthetic = train_set.datasets[0]
    assert not torch.equal(synthetic[0]["image"], synthetic[0]["image"])  # the recipe's strong jitter


# -- bad input: stopped before any labelling, with the file or key named -------------------------
def test_missing_teacher_or_recording_stops_before_anything_runs(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    teacher, frames = colour_teacher(tmp_path), colour_frames(tmp_path / "unlabelled", count=2)
    config = recipe(tmp_path / "no_teacher.onnx", tmp_path / "no_recording")
    assert train(tmp_path, config) == T.EXIT_USAGE
    err = capsys.readouterr().err
    assert "data.extra_train_sets[0].root" in err and "no_recording" in err and "Traceback" not in err
    assert "data.extra_train_sets[0].options.teacher" in err and "no_teacher.onnx" in err
    assert not (tmp_path / "run").exists()

    config = recipe(teacher, frames)
    config["model"]["encoder_weights"] = "missing/mobilenet.tflite"
    assert train(tmp_path, config) == T.EXIT_USAGE
    err = capsys.readouterr().err
    assert "model.encoder_weights 'missing/mobilenet.tflite'" in err
    assert f"relative paths are read from the working directory, {os.getcwd()}" in err
    assert not (tmp_path / "run" / "teacher_labels").exists()


@pytest.mark.parametrize("wrong, message", [
    ("not_a_model.tflite", "is not readable"),
    (DEEPLAB, "not an ImageNet MobileNetV2 1.0: 62 convolutions"),  # the teacher, given as the encoder
])
def test_a_wrong_encoder_file_stops_before_the_teacher_labels(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              wrong: str | Path, message: str) -> None:
    if isinstance(wrong, Path) and not wrong.is_file():
        pytest.skip(f"{wrong} not found (the Coral test data in the project's ../shared)")
    if isinstance(wrong, Path):
        pytest.importorskip("tflite", reason="reading a .tflite encoder needs the 'tflite' package")
    else:
        wrong = tmp_path / wrong
        wrong.write_bytes(b"\0" * 64)
    teacher, frames = colour_teacher(tmp_path), colour_frames(tmp_path / "unlabelled", count=2)
    config = recipe(teacher, frames)
    config["model"]["encoder_weights"] = str(wrong)
    assert train(tmp_path, config) == T.EXIT_ERROR
    err = capsys.readouterr().err
    assert f"model.encoder_weights: encoder weights file '{wrong}'" in err and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "teacher_labels").exists()


@pytest.mark.parametrize("change, message", [
    ({"options": {"classes": TEACHER_CLASSES}}, "a teacher set needs root (the recording) and options.teacher"),
    ({"options": {"teacher": "t.onnx", "colour": "red"}}, "a teacher set unknown option(s) colour; its options:"),
])
def test_a_teacher_set_without_a_teacher_or_with_unknown_options(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                  change: dict[str, Any], message: str) -> None:
    teacher, frames = colour_teacher(tmp_path), colour_frames(tmp_path / "unlabelled", count=2)
    config = recipe(teacher, frames)
    config["data"]["extra_train_sets"][0].update(change)
    if "teacher" in change["options"]:
        change["options"]["teacher"] = str(teacher)
    assert train(tmp_path, config) == T.EXIT_ERROR
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "teacher_labels").exists()


@pytest.mark.parametrize("extra, message", [
    ({"kind": "teacher", "root": "r", "option": {}}, "data.extra_train_sets[0]: unknown key(s) option"),
    ({"kind": "teachr", "root": "r"}, "data.extra_train_sets[0].kind is 'teachr'; choose one of"),
    ({"kind": "teacher", "root": "r", "options": ["teacher.onnx"]}, "data.extra_train_sets[0].options must be a mapping"),
    ("teacher.onnx", "data.extra_train_sets[0] must be a mapping"),
])
def test_extra_train_set_entries_are_checked_with_the_recipe(extra: Any, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"data.extra_train_sets={yaml.safe_dump([extra], default_flow_style=True).strip()}"])
    assert message in str(error.value)


# -- the shipped distillation recipe ---------------------------------------------------------------
def test_the_distillation_recipe_names_its_files_and_reports_them_missing(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(DISTILL_RECIPE)
    named = dict(recipe_files(config))
    assert named["model.encoder_weights"].endswith("coral/mobilenet_v2_1.0_224_quant.tflite")
    assert named["data.extra_train_sets[0].root"].endswith("udacity_dashcam/solidWhiteRight.mp4")
    assert named["data.extra_train_sets[0].options.teacher"].endswith("cityscapes_quant.tflite")
    assert not [path for path in named.values() if "camvid" in path or "kitti" in path]  # research-only data
    monkeypatch.chdir(tmp_path)  # where ../shared does not exist
    with pytest.raises(ConfigError) as error:
        check_recipe_files(config)
    assert "model.encoder_weights '../shared/data/coral/mobilenet_v2_1.0_224_quant.tflite'" in str(error.value)
    assert f"working directory, {tmp_path}" in str(error.value)


def test_the_distillation_recipes_files_resolve_from_the_project_root(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(DISTILL_RECIPE)
    monkeypatch.chdir(ROOT)
    if not all(Path(path).exists() for _, path in recipe_files(config)):
        pytest.skip("the shared data (../shared/data: Coral files, Udacity clip) is not next to this checkout")
    check_recipe_files(config)
