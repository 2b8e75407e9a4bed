"""The UTKFace loader: labels from file names, skip-and-count, a deterministic split."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from face_helpers import MALFORMED_NAMES, face_image, make_faces, write_face

from hydranet_ros.training.data import (
    RACE_NAMES,
    SampleError,
    UTKFaceDataset,
    build_dataset,
    face_train_transforms,
    parse_name,
)
from hydranet_ros.training.data.utkface import FaceLabels


@pytest.mark.parametrize("name, labels", [
    ("26_1_3_20170119180540611.jpg.chip.jpg", FaceLabels(26, 1, 3)),
    ("1_0_0_20161219140623097.jpg.chip.jpg", FaceLabels(1, 0, 0)),
    ("116_1_4_20170120134921760.jpg", FaceLabels(116, 1, 4)),   # in-the-wild parts: no .chip
])
def test_labels_come_from_the_file_name(name: str, labels: FaceLabels) -> None:
    assert parse_name(name) == labels


@pytest.mark.parametrize("name, reason", [
    ("39_1_20170116174525125.jpg.chip.jpg", "found 3 field"),
    ("61_x_0_20170109150557335.jpg.chip.jpg", "must be non-negative integers"),
    ("-5_0_1_20170109150557335.jpg.chip.jpg", "must be non-negative integers"),
    ("25_0_7_20170116174525125.jpg.chip.jpg", "race 7 is outside 0..4"),
    ("25_2_1_20170116174525125.jpg.chip.jpg", "gender 2 is not 0"),
    ("200_0_1_20170116174525125.jpg.chip.jpg", "age 200 is over 120"),
    ("25_0_1_.jpg", "expected age_gender_race_date"),
])
def test_malformed_names_say_what_is_wrong(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_name(name)


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """10 good faces, the published set's kinds of bad names, a corrupt image with a
    good name and a file that is no image at all."""
    root = tmp_path / "UTKFace"
    make_faces(root, 10)
    rng = np.random.default_rng(1)
    for name in MALFORMED_NAMES:
        write_face(root, name, face_image(30, 0, 0, rng))
    (root / "50_0_2_20170116174525125.jpg.chip.jpg").write_bytes(b"not a jpeg")
    (root / "README.txt").write_text("not an image")
    return root


def test_bad_names_and_bad_images_are_skipped_counted_and_named(messy_folder: Path) -> None:
    with pytest.warns(RuntimeWarning) as warned:
        dataset = UTKFaceDataset(messy_folder, "all", image_size=(24, 24))
    messages = " ".join(str(w.message) for w in warned)
    for name in MALFORMED_NAMES:
        assert name in messages
    assert len(dataset) == 11  # 10 faces + the corrupt file, whose name parses
    assert sorted(Path(p).name for p in dataset.skipped) == sorted(MALFORMED_NAMES)

    corrupt = next(i for i, f in enumerate(dataset.files) if f.name.startswith("50_0_2_"))
    with pytest.warns(RuntimeWarning, match="50_0_2_.*not a readable image"):
        sample = dataset[corrupt]  # the next good sample stands in
    assert sample["name"] != dataset.files[corrupt].name
    assert len(dataset.skipped) == len(MALFORMED_NAMES) + 1


def test_bad_names_are_counted_once_per_run_with_the_training_set(messy_folder: Path) -> None:
    with pytest.warns(RuntimeWarning):
        train = UTKFaceDataset(messy_folder, "train", val_fraction=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the validation set warns nothing
        val = UTKFaceDataset(messy_folder, "val", val_fraction=0.3)
    assert len(train.skipped) == len(MALFORMED_NAMES) and val.skipped == []


def test_strict_mode_stops_at_a_bad_name(messy_folder: Path) -> None:
    with pytest.raises(SampleError, match="not a UTKFace name"):
        UTKFaceDataset(messy_folder, "all", strict=True)


def test_a_folder_without_utkface_names_is_refused(tmp_path: Path) -> None:
    write_face(tmp_path, "holiday.jpg", face_image(30, 0, 0, np.random.default_rng(0)))
    with pytest.raises(FileNotFoundError, match="no image under .* has a UTKFace name"):
        UTKFaceDataset(tmp_path)


def test_split_is_seeded_deterministic_and_disjoint(tmp_path: Path) -> None:
    make_faces(tmp_path / "a", 40)
    names = lambda d: [f.name for f in d.files]  # noqa: E731
    train, val = (UTKFaceDataset(tmp_path / "a", s, val_fraction=0.2) for s in ("train", "val"))
    assert len(val) == 8 and len(train) == 32
    assert not set(names(train)) & set(names(val))
    assert sorted(names(train) + names(val)) == names(UTKFaceDataset(tmp_path / "a", "all"))
    # the same files elsewhere, listed again: the same split
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert names(UTKFaceDataset(tmp_path / "b", "val", val_fraction=0.2)) == names(val)
    other = UTKFaceDataset(tmp_path / "a", "val", val_fraction=0.2, split_seed=1)
    assert len(other) == 8 and names(other) != names(val)
    with pytest.raises(ValueError, match="split must be one of train, val, all"):
        UTKFaceDataset(tmp_path / "a", "test")


def test_samples_follow_the_face_contract(tmp_path: Path) -> None:
    make_faces(tmp_path, 4)
    dataset = build_dataset("utkface", tmp_path, "all", None, image_size=[24, 32])
    assert dataset.class_names == list(RACE_NAMES)
    for i in range(len(dataset)):
        sample = dataset[i]
        assert sample["image"].shape == (3, 24, 32) and sample["image"].dtype == torch.uint8
        assert sample["age"].dtype == torch.float32 and sample["gender"].dtype == torch.float32
        assert sample["race"].dtype == torch.int64 and sample["race"].dim() == 0
        expected = parse_name(Path(sample["name"]).name)
        assert (sample["age"].item(), sample["gender"].item(), sample["race"].item()) == \
            (expected.age, expected.gender, expected.race)
    with pytest.raises(ValueError, match="unknown option.*accepted: strict, image_size, val_fraction, split_seed"):
        build_dataset("utkface", tmp_path, "all", None, size=24)


def test_flip_augmentation_keeps_the_labels(tmp_path: Path) -> None:
    make_faces(tmp_path, 1)
    sample = UTKFaceDataset(tmp_path, "all", image_size=(24, 24))[0]
    torch.manual_seed(0)
    flipped = next(out for out in (face_train_transforms()(sample) for _ in range(20))
                   if not torch.equal(out["image"], sample["image"]))
    assert torch.equal(flipped["image"], sample["image"].flip(-1))
    assert all(torch.equal(flipped[k], sample[k]) for k in ("age", "gender", "race"))
