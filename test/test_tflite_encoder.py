"""The TensorFlow Lite ImageNet MobileNetV2 as our encoder's starting weights.

Proof of the conversion: our float encoder plus the file's classifier ranks ImageNet
classes as the TFLite interpreter does on the Coral test images. Two forms:
- with TF's "SAME" padding reproduced (``use_tf_same_padding``): the conversion itself,
  which must match the 8-bit network within its rounding (logits within 0.6; the top-5
  agree up to classes whose TFLite logits lie within 3 quantisation steps of the 5th);
- with our symmetric padding (what training starts from): the top-1 class is the same,
  and 4 of the top 5 (measured: grace_hopper loses "bow tie" to "academic gown", 0.2 below
  it in TFLite's logits; cat loses "space heater" to "doormat").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hydranet_ros.model.mobilenet import MobileNetV2Encoder
from hydranet_ros.model.presets import IMAGENET_MEAN, IMAGENET_STD

CORAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coral"
MOBILENET = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
DEEPLAB = CORAL / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"
EXPECTED = {"grace_hopper.bmp": "military uniform", "cat.bmp": "Egyptian cat"}


def _require(*modules: str, files: tuple[Path, ...] = (MOBILENET,)) -> None:
    for module in modules:
        pytest.importorskip(module, reason=f"{module} is not installed (pip install {module.replace('_', '-')})")
    for file in files:
        if not file.is_file():
            pytest.skip(f"{file} not found (the Coral test data in the project's ../shared)")


def _image(name: str) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(CORAL / name))
    return cv2.resize(bgr[:, :, ::-1], (224, 224), interpolation=cv2.INTER_AREA)


def _tflite_logits(rgb: np.ndarray) -> np.ndarray:
    """The interpreter's pre-softmax logits, dequantised (its uint8 softmax ties below the top 3)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(MOBILENET), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], rgb[None])
    interpreter.invoke()
    logits = [d for d in interpreter.get_tensor_details() if tuple(d["shape"]) == (1, 1, 1, 1001)]
    assert len(logits) == 1, "the logits tensor of the file's classifier"
    scale, zero = logits[0]["quantization"]
    return (interpreter.get_tensor(logits[0]["index"]).reshape(-1).astype(np.float64) - zero) * scale


@pytest.fixture(scope="module")
def converted():
    _require("tflite", "ai_edge_litert")
    from hydranet_ros.training.encoders.tflite_mobilenet import tflite_classifier, tflite_encoder_state

    state = tflite_encoder_state(MOBILENET)
    return state, tflite_classifier(MOBILENET).eval()


def _our_logits(state, head, rgb: np.ndarray, tf_padding: bool) -> np.ndarray:
    from hydranet_ros.inference.frame_network import normalise
    from hydranet_ros.training.encoders.tflite_mobilenet import use_tf_same_padding

    encoder = MobileNetV2Encoder()
    encoder.load_state_dict(state)
    encoder.eval()
    if tf_padding:
        use_tf_same_padding(encoder)
    x = normalise(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None], IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        return head(encoder(x)[-1])[0].double().numpy()


def _labels() -> list[str]:
    return (CORAL / "imagenet_labels.txt").read_text().splitlines()


def _top5(logits: np.ndarray) -> list[int]:
    return list(np.argsort(-logits)[:5])


@pytest.mark.parametrize("image", sorted(EXPECTED))
def test_conversion_matches_the_tflite_network(converted, image):
    state, head = converted
    rgb = _image(image)
    theirs, ours = _tflite_logits(rgb), _our_logits(state, head, rgb, tf_padding=True)
    names = _labels()
    assert names[int(np.argmax(theirs))] == EXPECTED[image]
    assert names[int(np.argmax(ours))] == EXPECTED[image]
    assert np.abs(ours - theirs).max() < 0.6
    fifth, step = np.sort(theirs)[-5], 0.0989  # the logits tensor's quantisation step
    for cls in set(_top5(ours)) ^ set(_top5(theirs)):
        assert theirs[cls] > fifth - 3 * step, f"{names[cls]} is far from TFLite's top 5"


@pytest.mark.parametrize("image", sorted(EXPECTED))
def test_symmetric_padding_keeps_the_ranking(converted, image):
    state, head = converted
    rgb = _image(image)
    theirs, ours = _tflite_logits(rgb), _our_logits(state, head, rgb, tf_padding=False)
    assert _labels()[int(np.argmax(ours))] == EXPECTED[image]
    assert len(set(_top5(ours)) & set(_top5(theirs))) >= 4


def test_batchnorm_statistics_keep_the_eval_function_and_suit_training(converted):
    """Calibrated BatchNorms compute the same eval-mode function as identity ones, and in
    training mode (batch statistics) stay close to it, where identity ones do not."""
    from hydranet_ros.training.encoders.tflite_mobilenet import synthetic_calibration_frames

    state, _ = converted
    frames = synthetic_calibration_frames(count=4)
    identity = dict(state)  # the same function with identity BatchNorms: bias - mean, var 1
    for key in [k for k in state if k.endswith("running_mean")]:
        bn = key[:-len("running_mean")]
        identity[bn + "bias"] = state[bn + "bias"] - state[key]
        identity[bn + "weight"] = torch.full_like(state[key], (1 + 1e-5) ** 0.5)
        identity[key] = torch.zeros_like(state[key])
        identity[bn + "running_var"] = torch.ones_like(state[key])
    outputs = {}
    for name, weights in (("calibrated", state), ("identity", identity)):
        encoder = MobileNetV2Encoder()
        encoder.load_state_dict(weights)
        with torch.no_grad():
            outputs[name, "eval"] = encoder.eval()(frames)[-1]
            outputs[name, "train"] = encoder.train()(frames)[-1]
    reference = outputs["calibrated", "eval"]
    assert torch.allclose(outputs["identity", "eval"], reference, atol=1e-3, rtol=1e-3)

    def relative(a: torch.Tensor) -> float:
        return float((a - reference).norm() / reference.norm())

    assert relative(outputs["calibrated", "train"]) < 0.05
    assert relative(outputs["identity", "train"]) > 0.5


def test_a_segmentation_tflite_is_refused_naming_the_file():
    _require("tflite", files=(DEEPLAB,))
    from hydranet_ros.training.encoders.tflite_file import TfliteError
    from hydranet_ros.training.encoders.tflite_mobilenet import tflite_encoder_state

    with pytest.raises(TfliteError, match=f"{DEEPLAB.name}.*not an ImageNet MobileNetV2"):
        tflite_encoder_state(DEEPLAB)


def test_a_file_that_is_not_tflite_is_refused_naming_it(tmp_path):
    _require("tflite", files=())
    from hydranet_ros.training.encoders.tflite_file import TfliteError
    from hydranet_ros.training.encoders.tflite_mobilenet import tflite_encoder_state

    bogus = tmp_path / "weights.tflite"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(TfliteError, match="weights.tflite: not a TensorFlow Lite model"):
        tflite_encoder_state(bogus)
    with pytest.raises(TfliteError, match="missing.tflite: cannot read"):
        tflite_encoder_state(tmp_path / "missing.tflite")
