"""The encoder's starting weights from a local file (model.encoder_weights) or torchvision's ImageNet
download (init.imagenet): one path, torchvision's names mapped onto ours, a report, clear refusals.

The files are built here from torchvision's models with random weights: no download."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from safetensors.torch import save_file

import hydranet_ros.training.tasks.depth_segmentation as DS
import hydranet_ros.training.tasks.model_init as model_init
import hydranet_ros.training.train as T
from hydranet_ros.inference.weights import WeightsError, read_card
from hydranet_ros.model import build_encoder
from hydranet_ros.model.backbones import TorchvisionMobileNetV2Encoder
from hydranet_ros.training.config import load_config
from hydranet_ros.training.data.synthetic import SyntheticStreetDataset
from hydranet_ros.training.tasks.encoder_files import load_encoder_state, load_into, read_encoder_file

CORAL_TFLITE = Path(__file__).resolve().parents[2] / "shared" / "data" / "coral" / "mobilenet_v2_1.0_224_quant.tflite"


def torchvision_mobilenet(width_mult: float = 1.0) -> torchvision.models.MobileNetV2:
    """Random weights with batch-norm statistics and affine parameters away from their
    defaults, so that a tensor loaded into the wrong place changes the features."""
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(width_mult=width_mult).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net


@pytest.fixture(scope="module")
def mobilenet_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[torchvision.models.MobileNetV2, Path, Path]:
    net = torchvision_mobilenet()
    folder = tmp_path_factory.mktemp("encoders")
    torch.save(net.state_dict(), folder / "mobilenet_v2-b0353104.pth")
    save_file(net.state_dict(), str(folder / "mobilenet_v2.safetensors"))
    return net, folder / "mobilenet_v2-b0353104.pth", folder / "mobilenet_v2.safetensors"


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_torchvision_mobilenet_file_gives_our_reference_encoder_torchvisions_features(
        mobilenet_files: tuple, kind: str) -> None:
    net, pth, safetensors = mobilenet_files
    path = pth if kind == "pth" else safetensors
    encoder = build_encoder("mobilenet_v2")
    report = load_into(encoder, read_encoder_file(path), "mobilenet_v2", str(path))
    assert "loaded 306 of the encoder's 312 tensors" in report
    assert "layer2.0.output.0 set to pass its input through" in report
    assert "not used from the file: features.18.*, classifier.1.*" in report

    reference = TorchvisionMobileNetV2Encoder()
    reference.features.load_state_dict(net.features[:18].state_dict())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours, theirs = encoder.eval()(x), reference.eval()(x)
    # measured: 2.4e-7 at most (the identity block's batch norm divides and multiplies by one std)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def test_load_encoder_state_is_keyed_by_our_encoders_names(mobilenet_files: tuple) -> None:
    net, pth, _ = mobilenet_files
    state = load_encoder_state(pth, "mobilenet_v2")
    assert torch.equal(state["layer1.0.weight"], net.state_dict()["features.0.0.weight"])
    assert torch.equal(state["layer2.0.output.1.0.weight"], net.state_dict()["features.1.conv.0.0.weight"])
    assert torch.equal(state["layer8.0.output.2.1.running_var"], net.state_dict()["features.17.conv.3.running_var"])
    assert set(state) <= set(build_encoder("mobilenet_v2").state_dict())
    assert set(load_encoder_state(pth, "tv_mobilenet_v2")) == set(build_encoder("tv_mobilenet_v2").state_dict())


def test_a_recipe_starts_its_encoder_from_the_file_and_says_so(mobilenet_files: tuple, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """The ResNet names map too (conv1/bn1 -> stem), through the recipe and into the card."""
    torch.manual_seed(1)
    resnet = torchvision.models.resnet18()
    save_file(resnet.state_dict(), str(tmp_path / "resnet18.safetensors"))
    config = load_config(None, ["model.backbone=resnet18", "model.decoder_width=16",
                                f"model.encoder_weights={tmp_path / 'resnet18.safetensors'}"])
    model, description = DS.build_model(config, SyntheticStreetDataset(1, 64, 32))
    assert torch.equal(model.encoder.stem[0].weight, resnet.conv1.weight)
    assert torch.equal(model.encoder.layer4[1].bn2.running_var, resnet.layer4[1].bn2.running_var)
    assert description == "resnet18 encoder from resnet18.safetensors"
    assert "loaded 120 of the encoder's 120 tensors" in capsys.readouterr().out

    # end to end: the card's provenance names the file
    _, pth, _ = mobilenet_files
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "r", "device": "cpu", "model": {"decoder_width": 16, "encoder_weights": str(pth)},
        "data": {"kind": "synthetic", "options": {"width": 64, "height": 32}, "train_options": {"num_samples": 2},
                 "val_split": None, "transform": {"size": [32, 64]}, "batch_size": 2},
        "schedule": {"epochs": 1}, "logging": {"tensorboard": False, "progress": False}}))
    out = tmp_path / "r.safetensors"
    assert T.main(["--config", str(recipe), "--run-dir", str(tmp_path / "run"), "--output", str(out)]) == 0
    assert read_card(out).provenance["init"] == "mobilenet_v2 encoder from mobilenet_v2-b0353104.pth"


def test_init_imagenet_goes_through_the_same_path(mobilenet_files: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    net, _, _ = mobilenet_files
    monkeypatch.setattr(model_init, "torchvision_imagenet", lambda backbone: (net.state_dict(), "mobilenet_v2-x.pth"))
    config = load_config(None, ["init.imagenet=true", "model.decoder_width=16"])
    model, description = DS.build_model(config, SyntheticStreetDataset(1, 64, 32))
    assert description == "ImageNet mobilenet_v2 encoder (torchvision mobilenet_v2-x.pth)"
    assert torch.equal(model.encoder.layer8[0].output[2][0].weight, net.features[17].conv[2].weight)


def test_bad_encoder_files_stop_with_the_file_named(mobilenet_files: tuple, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    _, pth, _ = mobilenet_files
    narrow = tmp_path / "mobilenet_v2_050.pth"
    torch.save(torchvision_mobilenet(width_mult=0.5).state_dict(), narrow)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(pth.read_bytes()[:5000])
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in torch.load(pth).items() if not k.startswith("features.17.")}, partial)
    (tmp_path / "weights.onnx").write_bytes(b"onnx")
    cases = [
        (tmp_path / "missing.pth", "mobilenet_v2", "encoder weights file '{path}' not found"),
        (truncated, "mobilenet_v2", "encoder weights file '{path}' is not readable"),
        (tmp_path / "weights.onnx", "mobilenet_v2", "unknown format '.onnx'; use .pth, .pt, .safetensors, .tflite"),
        (narrow, "mobilenet_v2", "{path}: tensor for layer1.0.weight has shape [16, 3, 3, 3], the mobilenet_v2 "
                                 "encoder's is [32, 3, 3, 3]"),
        (pth, "resnet18", "{path}: none of its 314 tensors (e.g. 'features.0.0.weight') belongs to a resnet18 "
                          "encoder"),
        (partial, "mobilenet_v2", "{path}: lacks 15 of the mobilenet_v2 encoder's tensors"),
    ]
    for path, backbone, message in cases:
        with pytest.raises(WeightsError) as error:
            load_into(build_encoder(backbone), read_encoder_file(path), backbone, str(path))
        assert message.format(path=path) in str(error.value)
    # the command line: a one-line message, exit 1, no traceback
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "device": "cpu", "model": {"encoder_weights": str(narrow)},
                                      "data": {"options": {"num_samples": 2, "width": 64, "height": 32}}}))
    assert T.main(["--config", str(recipe), "--run-dir", str(tmp_path / "run")]) == T.EXIT_ERROR
    err = capsys.readouterr().err
    assert f"{narrow}: tensor for layer1.0.weight has shape" in err and "Traceback" not in err


def test_a_tflite_encoder_file_goes_through_the_converter() -> None:
    if not CORAL_TFLITE.is_file():
        pytest.skip(f"the Coral ImageNet MobileNetV2 {CORAL_TFLITE} is not on this machine (shared data)")
    try:
        import tflite  # noqa: F401
    except ImportError:
        pytest.skip("reading .tflite needs the 'tflite' package (pip install -e '.[tflite]')")
    encoder = build_encoder("mobilenet_v2")
    report = load_into(encoder, read_encoder_file(CORAL_TFLITE), "mobilenet_v2", str(CORAL_TFLITE))
    assert "loaded 312 of the encoder's 312 tensors" in report and "not used" not in report
