from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from conftest import LogCapture, make_card, make_model
from safetensors.torch import save_file

from hydranet_ros.inference.integrity import CHECKSUM_KEY, tensor_checksum
from hydranet_ros.inference.weights import CARD_KEY, WeightsError, load_weights, read_card, save_weights
from hydranet_ros.model import HydraNet, ModelConfig

# every weights file the package ships (the default and the synthetic-only one)
SHIPPED = sorted((Path(__file__).resolve().parents[1] / "weights").glob("*.safetensors"))


def test_round_trip_keeps_every_tensor_and_the_card(tmp_path: Path) -> None:
    card = make_card(provenance={"source": "test", "dataset": "none"})
    model = make_model(card, seed=5)
    path = tmp_path / "m.safetensors"
    save_weights(path, model, card)
    loaded, loaded_card = load_weights(path)
    assert loaded_card == card
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training


def test_card_is_readable_without_tensors(weights_file: Path) -> None:
    card = read_card(weights_file)
    assert card.class_names[0] == "sky" and card.palette[2] == (128, 64, 128)
    assert card.depth_unit == "m" and card.output_stride == 4
    assert card.mean == (0.485, 0.456, 0.406)


def test_extra_heads_round_trip(tmp_path: Path) -> None:
    card = make_card(40, model=ModelConfig(num_classes=40, extra_heads={"normals": 3}))
    path = tmp_path / "three.safetensors"
    save_weights(path, make_model(card), card)
    model, loaded = load_weights(path)
    assert set(model.heads) == {"segm", "depth", "normals"} and loaded.model.extra_heads == {"normals": 3}


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found: .*nope.safetensors"):
        load_weights(tmp_path / "nope.safetensors")


def test_truncated_file_is_named(weights_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(weights_file.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="truncated.safetensors"):
        load_weights(bad)


def test_file_without_card_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(1)}, str(path))
    with pytest.raises(WeightsError, match="no HydraNet model card"):
        load_weights(path)


def test_wrong_class_count_is_never_loaded_partially(tmp_path: Path) -> None:
    # tensors of a 6-class model under a card that claims 40 classes
    model = make_model(make_card(6))
    card40 = make_card(40)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "mismatch.safetensors"
    save_file(tensors, str(path), metadata={CARD_KEY: card40.to_json()})
    with pytest.raises(WeightsError, match=r"mismatch.safetensors: .*wrong shape.*heads.segm"):
        load_weights(path)


def test_missing_keys_are_listed(tmp_path: Path) -> None:
    card = make_card()
    tensors = {k: v.contiguous() for k, v in make_model(card).state_dict().items() if not k.startswith("heads.depth")}
    path = tmp_path / "partial.safetensors"
    save_file(tensors, str(path), metadata={CARD_KEY: card.to_json()})
    with pytest.raises(WeightsError, match=r"missing .*heads\.depth"):
        load_weights(path)


@pytest.mark.parametrize("change, message", [
    ({"class_names": ["a"]}, "1 class names for 6 classes"),
    ({"palette": [(0, 0, 0)] * 5}, "5 palette colours"),
    ({"depth_range": (5.0, 1.0)}, "depth_range"),
    ({"depth_activation": "exp"}, "depth_activation"),
    ({"std": (0.2, 0.0, 0.2)}, "std > 0"),
])
def test_invalid_cards_are_refused(change: dict, message: str) -> None:
    with pytest.raises(WeightsError, match=message):
        make_card(**change)


def test_unknown_card_version_is_refused(tmp_path: Path) -> None:
    card = make_card()
    data = json.loads(card.to_json())
    data["format_version"] = 99
    path = tmp_path / "future.safetensors"
    save_file({k: v.contiguous() for k, v in make_model(card).state_dict().items()}, str(path),
              metadata={CARD_KEY: json.dumps(data)})
    with pytest.raises(WeightsError, match="format 99 is not supported"):
        read_card(path)


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    card = make_card()
    path = tmp_path / "out" / "m.safetensors"
    save_weights(path, make_model(card), card)

    class Boom(HydraNet):
        def state_dict(self, *args, **kwargs):  # type: ignore[override]
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_weights(path, Boom(card.model), card)
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]
    load_weights(path)  # the earlier file is intact


