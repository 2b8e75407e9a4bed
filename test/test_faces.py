"""The face-attribute recipe end to end on synthetic UTKFace-style folders (CPU, seconds):
hydranet_train with config/train_utkface.yaml, resume, the weights file and hydranet_faces."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import make_card
from face_helpers import make_faces
from safetensors import safe_open
from safetensors.torch import save_file
from train_helpers import Killed, interrupt_at, kill

import hydranet_ros.tools.faces as faces_cli
import hydranet_ros.training.tasks.face_attributes as FA
import hydranet_ros.training.tasks.model_init as model_init
import hydranet_ros.training.train as T
from hydranet_ros import load_predictor
from hydranet_ros.inference.face_predictor import load_face_predictor
from hydranet_ros.inference.weights import (
    CARD_KEY,
    FACE_ATTRIBUTES,
    ModelCard,
    WeightsError,
    load_weights,
    read_card,
    save_weights,
)
from hydranet_ros.model import FaceHydraNet, FaceModelConfig
from hydranet_ros.offline.metrics import FaceAttributeMetrics
from hydranet_ros.training.checkpoint import load_checkpoint
from hydranet_ros.training.config import ConfigError, load_config
from hydranet_ros.training.data import parse_name
from hydranet_ros.training.losses import PerImageTask

RECIPE = Path(__file__).resolve().parent.parent / "config" / "train_utkface.yaml"
# the shipped recipe, shrunk: 32x32 faces, resnet18 from scratch (no download in tests),
# no colour jitter (colour and brightness are the synthetic faces' signal)
TINY = ["--device", "cpu", "--set", "data.options={image_size: [32, 32], val_fraction: 0.2}",
        "--set", "data.transform={hflip: true}", "--set", "data.num_workers=0", "--set", "init.imagenet=false",
        "--set", "schedule.warmup_steps=5", "--set", "optim.lr_encoder=1e-3", "--set", "logging.progress=false"]


def train_faces(data: Path, out: Path, *args: str) -> int:
    return T.main(["--config", str(RECIPE), "--data", str(data), "--run-dir", str(out / "run"),
                   "--output", str(out / "faces.safetensors"), *TINY, *args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short run shared by the tests that need a trained model: 160 faces (128
    train, 32 val), 5 epochs of 8 steps, ~11 s."""
    root = tmp_path_factory.mktemp("faces")
    make_faces(root / "UTKFace", 160)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            # fixed weights: the age L1 (years) would swamp the two cross-entropies in
            # 40 steps; the learned uncertainty weights of the recipe need longer
            code = train_faces(root / "UTKFace", root, "--epochs", "5", "--set", "data.batch_size=16",
                               "--set", "balancing={kind: fixed, weights: {age: 0.05, gender: 1.0, race: 1.0}}")
    finally:
        torch.set_num_threads(threads)
    assert code == 0, stdout.getvalue()
    return {"root": root, "data": root / "UTKFace", "weights": root / "faces.safetensors", "run": root / "run",
            "stdout": stdout.getvalue()}


