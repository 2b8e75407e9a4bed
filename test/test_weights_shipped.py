"""The default weights the package ships (``SHIPPED_WEIGHTS``) say where they came from
(issue 17): the encoder's source and licence, the teacher and the non-commercial terms of
the Cityscapes data it was trained on, and the unlabelled frames and their licence. A
retrained file whose card drops any of it, or whose tensors no longer match the checksum
written with them, fails here before it ships."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import LogCapture
from safetensors import safe_open
from safetensors.torch import load_file

from hydranet_ros.inference.integrity import CHECKSUM_KEY, tensor_checksum
from hydranet_ros.inference.shipped import SHIPPED_WEIGHTS
from hydranet_ros.inference.weights import load_weights, read_card

SHIPPED = Path(__file__).resolve().parents[1] / SHIPPED_WEIGHTS
ENCODER_FILE = "mobilenet_v2_1.0_224_quant.tflite"
TEACHER_FILE = "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"


@pytest.fixture(scope="module")
def provenance() -> dict[str, Any]:
    return read_card(SHIPPED).provenance


def test_the_card_names_the_encoder_and_its_licence(provenance: dict[str, Any]) -> None:
    encoder = provenance["encoder"]
    assert ENCODER_FILE in encoder and "ImageNet" in encoder and "Apache-2.0" in encoder
    # and training really started from that file (what the run loaded, not only what the recipe says)
    assert provenance["init"] == f"mobilenet_v2 encoder from {ENCODER_FILE}"


def test_the_card_names_the_teacher_and_the_cityscapes_terms(provenance: dict[str, Any]) -> None:
    teacher = provenance["teacher"]
    assert TEACHER_FILE in teacher and "Apache-2.0" in teacher
    assert "Cityscapes" in teacher and "non-commercial" in teacher
    assert {Path(used["teacher"]).name for used in provenance["teacher_labelled_data"]} == {TEACHER_FILE}


def test_the_card_names_the_unlabelled_data_and_its_licence(provenance: dict[str, Any]) -> None:
    licence_line = provenance["unlabelled_data"]
    assert "MIT" in licence_line
    recordings = [Path(used["unlabelled_data"]) for used in provenance["teacher_labelled_data"]]
    assert recordings and all(used["frames"] > 0 for used in provenance["teacher_labelled_data"])
    # every recording the teacher labelled is one the licence line speaks for
    assert [r.name for r in recordings if r.name not in licence_line] == []
    # research-only sets (CamVid, KITTI) are for evaluation, never for weights we ship
    assert not [r for r in recordings if "camvid" in str(r).lower() or "kitti" in str(r).lower()]


def test_the_shipped_file_loads_with_its_checksum_verified(log_capture: LogCapture) -> None:
    with safe_open(str(SHIPPED), framework="pt") as handle:
        stored = handle.metadata().get(CHECKSUM_KEY)
    assert stored == tensor_checksum(load_file(str(SHIPPED)))
    # the loader checks it too, and says nothing when it matches
    with log_capture.at_level(logging.WARNING, logger="hydranet_ros.inference.weights"):
        _, card = load_weights(SHIPPED)
    assert log_capture.text == "" and card.provenance["teacher_labelled_data"]
