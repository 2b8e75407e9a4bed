from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_card, make_model
from safetensors.torch import save_file

from hydranet_ros.inference.weights import CARD_KEY, WeightsError, load_weights, read_card, save_weights
from hydranet_ros.model import HydraNet, ModelConfig


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
