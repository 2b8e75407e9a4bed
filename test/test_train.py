"""hydranet_train end to end on tiny synthetic street scenes (CPU, seconds each).

Datasets are injected by replacing the depth + segmentation task's ``build_datasets`` so that each test
controls size and resolution; the recipe path through ``build_dataset`` is
covered by the CLI tests at the bottom.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import make_card, make_model
from train_helpers import Killed, interrupt_at, kill, sigint

import hydranet_ros.training.tasks.depth_segmentation as DS
import hydranet_ros.training.tasks.model_init as model_init
import hydranet_ros.training.train as T
from hydranet_ros.inference.weights import load_weights, read_card
from hydranet_ros.training.checkpoint import BEST, LAST, load_checkpoint
from hydranet_ros.training.config import ConfigError, load_config
from hydranet_ros.training.data.synthetic import SyntheticStreetDataset

VAL_SEED_OFFSET = 10_000  # held-out frames: seeds the training set never uses


class Cached(torch.utils.data.Dataset):
    """A rendered-once copy of a synthetic dataset (rendering dominates tiny runs),
    with an optional random horizontal flip drawn from the global RNG, as real
    augmentation does: resumed runs must reproduce those draws."""

    def __init__(self, dataset: SyntheticStreetDataset, flip: bool = False) -> None:
        self.items = [dataset[i] for i in range(len(dataset))]
        self.class_names, self.palette, self.skipped = dataset.class_names, dataset.palette, []
        self.flip = flip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.items[index])
        if self.flip and torch.rand(()) < 0.5:
            for key in ("image", "depth", "labels"):
                sample[key] = sample[key].flip(-1)
        return sample


def synthetic(num: int, width: int, height: int, seed_offset: int = 0, flip: bool = False, **options: Any) -> Cached:
    return Cached(SyntheticStreetDataset(num, width, height, seed_offset=seed_offset, **options), flip=flip)


TINY_RECIPE = {
    "name": "tiny",
    "device": "cpu",
    "model": {"decoder_width": 16},
    "data": {"batch_size": 4, "val_batch_size": 8},
    "optim": {"kind": "adamw", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
    "schedule": {"epochs": 2, "warmup_steps": 1},
    "logging": {"tensorboard": False, "progress": False, "sample_images": 0},
}


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, datasets: tuple[Any, Any], *args: str,
        name: str = "tiny", recipe: dict[str, Any] | None = None) -> int:
    monkeypatch.setattr(DS, "build_datasets", lambda config: datasets)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**(recipe or TINY_RECIPE), "name": name}))
    return T.main(["--config", str(path), "--run-dir", str(tmp_path / name),
                   "--output", str(tmp_path / f"{name}.safetensors"), *args])


# -- learning ----------------------------------------------------------------------------
def test_training_learns_on_synthetic_scenes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train_set, val_set = synthetic(64, 96, 32), synthetic(16, 96, 32, seed_offset=VAL_SEED_OFFSET)
    recipe = {**TINY_RECIPE, "model": {"decoder_width": 64},
              "optim": {"kind": "adamw", "lr_encoder": 2e-3, "lr_decoder": 2e-3, "weight_decay": 1e-4},
              "data": {"batch_size": 8, "val_batch_size": 16}, "schedule": {"epochs": 8, "warmup_steps": 5},
              "logging": {"tensorboard": True, "progress": False, "sample_images": 2}}
    assert run(tmp_path, monkeypatch, (train_set, val_set), name="learn", recipe=recipe) == 0

    # the untrained model (same seed, same init) on the same held-out frames
    config = load_config(tmp_path / "learn.yaml")
    torch.manual_seed(config["seed"])
    untrained, _ = DS.build_model(config, train_set)
    card = read_card(tmp_path / "learn.safetensors")
    before, _ = DS.evaluate(untrained, card, val_set, config, torch.device("cpu"))
    model, card = load_weights(tmp_path / "learn.safetensors")
    after, panels = DS.evaluate(model, card, val_set, config, torch.device("cpu"), sample_images=2)
    # measured (torch 2.14 CPU, one thread, 64 steps, ~12 s): mIoU 0.063 -> 0.302, pixel accuracy
    # 0.376 -> 0.565, RMSE 22.3 m -> 12.3 m (the untrained depth head outputs ~0 m)
    assert after["miou"] > before["miou"] + 0.12 and after["miou"] > 0.2
    assert after["rmse"] < 0.75 * before["rmse"]
    assert panels[0].shape == (5 * 32, 96, 3) and panels[0].dtype == torch.uint8

    assert card.class_names == list(SyntheticStreetDataset.class_names)
    assert card.palette == [tuple(c) for c in SyntheticStreetDataset.palette]
    assert card.depth_activation == "abs" and card.model.decoder_width == 64
    provenance = card.provenance
    assert provenance["recipe"] == "learn" and provenance["epochs"] == 8 and provenance["steps"] == 64
    assert provenance["final_metrics"]["miou"] == pytest.approx(after["miou"], abs=1e-6)
    assert provenance["dataset"]["train_samples"] == 64 and "date" in provenance
    assert (tmp_path / "learn" / BEST).is_file() and (tmp_path / "learn" / LAST).is_file()
    assert list((tmp_path / "learn" / "tb").glob("events.out.tfevents.*"))


# -- never lose work ---------------------------------------------------------------------
@pytest.mark.parametrize("how, every_steps, at_call, resume_step", [
    ("kill", 0, 4, 2),    # dies in epoch 2 (2 steps an epoch): resumes from the end-of-epoch-1 checkpoint
    ("kill", 1, 4, 3),    # dies mid-epoch 2: resumes from the step checkpoint
    ("sigint", 0, 1, 1),  # ^C mid-epoch 1: checkpoints after the step and exits 130
])
def test_resumed_run_ends_with_identical_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str,
                                                 every_steps: int, at_call: int, resume_step: int) -> None:
    datasets = (synthetic(8, 64, 32, flip=True), synthetic(4, 64, 32, seed_offset=VAL_SEED_OFFSET))
    # uncertainty weighting: the balancer's learned state must survive the resume too
    recipe = {**TINY_RECIPE, "balancing": {"kind": "uncertainty"}, "checkpoint": {"every_steps": every_steps}}
    assert run(tmp_path, monkeypatch, datasets, name="straight", recipe=recipe) == 0
    monkeypatch.undo()

    interrupt_at(monkeypatch, at_call, kill if how == "kill" else sigint)
    if how == "kill":
        with pytest.raises(Killed):
            run(tmp_path, monkeypatch, datasets, name="broken", recipe=recipe)
    else:
        assert run(tmp_path, monkeypatch, datasets, name="broken", recipe=recipe) == T.EXIT_INTERRUPTED
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "broken")["progress"]
    assert saved["global_step"] == resume_step

    monkeypatch.setattr(DS, "build_datasets", lambda config: datasets)
    assert T.main(["--resume", str(tmp_path / "broken")]) == 0

    straight, resumed = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "broken")
    assert resumed["progress"]["global_step"] == straight["progress"]["global_step"] == 4
    for key, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][key]), key
    assert torch.equal(straight["balancer"]["log_vars"], resumed["balancer"]["log_vars"])
    # the history too: a resumed epoch's training loss averages all its steps, not only those after the resume
    assert resumed["progress"]["history"] == straight["progress"]["history"]
    exported = [load_weights(tmp_path / f"{n}.safetensors")[0].state_dict() for n in ("straight", "broken")]
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[0])


def test_fresh_run_refuses_to_overwrite_a_run_dir_with_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    datasets = (synthetic(4, 64, 32), None)
    recipe = {**TINY_RECIPE, "schedule": {"epochs": 1}}
    assert run(tmp_path, monkeypatch, datasets, recipe=recipe) == 0
    assert run(tmp_path, monkeypatch, datasets, recipe=recipe) == T.EXIT_ERROR
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert run(tmp_path, monkeypatch, datasets, "--overwrite", recipe=recipe) == 0


# -- guards ------------------------------------------------------------------------------
def test_nan_guard_stops_with_epoch_and_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    datasets = (synthetic(8, 64, 32), None)
    recipe = {**TINY_RECIPE, "optim": {"kind": "sgd", "lr_encoder": 1e30, "lr_decoder": 1e30, "grad_clip": 0.0},
              "schedule": {"epochs": 1, "kind": "constant"}}
    assert run(tmp_path, monkeypatch, datasets, recipe=recipe) == T.EXIT_ERROR
    err = capsys.readouterr().err
    assert "loss is not finite at epoch 1, step 2" in err and "Traceback" not in err


def test_depth_only_batch_gives_zero_segmentation_loss_and_a_finite_total() -> None:
    config = load_config(None, ["model.decoder_width=16"])
    torch.manual_seed(0)
    depth_only = SyntheticStreetDataset(2, 64, 32, depth_only_fraction=1.0)
    model, _ = DS.build_model(config, depth_only)
    tasks = DS.build_tasks(config)
    balancer = T.build_balancer("fixed", [t.name for t in tasks])
    optimizer = T.build_optimizer(config, model.encoder, [model.decoder, model.heads], balancer)
    batch = torch.utils.data.default_collate([depth_only[i] for i in range(2)])
    assert not batch["has_labels"].any()
    values = T.train_step(model, batch, tasks, balancer, optimizer, torch.amp.GradScaler("cpu", enabled=False),
                          mean=(0.5,) * 3, std=(0.25,) * 3, device=torch.device("cpu"), amp=False, grad_clip=1.0)
    assert values["segm"] == 0.0 and values["depth"] > 0 and values["total"] == pytest.approx(values["depth"])


# -- initialisation ----------------------------------------------------------------------
def test_init_from_a_weights_file_reinitialises_only_a_head_of_another_class_count(tmp_path: Path) -> None:
    from hydranet_ros.inference.weights import save_weights

    card = make_card(num_classes=40)
    source = make_model(card, seed=1)
    save_weights(tmp_path / "nyud.safetensors", source, card)
    config = load_config(None, [f"init.weights={tmp_path / 'nyud.safetensors'}"])
    six_classes = SyntheticStreetDataset(1, 64, 32)
    model, description = DS.build_model(config, six_classes)
    state = model.state_dict()
    assert torch.equal(state["decoder.stages.0.laterals.0.weight"], source.state_dict()["decoder.stages.0.laterals.0.weight"])
    assert state["heads.segm.out.weight"].shape[0] == 6 and "heads.segm.out" in description
    narrow = load_config(None, [f"init.weights={tmp_path / 'nyud.safetensors'}", "model.decoder_width=64"])
    with pytest.raises(T.WeightsError, match="does not fit"):
        DS.build_model(narrow, six_classes)


def test_missing_imagenet_weights_fall_back_to_scratch_or_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(backbone: str) -> None:
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(model_init, "torchvision_imagenet", offline)
    config = load_config(None, ["init.imagenet=true", "model.decoder_width=16"])
    six_classes = SyntheticStreetDataset(1, 64, 32)
    with pytest.warns(RuntimeWarning, match=r"mobilenet_v2 \(mobilenet_v2-.*\.pth\) are not in the torch hub "
                                            r"cache .* set model.encoder_weights to its path"):
        assert DS.build_model(config, six_classes)[1] == "scratch"
    stop = load_config(None, ["init.imagenet=true", "init.on_missing_weights=stop"])
    with pytest.raises(T.TrainingError, match="on_missing_weights: scratch"):
        DS.build_model(stop, six_classes)


# -- recipe and command line -------------------------------------------------------------
def test_cli_flags_and_set_override_recipe_values(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\noptim: {kind: adamw}\n")
    args = T.build_parser().parse_args(["--config", str(recipe), "--epochs", "3", "--data", "/data/kitti",
                                        "--device", "cpu", "--output", "out/", "--set", "optim.lr_decoder=5e-3",
                                        "--set", "balancing.weights={segm: 1, depth: 0.1}"])
    config, resume = T.resolve_config(args)
    assert resume is None
    assert config["schedule"]["epochs"] == 3 and config["data"]["root"] == "/data/kitti"
    assert config["optim"] == {**config["optim"], "kind": "adamw", "lr_decoder": 5e-3, "lr_encoder": 1e-3}
    assert config["balancing"]["weights"] == {"segm": 1, "depth": 0.1}
    assert config["run_dir"] == "runs/r" and T.output_path(config) == Path("out/hydranet_r.safetensors")


@pytest.mark.parametrize("overrides, message", [
    (["optim.lr_decodr=0.1"], "unknown key 'optim.lr_decodr'; known keys here: amp, betas"),
    (["schedule.epochs=ten"], "schedule.epochs must be int, got 'ten'"),
    (["schedule.epochs=0"], "schedule.epochs must be > 0"),
    (["optim.kind=adam"], "optim.kind is 'adam'; choose one of sgd, adamw"),
    (["losses.depth=l2"], "losses.depth is 'l2'; choose one of l1, berhu, silog"),
    (["optim"], "must look like key.sub=value"),
    (["data.depth_range=[10, 1]"], "data.depth_range must be [min, max]"),
])
def test_bad_overrides_are_refused_with_the_key_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert message in str(error.value)


def test_a_dotted_override_changes_one_leaf_and_keeps_its_siblings(capsys: pytest.CaptureFixture) -> None:
    recipe = Path(__file__).resolve().parent.parent / "config" / "train_synthetic.yaml"
    config = load_config(recipe, ["data.transform.hflip=false", "data.options.width=64",
                                  "balancing.weights.depth=0.5", "optim={kind: sgd}"])
    assert config["data"]["transform"] == {"size": [128, 256], "scale_range": [0.8, 1.25], "hflip": False,
                                           "colour_jitter": 0.2}
    assert config["data"]["options"] == {"width": 64, "height": 128, "hfov_deg": 58.43}
    assert config["balancing"]["weights"] == {"segm": 1.0, "depth": 0.5}
    assert config["optim"]["kind"] == "sgd" and config["optim"]["lr_encoder"] == 2e-3  # a section merges
    # a new key inside a free-form mapping is added; a whole mapping given for one replaces it
    assert load_config(recipe, ["data.options.max_depth=60"])["data"]["options"]["width"] == 256
    assert load_config(recipe, ["data.transform={hflip: false}"])["data"]["transform"] == {"hflip": False}
    assert T.main(["--config", str(recipe), "--set", "data.transform.hflip=false", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["transform"]["size"] == [128, 256]


@pytest.mark.parametrize("override, message", [
    ("optim.lr_decoder=nan", "optim.lr_decoder must be a finite number, got nan"),
    ("optim.lr_encoder=.inf", "optim.lr_encoder must be a finite number, got inf"),
    ("optim.grad_clip=.nan", "optim.grad_clip must be a finite number, got nan"),
    ("balancing.weights.depth=nan", "balancing.weights.depth must be a finite number, got nan"),
    ("balancing.weights.depth=lots", "balancing.weights.depth must be a number >= 0, got 'lots'"),
    ("data.options.hfov_deg=.inf", "data.options.hfov_deg must be a finite number, got inf"),
    ("data.depth_range=[0, .inf]", "data.depth_range.1 must be a finite number, got inf"),
    ("optim.lr_decoder.x=1", "cannot set optim.lr_decoder.x: optim.lr_decoder is 0.01, not a mapping"),
    ("distributed.sync_batchnorm=3", "distributed.sync_batchnorm must be true, false or null"),
    ("data.global_batch_size=0", "data.global_batch_size must be a positive integer or null, got 0"),
])
def test_non_finite_and_misplaced_numbers_are_refused_by_name(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_shipped_recipes_load() -> None:
    recipes = sorted(Path(__file__).resolve().parent.parent.glob("config/train_*.yaml"))
    assert {p.stem for p in recipes} >= {"train_synthetic", "train_cityscapes", "train_kitti", "train_nyud"}
    for path in recipes:
        load_config(path)


def test_print_config_and_unknown_recipe_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nschedule: {epochs: 2}\n")
    assert T.main(["--config", str(recipe), "--print-config", "--set", "seed=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 7 and printed["schedule"]["epochs"] == 2
    recipe.write_text("name: r\nschedul: {epochs: 2}\n")
    assert T.main(["--config", str(recipe)]) == T.EXIT_USAGE
    assert f"{recipe}: unknown key 'schedul'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--config", "no/such/recipe.yaml"], "recipe 'no/such/recipe.yaml' not found"),
    (["--resume", "no/such/run"], "checkpoint 'no/such/run' not found"),
    ([], "pass --config"),
])
def test_cli_errors_name_the_problem_without_a_traceback(argv: list[str], message: str,
                                                         capsys: pytest.CaptureFixture) -> None:
    assert T.main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_wrong_or_empty_data_path_stops_with_the_path_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "folder.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, "name": "folder", "data": {"kind": "folder"}}))
    base = ["--config", str(recipe), "--run-dir", str(tmp_path / "run")]
    assert T.main([*base, "--data", str(tmp_path / "no_such_dir")]) == T.EXIT_ERROR
    err = capsys.readouterr().err
    assert "no_such_dir" in err and "Traceback" not in err
    (tmp_path / "empty" / "train" / "images").mkdir(parents=True)
    assert T.main([*base, "--overwrite", "--data", str(tmp_path / "empty")]) == T.EXIT_ERROR
    err = capsys.readouterr().err
    assert str(tmp_path / "empty") in err and "Traceback" not in err


def test_a_dataset_missing_a_required_option_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndevice: cpu\ndata: {kind: synthetic, options: {width: 64}}\n")
    assert T.main(["--config", str(recipe), "--run-dir", str(tmp_path / "run")]) == T.EXIT_ERROR
    err = capsys.readouterr().err
    assert "dataset kind 'synthetic' needs option(s) num_samples, height (data.options" in err
    assert "Traceback" not in err


def test_recipe_path_trains_on_augmented_synthetic_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The real build_datasets: synthetic splits with disjoint seeds, train_transforms."""
    recipe = {**TINY_RECIPE, "name": "synth", "schedule": {"epochs": 1},
              "data": {"kind": "synthetic", "options": {"width": 64, "height": 32},
                       "train_options": {"num_samples": 8}, "val_options": {"num_samples": 4},
                       "transform": {"size": [32, 64]}, "batch_size": 4}}
    path = tmp_path / "synth.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "synth.safetensors"
    assert T.main(["--config", str(path), "--run-dir", str(tmp_path / "run"), "--output", str(out)]) == 0
    card = read_card(out)
    assert card.provenance["dataset"]["kind"] == "synthetic" and card.provenance["dataset"]["val_samples"] == 4
    assert card.provenance["dataset"]["skipped_samples"] == {"train": 0, "val": 0}


