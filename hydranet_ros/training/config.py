"""Training recipes: YAML files merged over defaults, single-value overrides, checks.

A recipe is a nested mapping. ``DEFAULTS`` below is both the default recipe and
its schema: a key that is not in it is a typo and is refused with the list of
known keys, and a value must have the type of its default (ints pass for
floats; a ``None`` default accepts anything). Mappings listed in ``FREE_FORM``
take any keys (dataset options, per-task weights). ``task`` picks what is
trained (``hydranet_ros.training.tasks``); sections another task does not read (``face``
for depth + segmentation, ``losses`` for faces) keep their defaults.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

Config = dict[str, Any]


class ConfigError(ValueError):
    """A recipe that cannot be used; the message names the key or file."""


DEFAULTS: Config = {
    "name": "hydranet",          # names the run dir and the weights file
    "task": "depth_segmentation",  # depth_segmentation | face_attributes (age, gender, race)
    "seed": 0,
    "device": "auto",            # auto | cpu | cuda[:N]
    "threads": 0,                # CPU threads for torch; 0 = torch's default (one per core)
    "run_dir": None,             # checkpoints and TensorBoard logs; default runs/<name>
    "output": None,              # final weights; default weights/hydranet_<name>.safetensors
    "data": {
        "kind": "synthetic",     # folder | cityscapes | kitti | nyud | synthetic; utkface (faces)
        "root": None,            # dataset directory (not needed for synthetic)
        "train_split": "train",
        # more training sets concatenated to the first: [{kind, root, split, options}, ...]
        "extra_train_sets": [],
        "val_split": "val",
        "options": {},           # extra keyword arguments for build_dataset (train and val)
        "train_options": {},     # ... for the training set only
        "val_options": {},       # ... for the validation set only
        "transform": {},         # keyword arguments for train_transforms
        "val_transform": {},     # keyword arguments for eval_transforms
        "batch_size": 8,
        "val_batch_size": 4,
        "num_workers": 0,
        "on_bad_sample": "skip",  # skip (warn and count) | stop
        "verify": False,         # decode every sample before training, for a complete skipped count
        "depth_range": [0.0, 80.0],  # metres: depth metrics range and the card's display range
    },
    "model": {
        "backbone": "mobilenet_v2",  # mobilenet_v2 | tv_mobilenet_v2 | resnet18 | resnet34 | resnet50 (faces: resnet*)
        "decoder_width": 256,
    },
    "face": {                        # task face_attributes only
        "head_width": 256,           # hidden units of the age, gender and race heads
        "age_mean": 33.0,            # the age head predicts (age - age_mean) / age_std (UTKFace: 33, 20)
        "age_std": 20.0,
    },
    "init": {
        "imagenet": False,           # ImageNet encoder weights (torchvision backbones)
        "on_missing_weights": "scratch",  # scratch | stop, when ImageNet weights cannot be had
        "reference_checkpoint": None,     # a reference .ckpt (DrSleep/multi-task-refinenet)
        "weights": None,                  # a hydranet .safetensors file
    },
    "losses": {
        "ignore_index": 255,
        "depth": "berhu",            # l1 | berhu | silog
        "berhu_threshold": 0.2,      # c = threshold * max |error| over the batch
        "silog_lambda": 0.5,
    },
    "balancing": {
        "kind": "fixed",             # fixed | uncertainty | dwa
        "weights": {"segm": 1.0, "depth": 1.0},  # for fixed
        "dwa_temperature": 2.0,
        "initial_log_variance": 0.0,  # for uncertainty
    },
    "optim": {
        "kind": "sgd",               # sgd | adamw
        "lr_encoder": 1.0e-3,
        "lr_decoder": 1.0e-2,        # decoder, heads and learned task weights
        "momentum": 0.9,
        "betas": [0.9, 0.999],
        "weight_decay": 1.0e-5,
        "grad_clip": 10.0,           # max gradient norm; 0 = off
        "amp": True,                 # mixed precision, used on CUDA only
    },
    "schedule": {
        "epochs": 10,
        "kind": "cosine",            # cosine | step | constant, after the warm-up
        "warmup_steps": 0,
        "warmup_start_factor": 0.1,
        "min_lr_factor": 0.01,       # cosine ends at lr * min_lr_factor
        "step_epochs": [],           # step: multiply by gamma at these epochs
        "gamma": 0.1,
    },
    "checkpoint": {
        "every_steps": 0,            # also write last.pt every N steps; 0 = per epoch only
        "best_metric": "miou",       # a validation metric name, e.g. miou, rmse, delta1
        "best_mode": "max",          # max | min
    },
    "logging": {
        "tensorboard": True,
        "sample_images": 4,          # validation frames shown in TensorBoard
        "progress": True,            # tqdm bar
    },
    "provenance": {},                # extra model-card provenance entries (notes, licence ...)
}

FREE_FORM = {
    ("data", "options"), ("data", "train_options"), ("data", "val_options"),
    ("data", "transform"), ("data", "val_transform"), ("balancing", "weights"), ("provenance",),
}

# keys with a default that may still be set to null: no validation split trains without validation
NULLABLE = {("data", "val_split")}

TASK_DATA_KINDS = {"face_attributes": ("utkface",)}  # every other kind is depth_segmentation's

CHOICES = {
    ("task",): ("depth_segmentation", "face_attributes"),  # the keys of weights.TASKS
    ("data", "kind"): ("folder", "cityscapes", "kitti", "nyud", "synthetic", "utkface"),
    ("data", "on_bad_sample"): ("skip", "stop"),
    ("model", "backbone"): ("mobilenet_v2", "tv_mobilenet_v2", "resnet18", "resnet34", "resnet50"),
    ("init", "on_missing_weights"): ("scratch", "stop"),
    ("losses", "depth"): ("l1", "berhu", "silog"),
    ("balancing", "kind"): ("fixed", "uncertainty", "dwa"),
    ("optim", "kind"): ("sgd", "adamw"),
    ("schedule", "kind"): ("cosine", "step", "constant"),
    ("checkpoint", "best_mode"): ("max", "min"),
}

POSITIVE = {("data", "batch_size"), ("data", "val_batch_size"), ("schedule", "epochs"),
            ("optim", "lr_encoder"), ("optim", "lr_decoder"), ("face", "head_width"), ("face", "age_std")}
NON_NEGATIVE = {("threads",), ("data", "num_workers"), ("schedule", "warmup_steps"), ("optim", "weight_decay"),
                ("optim", "grad_clip"), ("checkpoint", "every_steps"), ("logging", "sample_images")}


def _dotted(path: Iterable[str]) -> str:
    return ".".join(path)


def merge(base: Mapping[str, Any], update: Mapping[str, Any], schema: Mapping[str, Any] | None,
          path: tuple[str, ...] = (), free_form: set[tuple[str, ...]] = FREE_FORM) -> Config:
    """``base`` updated recursively by ``update``; keys absent from ``schema`` are refused."""
    result = copy.deepcopy(dict(base))
    for key, value in update.items():
        where = path + (str(key),)
        if schema is not None and key not in schema:
            known = ", ".join(sorted(schema))
            raise ConfigError(f"unknown key {_dotted(where)!r}; known keys here: {known}")
        sub_schema = schema.get(key) if schema is not None else None
        if isinstance(sub_schema, dict) and where not in free_form:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{_dotted(where)} must be a mapping, got {value!r}")
            result[key] = merge(result.get(key, {}), value, sub_schema, where, free_form)
        else:
            result[key] = copy.deepcopy(value)
    return result


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr_decoder=0.01"`` -> (["optim", "lr_decoder"], 0.01); values are YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return key.strip().split("."), value


def apply_overrides(config: Config, overrides: Iterable[str], defaults: Config = DEFAULTS) -> Config:
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        config = merge(config, nested, defaults)
    return config


def read_yaml(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"recipe {str(path)!r} is not readable YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {str(path)!r} must be a mapping at the top level")
    return data


def load_config(path: str | Path | None, overrides: Iterable[str] = (), defaults: Config = DEFAULTS,
                base: Config | None = None) -> Config:
    """Defaults <- ``base`` (e.g. a checkpoint's saved recipe) <- the YAML at ``path`` <- overrides, validated."""
    config = merge(defaults, base or {}, defaults)
    if path is not None:
        data = read_yaml(path)
        try:
            config = merge(config, data, defaults)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    config = apply_overrides(config, overrides, defaults)
    _coerce_floats(config, defaults)
    validate(config, defaults)
    return finalise(config)


def validate(config: Config, defaults: Config = DEFAULTS) -> None:
    """Types against the defaults, choices, ranges; raises ConfigError naming the key."""
    problems: list[str] = []
    _check_types(config, defaults, (), problems)
    for where, options in CHOICES.items():
        value = _get(config, where)
        if value is not None and value not in options:
            problems.append(f"{_dotted(where)} is {value!r}; choose one of {', '.join(options)}")
    for where in POSITIVE | NON_NEGATIVE:
        value = _get(config, where)
        if isinstance(value, (int, float)) and (value < 0 or (where in POSITIVE and value == 0)):
            problems.append(f"{_dotted(where)} must be {'> 0' if where in POSITIVE else '>= 0'}, got {value}")
    lo_hi = _get(config, ("data", "depth_range"))
    if isinstance(lo_hi, list) and (len(lo_hi) != 2 or not 0 <= lo_hi[0] < lo_hi[1]):
        problems.append(f"data.depth_range must be [min, max] with 0 <= min < max, got {lo_hi}")
    task, kind = config.get("task"), _get(config, ("data", "kind"))
    face_kinds = TASK_DATA_KINDS["face_attributes"]
    if task in CHOICES[("task",)] and (kind in face_kinds) != (task == "face_attributes"):
        problems.append(f"data.kind {kind!r} does not go with task {task!r} (task face_attributes reads "
                        f"{', '.join(face_kinds)}; depth_segmentation reads the others)")
    init = config.get("init", {})
    if init.get("reference_checkpoint") and init.get("weights"):
        problems.append("init.reference_checkpoint and init.weights are exclusive; pick one")
    if problems:
        raise ConfigError("invalid recipe: " + "; ".join(problems))


def _check_types(config: Mapping[str, Any], defaults: Mapping[str, Any], path: tuple[str, ...],
                 problems: list[str]) -> None:
    for key, default in defaults.items():
        where = path + (key,)
        value = config.get(key)
        if default is None:  # optional paths: any value
            continue
        if value is None:
            if where not in NULLABLE:
                problems.append(f"{_dotted(where)} must be set (it is empty)")
            continue
        if isinstance(default, dict):
            if not isinstance(value, dict):
                problems.append(f"{_dotted(where)} must be a mapping")
            elif where not in FREE_FORM:
                _check_types(value, default, where, problems)
            continue
        expected: tuple[type, ...] = (int, float) if isinstance(default, float) else (type(default),)
        # bool is an int in Python, but "epochs: true" is a mistake
        if not isinstance(value, expected) or (isinstance(value, bool) and not isinstance(default, bool)):
            problems.append(f"{_dotted(where)} must be {type(default).__name__}, got {value!r}")


def _coerce_floats(config: dict[str, Any], defaults: Mapping[str, Any]) -> None:
    """PyYAML follows YAML 1.1, where ``1e-3`` (no dot) is a string; read it as the float it means."""
    for key, default in defaults.items():
        value = config.get(key)
        if isinstance(default, dict) and isinstance(value, dict):
            _coerce_floats(value, default)
        elif isinstance(default, float) and isinstance(value, str):
            try:
                config[key] = float(value)
            except ValueError:
                pass  # left for validate() to report


def _get(config: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = config
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def finalise(config: Config) -> Config:
    """Fill the defaults that depend on other values (paths named after the recipe)."""
    config = copy.deepcopy(config)
    if not config["run_dir"]:
        config["run_dir"] = f"runs/{config['name']}"
    if not config["output"]:
        config["output"] = f"weights/hydranet_{config['name']}.safetensors"
    return config


def dump(config: Config) -> str:
    return yaml.safe_dump(config, sort_keys=False)
