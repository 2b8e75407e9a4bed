"""segeval: a teacher or a weights file scored against ground truth in another label set,
and teacher labels written for hydranet_replay's --gt-labels-dir."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from distill_helpers import OURS, colour_teacher

from hydranet_ros.tools import segeval

CAMVID_CAR, CAMVID_SKY, CAMVID_VOID = 8, 0, 11


def half_red_half_blue(folder: Path) -> tuple[Path, Path]:
    """Two frames, red left (a car) and blue right (sky), with CamVid-id ground truth."""
    frames, truth = folder / "frames", folder / "truth"
    frames.mkdir(parents=True)
    truth.mkdir()
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :32] = (230, 20, 20)
    image[:, 32:] = (20, 40, 230)
    gt = np.full((32, 64), CAMVID_CAR, np.uint8)
    gt[:, 32:] = CAMVID_SKY
    gt[0] = CAMVID_VOID
    for name in ("a", "b"):
        cv2.imwrite(str(frames / f"{name}.png"), image[:, :, ::-1])
        cv2.imwrite(str(truth / f"{name}.png"), gt)
    return frames, truth


def test_teacher_classes_we_lack_are_wrong_not_our_last_class(tmp_path, capsys):
    teacher = colour_teacher(tmp_path)
    frames, truth = half_red_half_blue(tmp_path)
    written = tmp_path / "teacher_labels"
    # the teacher's blue class is left out of the map: its pixels are none of ours
    code = segeval.main([str(frames), "--model", str(teacher), "--classes", "[red thing, green thing, blue thing]",
                         "--class-map", "{red thing: car}", "--gt-labels-dir", str(truth), "--gt-classes", "camvid",
                         "--write-labels", str(written), "--json", str(tmp_path / "m.json")])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["evaluated"] == 2
    iou = result["segmentation"]["per_class_iou"]
    assert iou == {"sky": 0.0, "car": 1.0}
    labels = cv2.imread(str(written / "a.png"), cv2.IMREAD_UNCHANGED)
    assert (labels[:, :32] == OURS.index("car")).all() and (labels[:, 32:] == 255).all()


def test_weights_file_against_ground_truth_in_our_ids(tmp_path, weights_file, capsys):
    frames, truth = half_red_half_blue(tmp_path)
    for file in truth.iterdir():  # already our ids: 5 car, 0 sky
        gt = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(file), np.select([gt == CAMVID_CAR, gt == CAMVID_SKY], [5, 0], 255).astype(np.uint8))
    assert segeval.main([str(frames), "--model", str(weights_file), "--gt-labels-dir", str(truth),
                         "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 frames, 2 with ground truth" in out and "mIoU" in out


@pytest.mark.parametrize("extra, message", [
    (["--gt-class-map", "{pavement: footpath}"], "'footpath' .* is not one of our classes"),
    (["--class-map", "{purple thing: car}"], "colour_teacher.onnx: 'purple thing' is not one of their classes"),
])
def test_bad_class_maps_exit_with_a_message(tmp_path, capsys, extra, message):
    teacher = colour_teacher(tmp_path)
    frames, truth = half_red_half_blue(tmp_path)
    code = segeval.main([str(frames), "--model", str(teacher), "--classes", "[red thing, green thing, blue thing]",
                         "--gt-labels-dir", str(truth), "--gt-classes", "camvid", "--class-map", "{red thing: car}",
                         *extra])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(message, err), err


def test_a_missing_model_exits_with_a_message(tmp_path, capsys):
    frames, _ = half_red_half_blue(tmp_path)
    assert segeval.main([str(frames), "--model", str(tmp_path / "nothing.onnx")]) == 2
    assert "nothing.onnx not found" in capsys.readouterr().err


def test_start_labels_only_the_held_back_frames(tmp_path, capsys):
    teacher = colour_teacher(tmp_path)
    frames, _ = half_red_half_blue(tmp_path)
    cv2.imwrite(str(frames / "c.png"), cv2.imread(str(frames / "a.png")))
    written = tmp_path / "held_back"
    assert segeval.main([str(frames), "--model", str(teacher), "--classes", "[red thing, green thing, blue thing]",
                         "--class-map", "{red thing: car}", "--start", "1", "--write-labels", str(written)]) == 0
    assert sorted(p.name for p in written.iterdir()) == ["b.png", "c.png"]
    assert "2 frames" in capsys.readouterr().out


@pytest.mark.parametrize("flag, value", [("--start", "-1"), ("--start", "one"), ("--max-frames", "0"),
                                         ("--threads", "0")])
def test_bad_numbers_are_argument_errors(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as info:
        segeval.main([str(tmp_path), "--model", str(tmp_path / "w.safetensors"), flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(f"hydranet_segeval: error: argument {flag}: ")
    assert "Traceback" not in err