def test_training_without_a_validation_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = {**TINY_RECIPE, "data": {**TINY_RECIPE["data"], "val_split": None}, "schedule": {"epochs": 1}}
    assert load_config(None, ["data.val_split=null"])["data"]["val_split"] is None
    assert run(tmp_path, monkeypatch, (synthetic(8, 64, 32), None), name="noval", recipe=recipe) == 0
    load_weights(tmp_path / "noval.safetensors")


@pytest.mark.filterwarnings("ignore:skipping unusable sample")
@pytest.mark.parametrize("workers", [0, 1])
def test_all_samples_unusable_stops_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   workers: int) -> None:
    images = tmp_path / "data" / "train" / "images"
    images.mkdir(parents=True)
    for i in range(3):
        (images / f"f{i}.png").write_bytes(b"not a png")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, "name": "bad", "data": {
        "kind": "folder", "val_split": None, "num_workers": workers, "batch_size": 2,
        "transform": {"size": [32, 64]}}}))
    code = T.main(["--config", str(recipe), "--run-dir", str(tmp_path / "run"), "--data", str(tmp_path / "data")])
    assert code == T.EXIT_ERROR
    err = capsys.readouterr().err
    assert "every sample under" in err and "f2.png" in err and "Traceback" not in err


@pytest.mark.filterwarnings("ignore:skipping unusable sample")
def test_an_empty_image_is_skipped_and_a_resume_passes_it_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    """A 0-byte image (issue 16): skipped like any unreadable file, in the first run and
    again after --resume, which meets it at the same place in the seeded order."""
    import cv2
    import numpy as np

    split = tmp_path / "data" / "train"
    for folder in ("images", "labels"):
        (split / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):  # 4 steps an epoch at batch 2, so epoch 2 meets every file
        cv2.imwrite(str(split / "labels" / f"f{i}.png"), rng.integers(0, 6, (32, 64), dtype=np.uint8))
        cv2.imwrite(str(split / "images" / f"f{i}.png"), rng.integers(0, 255, (32, 64, 3), dtype=np.uint8))
    (split / "images" / "f5.png").write_bytes(b"")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, "name": "r", "checkpoint": {"every_steps": 1}, "data": {
        "kind": "folder", "val_split": None, "batch_size": 2, "transform": {"size": [32, 64]}}}))
    args = ["--config", str(recipe), "--data", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"),
            "--output", str(tmp_path / "r.safetensors")]
    interrupt_at(monkeypatch, 3, kill)  # dies in epoch 1; the checkpoint holds step 2
    with pytest.raises(Killed):
        T.main(args)
    monkeypatch.undo()
    assert T.main(["--resume", str(tmp_path / "run")]) == 0
    card = read_card(tmp_path / "r.safetensors")
    assert card.provenance["dataset"]["skipped_samples"]["train"] == 1
    assert "Traceback" not in capsys.readouterr().err