# -- learning ----------------------------------------------------------------------------
def test_training_learns_age_gender_and_race(trained: dict[str, Any]) -> None:
    history = load_checkpoint(trained["run"])["progress"]["history"]
    first, last = history[0]["train"], history[-1]["train"]
    # measured (torch 2.14 CPU, one thread): epoch 1 -> 5 mean losses age 12.3 -> 7.0 years,
    # gender 0.49 -> 0.04, race 1.38 -> 0.16
    for name in ("age", "gender", "race"):
        assert last[name] < 0.7 * first[name], (name, first, last)

    config = load_config(trained["run"] / "config.yaml")
    train_set, val_set = FA.build_datasets(config)
    model, card = load_weights(trained["weights"], task=FACE_ATTRIBUTES)
    after, panels = FA.evaluate(model, card, val_set, config, torch.device("cpu"))
    torch.manual_seed(config["seed"])  # the run's initial weights
    untrained, _ = FA.build_model(config, train_set)
    before, _ = FA.evaluate(untrained, card, val_set, config, torch.device("cpu"))
    train_ages = np.array([parse_name(Path(f.name).name).age for f in train_set.files])
    val_ages = np.array([parse_name(Path(f.name).name).age for f in val_set.files])
    mean_guess_mae = float(np.abs(val_ages - train_ages.mean()).mean())
    # measured: age MAE 5.8 years (untrained 16.5, always guessing the mean age 19.5), gender
    # accuracy 1.00 (chance 0.5), race accuracy 1.00 (chance 0.2, untrained 0.19)
    assert after["age_mae"] < 0.6 * min(mean_guess_mae, before["age_mae"])
    assert after["gender_accuracy"] >= 0.85 and after["race_accuracy"] >= 0.6 > before["race_accuracy"] + 0.2
    assert set(after["per_class_race_accuracy"]) == set(card.class_names) and panels == []

    provenance = card.provenance
    assert provenance["final_metrics"]["age_mae"] == pytest.approx(after["age_mae"], abs=1e-4)
    assert provenance["dataset"] == {**provenance["dataset"], "kind": "utkface", "train_samples": 128,
                                     "val_samples": 32, "skipped_samples": {"train": 0, "val": 0}}
    assert "age_mae" in trained["stdout"] and list((trained["run"] / "tb").glob("events.out.tfevents.*"))


# -- never lose work ---------------------------------------------------------------------
def test_killed_face_run_resumes_to_identical_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_faces(tmp_path / "faces", 15)  # 12 train: 3 steps an epoch at batch 4
    # uncertainty weighting (the recipe's): the learned task weights must survive too
    args = ("--epochs", "2", "--set", "data.batch_size=4", "--set", "checkpoint.every_steps=0",
            "--set", "logging.tensorboard=false")
    assert train_faces(tmp_path / "faces", tmp_path / "straight", *args) == 0
    interrupt_at(monkeypatch, 5, kill)  # dies mid-epoch 2: resumes from the end of epoch 1
    with pytest.raises(Killed):
        train_faces(tmp_path / "faces", tmp_path / "broken", *args)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "broken" / "run")["progress"]["global_step"] == 3
    assert T.main(["--resume", str(tmp_path / "broken" / "run")]) == 0

    straight, resumed = (load_checkpoint(tmp_path / n / "run") for n in ("straight", "broken"))
    assert resumed["progress"]["global_step"] == straight["progress"]["global_step"] == 6
    for key, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][key]), key
    assert torch.equal(straight["balancer"]["log_vars"], resumed["balancer"]["log_vars"])
    exported = [load_weights(tmp_path / n / "faces.safetensors", task=FACE_ATTRIBUTES)[0].state_dict()
                for n in ("straight", "broken")]
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[0])


# -- model, losses, metrics --------------------------------------------------------------
def test_backbone_runs_once_per_forward_and_heads_have_their_shapes() -> None:
    torch.manual_seed(0)
    model = FaceHydraNet(FaceModelConfig(image_size=(32, 32), head_width=16)).eval()
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    out = model(torch.randn(3, 3, 32, 32))
    assert len(calls) == 1
    assert out["age"].shape == (3,) and out["gender"].shape == (3,) and out["race"].shape == (3, 5)
    with pytest.raises(ValueError, match="ResNet backbone"):
        FaceHydraNet(FaceModelConfig(backbone="mobilenet_v2"))


