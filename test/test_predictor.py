from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import LogCapture, make_card, make_model

from hydranet_ros import Prediction, load_predictor
from hydranet_ros.inference.device import UnsupportedPrecisionError, precision_name
from hydranet_ros.inference.frame_network import normalise
from hydranet_ros.inference.predictor import OUTPUTS, Predictor
from hydranet_ros.model.presets import KITTI6


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    card = make_card()
    return Predictor(make_model(card, seed=7), card, device="cpu")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(45, 70, 3), dtype=np.uint8)


def test_outputs_have_input_resolution_types_and_units(predictor: Predictor, image: np.ndarray) -> None:
    result = predictor.predict(image, OUTPUTS)
    assert isinstance(result, Prediction)
    assert result.depth.shape == (45, 70) and result.depth.dtype == np.float32
    assert result.labels.shape == (45, 70) and result.labels.dtype == np.uint8
    for colour in (result.overlay, result.depth_colour, result.segm_colour):
        assert colour.shape == (45, 70, 3) and colour.dtype == np.uint8
    assert (result.depth >= 0).all()  # the card's depth activation is abs
    assert set(np.unique(result.labels)) <= set(range(6))


def test_outputs_equal_the_raw_model_upsampled(predictor: Predictor, image: np.ndarray) -> None:
    """Depth is the stride-4 head output bilinearly upsampled to the input, in metres;
    labels are the argmax of the upsampled logits."""
    x = normalise(torch.from_numpy(image).permute(2, 0, 1)[None], KITTI6_MEAN, KITTI6_STD)
    with torch.no_grad():
        raw = predictor.module(x)
    depth = F.interpolate(raw["depth"], size=(45, 70), mode="bilinear", align_corners=False)[0, 0].abs()
    labels = F.interpolate(raw["segm"], size=(45, 70), mode="bilinear", align_corners=False)[0].argmax(0)
    result = predictor.predict(image)
    np.testing.assert_allclose(result.depth, depth.numpy(), atol=1e-5)
    assert (result.labels == labels.numpy()).mean() > 0.999


KITTI6_MEAN, KITTI6_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_overlay_blends_image_with_palette(predictor: Predictor, image: np.ndarray) -> None:
    result = predictor.predict(image, ["labels", "overlay", "segm_colour"])
    palette = np.array(KITTI6.palette, dtype=np.float64)
    expected = np.round(image * 0.5 + palette[result.labels] * 0.5)
    np.testing.assert_array_equal(result.overlay, expected.astype(np.uint8))
    np.testing.assert_array_equal(result.segm_colour, palette[result.labels].astype(np.uint8))


def test_overlay_alpha_extremes(image: np.ndarray) -> None:
    card = make_card()
    opaque = Predictor(make_model(card, seed=7), card, device="cpu", overlay_alpha=1.0).predict(image, ["labels", "overlay"])
    assert (opaque.overlay == np.array(KITTI6.palette, dtype=np.uint8)[opaque.labels]).all()
    clear = Predictor(make_model(card, seed=7), card, device="cpu", overlay_alpha=0.0).predict(image, ["overlay"])
    assert (clear.overlay == image).all()


def test_depth_colour_follows_the_display_range(image: np.ndarray) -> None:
    card = make_card()
    near = Predictor(make_model(card, seed=7), card, device="cpu", depth_range=(1000.0, 2000.0),
                     depth_colormap="gray").predict(image, ["depth_colour"])
    assert (near.depth_colour == 0).all()  # everything closer than the range: low end of the map
    far = Predictor(make_model(card, seed=7), card, device="cpu", depth_range=(0.0, 1e-6),
                    depth_colormap="gray").predict(image, ["depth", "depth_colour"])
    assert (far.depth_colour[far.depth > 1e-6] == 255).all()


def test_only_requested_outputs_are_returned(predictor: Predictor, image: np.ndarray) -> None:
    result = predictor.predict(image, ["depth"])
    assert result.depth is not None and result.labels is None and result.overlay is None


def test_any_input_size(predictor: Predictor) -> None:
    for h, w in [(1, 1), (17, 33), (32, 32), (97, 13)]:
        out = predictor.predict(np.zeros((h, w, 3), np.uint8))
        assert out.depth.shape == (h, w) and out.labels.shape == (h, w)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((10, 10, 4), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((0, 10, 3), np.uint8), "non-empty"),
    ([[1, 2, 3]], "numpy array"),
])
def test_bad_images_raise_clear_errors(predictor: Predictor, bad, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        predictor.predict(bad)


def test_bad_options_raise_clear_errors() -> None:
    card = make_card()
    model = make_model(card)
    with pytest.raises(ValueError, match="precision must be one of"):
        Predictor(model, card, device="cpu", precision="int4")
    with pytest.raises(ValueError, match="overlay_alpha"):
        Predictor(model, card, device="cpu", overlay_alpha=1.5)
    with pytest.raises(ValueError, match="unknown colour map"):
        Predictor(model, card, device="cpu", depth_colormap="rainbowish")
    with pytest.raises(ValueError, match="unknown outputs"):
        Predictor(model, card, device="cpu").predict(np.zeros((4, 4, 3), np.uint8), ["normals"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Predictor(model, card, device="cuda")


def test_auto_precision_is_the_fastest_one_the_device_and_backend_honour() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert precision_name("auto", cpu) == "fp32"
    assert precision_name("auto", cuda) == "fp16"
    assert precision_name("auto", cuda, "tensorrt") == "fp16"
    assert precision_name("auto", cuda, "onnxruntime") == "fp32"  # its graph is fp32: no silent fallback
    assert precision_name("bf16", cpu) == "bf16"
    card = make_card()
    predictor = Predictor(make_model(card), card, device="cpu", precision="auto")
    assert predictor.precision == "fp32" and predictor.dtype == torch.float32


def test_a_precision_the_device_cannot_run_falls_back_with_a_warning(log_capture: LogCapture) -> None:
    card = make_card()
    with log_capture.at_level(logging.WARNING, logger="hydranet_ros.inference"):
        predictor = Predictor(make_model(card), card, device="cpu", precision="fp16")
    assert (predictor.requested_precision, predictor.precision, predictor.dtype) == ("fp16", "fp32", torch.float32)
    assert "'fp16' is not supported on the CPU" in log_capture.text and "(falling back to fp32)" in log_capture.text
    with pytest.raises(UnsupportedPrecisionError):  # the strict resolver, for tools that measure what was asked
        precision_name("fp16", torch.device("cpu"))


def test_bf16_on_cpu_runs_close_to_fp32(weights_file: Path, image: np.ndarray) -> None:
    fp32 = load_predictor(weights_file, device="cpu").predict(image)
    bf16 = load_predictor(weights_file, device="cpu", precision="bf16").predict(image)
    assert bf16.depth.dtype == np.float32
    assert (bf16.labels == fp32.labels).mean() > 0.5  # random weights: labels are fragile, but mostly agree


def test_load_predictor_uses_the_card(weights_file: Path) -> None:
    predictor = load_predictor(weights_file, device="auto")
    assert predictor.class_names == list(KITTI6.class_names)
    assert predictor.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    predictor.warmup(32, 48, iterations=1)


def test_batch_api_matches_single_frames(predictor: Predictor) -> None:
    frames = np.random.default_rng(1).integers(0, 256, size=(2, 24, 40, 3), dtype=np.uint8)
    batch = predictor.predict_batch(torch.from_numpy(frames), ["depth", "labels"])
    for i in range(2):
        single = predictor.predict(frames[i])
        np.testing.assert_allclose(batch["depth"][i].numpy(), single.depth, atol=1e-5)
