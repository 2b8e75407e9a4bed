from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hydranet_ros.inference.weights import load_weights
from hydranet_ros.model.presets import KITTI6, NYUD40
from hydranet_ros.model.reference_checkpoint import map_reference_key
from hydranet_ros.tools.convert import main


def _reference_checkpoint(path: Path, num_classes: int) -> None:
    """A reference-layout checkpoint made from our own model by inverting the key map."""
    from test_reference_parity import REFERENCE

    from hydranet_ros.model import HydraNet, ModelConfig

    ours = HydraNet(ModelConfig(num_classes=num_classes)).state_dict()
    keys = []
    layout = REFERENCE / "state_dict_layout.json"
    if layout.is_file():
        import json
        name = {6: "ExpKITTI_joint", 40: "ExpNYUD_joint"}[num_classes]
        keys = list(json.loads(layout.read_text())[name]["keys"])
    else:
        pytest.skip(f"needs the reference layout at {layout}")
    state = {k: ours[map_reference_key(k)].clone().normal_() if ours[map_reference_key(k)].is_floating_point()
             else ours[map_reference_key(k)] for k in keys}
    torch.save({"state_dict": state, "epoch": 10}, path)


@pytest.mark.parametrize("classes, dataset, preset", [(6, "kitti", KITTI6), (40, "nyud", NYUD40)])
def test_convert_writes_a_loadable_weights_file(tmp_path: Path, classes: int, dataset: str, preset, capsys) -> None:
    src, dst = tmp_path / "ref.ckpt", tmp_path / "out.safetensors"
    _reference_checkpoint(src, classes)
    assert main([str(src), str(dst), "--dataset", dataset]) == 0
    model, card = load_weights(dst)
    assert card.class_names == list(preset.class_names) and card.palette == list(preset.palette)
    assert "non-commercial" in card.provenance["licence"]
    reference = torch.load(src, weights_only=True)["state_dict"]
    assert torch.equal(model.state_dict()["heads.segm.out.weight"], reference["segm.weight"])
    assert "wrote" in capsys.readouterr().out


def test_convert_refuses_the_wrong_dataset(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "ref.ckpt", tmp_path / "out.safetensors"
    _reference_checkpoint(src, 6)
    assert main([str(src), str(dst), "--dataset", "nyud"]) == 1
    assert "6 classes but dataset 'nyud' has 40" in capsys.readouterr().err
    assert not dst.exists()


def test_convert_does_not_overwrite(tmp_path: Path, capsys) -> None:
    dst = tmp_path / "out.safetensors"
    dst.write_text("keep me")
    assert main([str(tmp_path / "x.ckpt"), str(dst), "--dataset", "kitti"]) == 2
    assert dst.read_text() == "keep me"


@pytest.mark.parametrize("content, message", [(b"", "not a readable"), (b"garbage" * 10, "not a readable")])
def test_convert_reports_bad_sources(tmp_path: Path, content: bytes, message: str, capsys) -> None:
    src = tmp_path / "bad.ckpt"
    src.write_bytes(content)
    assert main([str(src), str(tmp_path / "o.safetensors"), "--dataset", "kitti"]) == 1
    assert message in capsys.readouterr().err


def test_convert_reports_missing_source(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "missing.ckpt"), str(tmp_path / "o.safetensors"), "--dataset", "kitti"]) == 1
    assert "not found" in capsys.readouterr().err


def test_foreign_state_dict_is_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "resnet.ckpt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2), "segm.weight": torch.zeros(6, 256, 3, 3),
                               "depth.weight": torch.zeros(1, 256, 3, 3)}}, src)
    assert main([str(src), str(tmp_path / "o.safetensors"), "--dataset", "kitti"]) == 1
    assert "no counterpart" in capsys.readouterr().err


@pytest.mark.parametrize("state, message", [
    ({1: torch.zeros(2), "segm.weight": torch.zeros(6, 256, 3, 3)}, "keys must be parameter names"),
    ({"segm.weight": torch.tensor(6.0), "depth.weight": torch.zeros(1, 256, 3, 3)},
     "'segm.weight' should be a 4-d conv weight, got shape ()"),
    ({"segm.weight": torch.zeros(6, 256, 3, 3), "depth.weight": torch.zeros(1)},
     "'depth.weight' should be a 4-d conv weight"),
])
def test_odd_checkpoints_get_a_message_not_a_traceback(tmp_path: Path, capsys, state: dict, message: str) -> None:
    """Integer keys and 0-d tensors used to end in AttributeError / IndexError tracebacks."""
    src = tmp_path / "odd.ckpt"
    torch.save({"state_dict": state}, src)
    assert main([str(src), str(tmp_path / "o.safetensors"), "--dataset", "kitti"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hydranet_convert: ") and message in err and "Traceback" not in err
    assert str(src) in err, "the message names the checkpoint"
    assert not (tmp_path / "o.safetensors").exists()