def test_gender_loss_is_finite_and_exact_for_huge_logits() -> None:
    logits = torch.tensor([1e4, -1e4, 80.0, -80.0], requires_grad=True)
    targets = torch.tensor([0.0, 1.0, 1.0, 0.0])
    result = PerImageTask("gender", "binary_cross_entropy")({"gender": logits}, {"gender": targets})
    result.loss.backward()
    # two confidently wrong (loss = |logit|), two confidently right (loss ~ e^-80)
    assert result.loss.item() == pytest.approx((1e4 + 1e4) / 4, rel=1e-6) and result.valid == 4
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.tolist() == pytest.approx([0.25, -0.25, 0.0, 0.0], abs=1e-6)
    # what sigmoid-then-BCE gives for the same logits: log(0) clamped, i.e. a wrong loss
    naive = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits.detach()), targets)
    assert naive.item() < result.loss.item() / 10


def test_metrics_count_age_error_gender_and_race_per_class() -> None:
    metrics = FaceAttributeMetrics(["a", "b", "c"])
    metrics.update(torch.tensor([20.0, 30.0, 40.0, 50.0]), torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 1, 2]),
                   torch.tensor([22.0, 30.0, 35.0, 50.0]), torch.tensor([0, 1, 0, 0]), torch.tensor([0, 1, 2, 2]))
    result = metrics.compute()
    assert result["age_mae"] == pytest.approx(7 / 4) and result["gender_accuracy"] == 0.75
    assert result["race_accuracy"] == 0.75 and result["per_class_race_accuracy"] == {"a": 1.0, "b": 1.0, "c": 0.5}


def test_missing_imagenet_weights_fall_back_to_scratch_or_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(backbone: str) -> None:
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(model_init, "torchvision_imagenet", offline)
    make_faces(tmp_path, 10)
    config = load_config(RECIPE, [f"data.root={tmp_path}", "face.head_width=8"])
    train_set, _ = FA.build_datasets(config)
    with pytest.warns(RuntimeWarning, match=r"resnet18-.*\.pth\) are not in the torch hub cache \(.*/checkpoints\)"):
        model, description = FA.build_model(config, train_set)
    assert description == "scratch" and isinstance(model, FaceHydraNet)
    stop = load_config(RECIPE, [f"data.root={tmp_path}", "init.on_missing_weights=stop"])
    with pytest.raises(T.TrainingError, match="set init.on_missing_weights: scratch"):
        FA.build_model(stop, train_set)


def test_recipe_and_task_must_agree() -> None:
    with pytest.raises(ConfigError, match="data.kind 'synthetic' does not go with task 'face_attributes'"):
        load_config(None, ["task=face_attributes"])
    with pytest.raises(ConfigError, match="checkpoint.best_metric 'miou' is not a validation metric of task "
                                          "face_attributes; choose one of age_mae"):
        T.train(load_config(RECIPE, ["checkpoint.best_metric=miou", "data.root=/nowhere",
                                     "run_dir=/tmp/hydranet_never"]))


# -- the weights file --------------------------------------------------------------------
def face_card(**provenance: Any) -> ModelCard:
    return ModelCard(task=FACE_ATTRIBUTES, model=FaceModelConfig(image_size=(32, 32), head_width=8),
                     class_names=["White", "Black", "Asian", "Indian", "Other"], palette=[], provenance=provenance)


def test_face_card_round_trips_and_depth_cards_are_unchanged(tmp_path: Path) -> None:
    card = face_card(source="test")
    torch.manual_seed(0)
    model = FaceHydraNet(card.model)
    save_weights(tmp_path / "face.safetensors", model, card)
    loaded, loaded_card = load_weights(tmp_path / "face.safetensors", task=FACE_ATTRIBUTES)
    assert loaded_card == card and isinstance(loaded, FaceHydraNet) and loaded_card.model.image_size == (32, 32)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    # a depth + segmentation card is written as before: no task key, so older versions read it;
    # the shipped weights' card comes back byte for byte
    assert "task" not in json.loads(make_card().to_json()) and json.loads(card.to_json())["task"] == FACE_ATTRIBUTES
    for shipped in sorted((Path(__file__).resolve().parent.parent / "weights").glob("*.safetensors")):
        with safe_open(str(shipped), framework="pt") as handle:
            assert read_card(shipped).to_json() == handle.metadata()[CARD_KEY], shipped


