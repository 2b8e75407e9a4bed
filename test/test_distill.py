"""Distillation: a teacher (here a tiny ONNX network the test builds) labels an unlabelled
folder once; those frames train the student's segmentation, and bad input stops with a
message naming the file before anything is labelled."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from distill_helpers import CLASS_MAP, OURS, TEACHER_CLASSES, ColourTeacher, colour_frames, colour_teacher, export


@pytest.fixture
def teacher(tmp_path: Path) -> Path:
    return colour_teacher(tmp_path)


def build(teacher: Path, frames: Path, cache: Path, **options):
    from hydranet_ros.training.distill import build_teacher_dataset

    options = {"classes": TEACHER_CLASSES, "class_map": CLASS_MAP, **options}
    return build_teacher_dataset(frames, teacher=teacher, cache_dir=cache, **options)


def test_student_learns_the_teachers_labels(teacher, tmp_path):
    from hydranet_ros.model import HydraNet, ModelConfig
    from hydranet_ros.training.losses import SegmentationTask

    dataset = build(teacher, colour_frames(tmp_path / "unlabelled"), tmp_path / "run" / "teacher_labels")
    assert len(dataset) == 6 and dataset.class_names == OURS
    samples = [dataset[i] for i in range(len(dataset))]
    assert not any(bool(s["has_depth"]) for s in samples) and all(bool(s["has_labels"]) for s in samples)
    images = torch.stack([s["image"] for s in samples]).float() / 255.0
    labels = torch.stack([s["labels"] for s in samples])
    assert set(labels.unique().tolist()) == {OURS.index(c) for c in CLASS_MAP.values()}

    torch.manual_seed(0)
    student = HydraNet(ModelConfig(num_classes=len(OURS), decoder_width=32))
    loss_fn = SegmentationTask("segm", ignore_index=255)
    optimiser = torch.optim.Adam(student.parameters(), lr=3e-3)
    x = (images - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1)
    batch = {"labels": labels, "has_labels": torch.ones(len(labels), dtype=torch.bool)}
    for _ in range(40):
        optimiser.zero_grad()
        loss_fn(student(x), batch).loss.backward()
        optimiser.step()
    with torch.no_grad():
        logits = nn.functional.interpolate(student.eval()(x)["segm"], size=labels.shape[1:], mode="bilinear")
    agreement = float((logits.argmax(1) == labels).float().mean())
    majority = float(labels.flatten().bincount().max() / labels.numel())
    assert agreement > max(0.9, majority + 0.2), (agreement, majority)


def test_labels_are_cached_and_resume(teacher, tmp_path):
    frames = colour_frames(tmp_path / "unlabelled")
    cache = tmp_path / "teacher_labels"
    first = build(teacher, frames, cache)
    folder = first.root
    label = folder / "labels" / "000002.png"
    before = label.stat().st_mtime_ns
    label.unlink()
    (folder / "manifest.json").unlink()  # as a run killed before it finished leaves it
    second = build(teacher, frames, cache)
    assert second.root == folder and len(second) == len(first)
    assert label.is_file() and (folder / "labels" / "000001.png").stat().st_mtime_ns <= before
    assert np.array_equal(second[2]["labels"].numpy(), first[2]["labels"].numpy())
    assert (folder / "confidence" / "000002.png").is_file()  # a scoring teacher's confidence is kept


def test_low_confidence_pixels_are_ignored(teacher, tmp_path):
    import cv2

    frames = tmp_path / "grey"
    frames.mkdir()
    image = np.empty((32, 32, 3), np.uint8)
    image[:] = (124, 116, 104)  # ImageNet's mean colour: equal scores, confidence 1/3
    image[:, :16] = (230, 20, 20)  # a confident red half
    cv2.imwrite(str(frames / "f.png"), image[:, :, ::-1])
    labels = build(teacher, frames, tmp_path / "cache", min_confidence=0.6)[0]["labels"]
    assert (labels[:, 2:14] == OURS.index("car")).all()
    assert (labels[:, 18:] == 255).all()


def test_fixed_size_teacher_letterboxes_the_frame(tmp_path):
    pytest.importorskip("onnxruntime", reason="running an .onnx teacher needs onnxruntime")
    from hydranet_ros.training.distill import load_teacher

    net = load_teacher(export(ColourTeacher(), tmp_path / "fixed.onnx", (1, 3, 40, 40), dynamic=False))
    assert net.input.size == (40, 40)
    image = np.zeros((30, 80, 3), np.uint8)
    image[:, :40] = (0, 0, 230)
    image[:, 40:] = (0, 220, 0)
    ids, confidence = net.label(image)
    assert ids.shape == (30, 80) and confidence is not None
    assert (ids[:, 4:36] == 2).all() and (ids[:, 44:76] == 1).all()


# -- bad input: each stops with a message naming the file, before any labelling ----------------

def test_a_classifier_is_not_a_teacher(tmp_path, teacher):
    from hydranet_ros.training.distill import TeacherError

    classifier = export(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), tmp_path / "classifier.onnx",
                        (1, 3, 32, 32))
    with pytest.raises(TeacherError, match="classifier.onnx: not a segmentation network"):
        build(classifier, colour_frames(tmp_path / "f"), tmp_path / "cache")


class Grey(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, 3, 1, 1)


@pytest.mark.parametrize("shape, dtype, message", [
    ((1, 1, 32, 32), torch.float32, "no axis of 3 colour channels"),
    ((4, 3, 32, 32), torch.float32, "a teacher needs one image"),
    ((1, 3, 32, 32), torch.int64, "input type cannot be fed an image"),
])
def test_a_teacher_whose_input_cannot_be_met(tmp_path, teacher, shape, dtype, message):
    from hydranet_ros.training.distill import TeacherError

    class Net(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.float()
            return ColourTeacher()(x if x.shape[1] == 3 else x.repeat(1, 3, 1, 1))

    odd = export(Net(), tmp_path / "odd_input.onnx", shape, dynamic=False, dtype=dtype)
    with pytest.raises(TeacherError, match=f"odd_input.onnx: .*{message}"):
        build(odd, colour_frames(tmp_path / "f"), tmp_path / "cache")


@pytest.mark.parametrize("class_map, message", [
    ({"red thing": "banana"}, "'banana' .* is not one of our classes"),
    ({"purple thing": "car"}, "'purple thing' is not one of their classes"),
    ({7: "car"}, "id 7 is not a class of theirs"),
])
def test_a_class_map_naming_missing_classes(teacher, tmp_path, class_map, message):
    from hydranet_ros.training.distill import ClassMapError

    with pytest.raises(ClassMapError, match=f"colour_teacher.onnx: {message}"):
        build(teacher, colour_frames(tmp_path / "f"), tmp_path / "cache", class_map=class_map)
    assert not (tmp_path / "cache").exists()


def test_a_misspelt_label_set_names_the_teacher(teacher, tmp_path):
    from hydranet_ros.training.distill import ClassMapError

    with pytest.raises(ClassMapError, match=f"teacher {teacher}: unknown label set 'citiscapes'; name one of"):
        build(teacher, colour_frames(tmp_path / "f"), tmp_path / "cache", classes="citiscapes")
    assert not (tmp_path / "cache").exists()


def test_unlabelled_data_without_a_readable_frame(teacher, tmp_path):
    from hydranet_ros.training.distill import UnlabelledDataError

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    with pytest.raises(UnlabelledDataError, match=f"{broken}: no readable frame \\(1 could not be decoded\\)"):
        build(teacher, broken, tmp_path / "cache")
    with pytest.raises(UnlabelledDataError, match="missing_bag: input not found"):
        build(teacher, tmp_path / "missing_bag", tmp_path / "cache")