def test_card_must_match_model() -> None:
    card = make_card()
    with pytest.raises(WeightsError, match="does not match"):
        save_weights("/tmp/never.safetensors", HydraNet(ModelConfig(num_classes=7)), card)


def test_saved_files_are_readable_by_others(weights_file: Path) -> None:
    assert (weights_file.stat().st_mode & 0o777) == 0o644


def _write(path: Path, card_json: str, tensors: dict[str, torch.Tensor], checksum: str | None = None) -> Path:
    """A weights file written by hand, as a damaged or older file would be."""
    metadata = {CARD_KEY: card_json}
    if checksum is not None:
        metadata[CHECKSUM_KEY] = checksum
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def test_a_flipped_bit_in_the_tensor_data_is_refused(weights_file: Path, tmp_path: Path) -> None:
    data = bytearray(weights_file.read_bytes())
    data[-1001] ^= 0x10  # inside the tensor data, which follows the header
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"flipped.safetensors: .*checksum.*corrupted"):
        load_weights(bad)


def test_non_finite_tensors_are_refused_by_name(tmp_path: Path) -> None:
    card = make_card()
    tensors = dict(make_model(card).state_dict())
    tensors["heads.depth.out.bias"] = torch.full_like(tensors["heads.depth.out.bias"], float("nan"))
    tensors["encoder.layer1.0.weight"] = tensors["encoder.layer1.0.weight"].clone()
    tensors["encoder.layer1.0.weight"][0, 0, 0, 0] = float("inf")
    # with a checksum that matches the damaged tensors (a diverged run saved by hand), and without one
    for name, checksum in (("summed.safetensors", tensor_checksum(tensors)), ("old.safetensors", None)):
        path = _write(tmp_path / name, card.to_json(), tensors, checksum)
        with pytest.raises(WeightsError, match=rf"{name}: non-finite .*encoder.layer1.0.weight, heads.depth.out.bias"):
            load_weights(path)


def test_save_refuses_non_finite_tensors(tmp_path: Path) -> None:
    card = make_card()
    model = make_model(card)
    with torch.no_grad():
        model.heads["segm"].out.weight[0] = float("nan")
    with pytest.raises(WeightsError, match="non-finite .*heads.segm.out.weight"):
        save_weights(tmp_path / "nan.safetensors", model, card)
    assert not (tmp_path / "nan.safetensors").exists()


def test_a_file_without_checksum_loads_with_a_notice(tmp_path: Path, log_capture: LogCapture) -> None:
    card = make_card()
    model = make_model(card, seed=3)
    path = _write(tmp_path / "older.safetensors", card.to_json(), model.state_dict())
    with log_capture.at_level(logging.WARNING, logger="hydranet_ros.inference.weights"):
        loaded, _ = load_weights(path)
    assert "older.safetensors: has no tensor checksum" in log_capture.text
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_saved_files_carry_a_checksum_and_load_without_a_notice(weights_file: Path,
                                                              log_capture: LogCapture) -> None:
    with log_capture.at_level(logging.WARNING, logger="hydranet_ros.inference.weights"):
        load_weights(weights_file)
        for shipped in SHIPPED:
            load_weights(shipped)
    assert log_capture.text == "" and len(SHIPPED) >= 2
    from safetensors import safe_open

    for shipped in SHIPPED:
        with safe_open(str(shipped), framework="pt") as handle:
            assert CHECKSUM_KEY in handle.metadata(), shipped