def test_depth_tools_refuse_a_face_file_and_say_what_it_is(tmp_path: Path, weights_file: Path) -> None:
    card = face_card()
    path = tmp_path / "face.safetensors"
    save_weights(path, FaceHydraNet(card.model), card)
    message = r"face.safetensors: holds a face-attribute \(age, gender, race\) model .* use it with hydranet_faces"
    with pytest.raises(WeightsError, match=message):
        load_predictor(path, device="cpu")
    with pytest.raises(WeightsError, match="random_kitti6.safetensors: holds a depth \\+ segmentation HydraNet"):
        load_face_predictor(weights_file, device="cpu")


def test_a_card_for_an_unknown_task_is_refused(tmp_path: Path) -> None:
    data = json.loads(face_card().to_json())
    data["task"] = "pose"
    path = tmp_path / "pose.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={CARD_KEY: json.dumps(data)})
    with pytest.raises(WeightsError, match="pose.safetensors: model card task 'pose' is not known"):
        read_card(path)


# -- hydranet_faces ----------------------------------------------------------------------
def test_prediction_command_prints_a_table_writes_json_and_skips_bad_images(
        trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    faces = sorted(trained["data"].glob("*.jpg"))[:6]
    folder = tmp_path / "in"
    folder.mkdir()
    for face in faces[1:]:
        (folder / face.name).write_bytes(face.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = tmp_path / "faces.json"
    code = faces_cli.main(["--weights", str(trained["weights"]), "--device", "cpu", "--json", str(out),
                           str(faces[0]), str(folder), str(tmp_path / "missing.jpg")])
    captured = capsys.readouterr()
    assert code == 0
    rows = captured.out.strip().splitlines()
    assert rows[0].split() == ["image", "age", "gender", "p", "race", "p"] and len(rows) == 1 + 6
    assert "broken.jpg" in captured.err and "missing.jpg" in captured.err
    assert "6 image(s) predicted, 2 skipped" in captured.err

    report = json.loads(out.read_text())
    assert [Path(p["image"]).name for p in report["predictions"]] == [f.name for f in faces]
    assert {Path(s["image"]).name for s in report["skipped"]} == {"broken.jpg", "missing.jpg"}
    right = 0
    for prediction, row in zip(report["predictions"], rows[1:]):
        assert sum(prediction["race_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert 0.5 <= prediction["gender_probability"] <= 1.0
        assert prediction["race_probability"] == max(prediction["race_probabilities"].values())
        assert row.split()[1:] == [f"{prediction['age']:.1f}", prediction["gender"],
                                   f"{prediction['gender_probability']:.2f}", prediction["race"],
                                   f"{prediction['race_probability']:.2f}"]
        truth = parse_name(Path(prediction["image"]).name)
        right += (prediction["gender"] == ("male", "female")[truth.gender]) + \
            (prediction["race"] == read_card(trained["weights"]).class_names[truth.race])
    assert right >= 9  # of 12 answers; measured 12 (the training set's faces)


def test_prediction_command_fails_clearly_without_usable_input(
        trained: dict[str, Any], tmp_path: Path, weights_file: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    assert faces_cli.main(["--weights", str(trained["weights"]), "--device", "cpu", str(tmp_path / "bad.jpg")]) == 1
    assert "bad.jpg" in capsys.readouterr().err
    assert faces_cli.main(["--weights", str(weights_file), str(tmp_path / "bad.jpg")]) == 1
    assert "use it with hydranet_node" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_bad_batch_size_is_an_argument_error(tmp_path: Path, capsys: pytest.CaptureFixture, value: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        faces_cli.main(["--weights", str(tmp_path / "w.safetensors"), "--batch-size", value, str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "argument --batch-size" in err and "Traceback" not in err