def test_checksum_depends_on_values_names_and_shapes() -> None:
    a = {"x": torch.arange(6.0), "y": torch.zeros(2, dtype=torch.int64)}
    assert tensor_checksum(a) == tensor_checksum({"y": torch.zeros(2, dtype=torch.int64), "x": torch.arange(6.0)})
    for changed in ({**a, "x": torch.arange(6.0).flip(0)}, {**a, "x": torch.arange(6.0).view(2, 3)},
                    {"z": a["x"], "y": a["y"]}, {**a, "y": torch.zeros(2, dtype=torch.int32)}):
        assert tensor_checksum(changed) != tensor_checksum(a)


@pytest.mark.parametrize("card_json, message", [
    ("null", "must be a JSON object, got null"),
    ("[1, 2]", "must be a JSON object, got a list"),
    ("42", r"must be a JSON object, got a number \(42\)"),
    ('"card"', "must be a JSON object, got a string"),
])
def test_a_card_that_is_not_an_object_is_refused(tmp_path: Path, card_json: str, message: str) -> None:
    card = make_card()
    path = _write(tmp_path / "odd.safetensors", card_json, make_model(card).state_dict())
    for read in (read_card, load_weights):
        with pytest.raises(WeightsError, match=rf"odd.safetensors: .*{message}"):
            read(path)


def _edited_card(edit) -> str:
    data = json.loads(make_card().to_json())
    edit(data)
    return json.dumps(data)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["model"].update(decoder_width=-5), "'decoder_width' must be an integer >= 1, got -5"),
    (lambda d: d["model"].update(decoder_width="wide"), "'decoder_width' must be an integer"),
    (lambda d: d["model"].update(num_classes=0), "'num_classes' must be an integer >= 1"),
    (lambda d: d["model"].update(backbone="vgg"), "'backbone' must be one of"),
    (lambda d: d["model"].update(extra_heads={"normals": -3}), "'extra_heads.normals' must be an integer >= 1"),
    (lambda d: d.update(model=None), "model config must be a JSON object"),
    (lambda d: d.update(std=[0.2, float("nan"), 0.2]), "std must hold finite numbers"),
    (lambda d: d.update(mean=[0.5, 0.5, float("inf")]), "mean must hold finite numbers"),
    (lambda d: d.update(depth_range=[0.0, float("nan")]), "depth_range must hold finite numbers"),
    (lambda d: d.update(output_stride=float("nan")), "output_stride must be an integer, got nan"),
    (lambda d: d.update(output_stride=0), "output_stride must be at least 1"),
    (lambda d: d.update(ignore_index="x"), "ignore_index must be an integer, got 'x'"),
    (lambda d: d.update(palette=None), "'palette' must be a list, got null"),
    (lambda d: d.update(palette=[[1, 2, 3]] * 5 + [7]), r"'palette' must hold \[r, g, b\]"),
    (lambda d: d.update(class_names=[1, 2, 3, 4, 5, 6]), "'class_names' must hold strings"),
    (lambda d: d.update(provenance=[]), "'provenance' must be an object"),
    (lambda d: d.pop("model"), "no 'model' field"),
])
def test_bad_card_fields_are_refused_by_name(tmp_path: Path, edit, message: str) -> None:
    card = make_card()
    path = _write(tmp_path / "edited.safetensors", _edited_card(edit), make_model(card).state_dict())
    with pytest.raises(WeightsError, match=rf"edited.safetensors: .*{message}"):
        load_weights(path)


def test_a_bad_face_card_is_refused_by_name(tmp_path: Path) -> None:
    from hydranet_ros.model import FaceModelConfig

    for change, message in (({"head_width": 0}, "'head_width' must be an integer >= 1"),
                            ({"age_std": float("nan")}, "'age_std' must be a finite number > 0"),
                            ({"image_size": 128}, r"'image_size' must be \[height, width\]")):
        data = {**FaceModelConfig().to_dict(), **change}
        with pytest.raises(ValueError, match=message):
            FaceModelConfig.from_dict(data)
