"""Training recipes: YAML files merged over defaults, single-value overrides, checks.

A recipe is a nested mapping. ``DEFAULTS`` (``recipe_defaults``) is both the default recipe and
its schema: a key that is not in it is a typo and is refused with the list of
known keys, and a value must have the type of its default (ints pass for
floats; a ``None`` default accepts anything). Mappings listed in ``FREE_FORM``
take any keys (dataset options, per-task weights). ``task`` picks what is
trained (``hydranet_ros.training.tasks``); sections another task does not read (``face``
for depth + segmentation, ``losses`` for faces) keep their defaults.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .recipe_defaults import (
    CHOICES,
    DEFAULTS,
    EXTRA_SET_KEYS,
    EXTRA_SET_KINDS,
    FREE_FORM,
    NON_NEGATIVE,
    NULLABLE,
    OPTIONAL_BOOL,
    OPTIONAL_POSITIVE_INT,
    POSITIVE,
    TASK_DATA_KINDS,
    Config,
)

__all__ = ["DEFAULTS", "Config", "ConfigError", "apply_overrides", "dump", "load_config", "merge", "validate"]


class ConfigError(ValueError):
    """A recipe that cannot be used; the message names the key or file."""


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
        config = set_dotted(config, keys, value, defaults)
    return config


def set_dotted(config: Config, keys: list[str], value: Any, schema: Mapping[str, Any],
               free_form: set[tuple[str, ...]] = FREE_FORM) -> Config:
    """``config`` with the one value at ``keys`` changed; its siblings stay, also inside
    free-form mappings (``data.transform.hflip=false`` keeps ``size``). A mapping given for
    a whole recipe section is merged into it; one given for a free-form key replaces it."""
    result = copy.deepcopy(config)
    node: dict[str, Any] = result
    node_schema: Mapping[str, Any] | None = schema
    for depth, key in enumerate(keys):
        where = tuple(keys[: depth + 1])
        if node_schema is not None and key not in node_schema:
            raise ConfigError(f"unknown key {_dotted(where)!r}; known keys here: {', '.join(sorted(node_schema))}")
        sub_schema = node_schema.get(key) if node_schema is not None else None
        section = isinstance(sub_schema, dict) and where not in free_form
        if depth == len(keys) - 1:
            if section:
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{_dotted(where)} must be a mapping, got {value!r}")
                node[key] = merge(node.get(key) or {}, value, sub_schema, where, free_form)
            else:
                node[key] = copy.deepcopy(value)
            break
        child = node.get(key)
        if child is None and (section or node_schema is None or where in free_form):
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {_dotted(keys)}: {_dotted(where)} is {child!r}, not a mapping")
        node, node_schema = child, (sub_schema if section else None)
    return result


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
    if _get(config, ("model", "encoder_weights")) and (init.get("reference_checkpoint") or init.get("weights")):
        problems.append("model.encoder_weights starts the encoder only; init.reference_checkpoint and init.weights "
                        "start the whole model: set one of them")
    for where in OPTIONAL_BOOL:
        if _get(config, where) not in (None, True, False):
            problems.append(f"{_dotted(where)} must be true, false or null (automatic), got {_get(config, where)!r}")
    for where in OPTIONAL_POSITIVE_INT:
        value = _get(config, where)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            problems.append(f"{_dotted(where)} must be a positive integer or null, got {value!r}")
    weights = _get(config, ("balancing", "weights"))
    for task, weight in (weights.items() if isinstance(weights, dict) else ()):
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            problems.append(f"balancing.weights.{task} must be a number >= 0, got {weight!r}")
    problems += _extra_set_problems(_get(config, ("data", "extra_train_sets")))
    problems += [f"{_dotted(where)} must be a finite number, got {value}" for where, value in _non_finite(config)]
    if problems:
        raise ConfigError("invalid recipe: " + "; ".join(problems))


def _extra_set_problems(sets: Any) -> list[str]:
    """Each data.extra_train_sets entry: a mapping of known keys, a known kind, mappings for
    options and transform (a typo here would otherwise surface mid-run, or never)."""
    if not isinstance(sets, list):
        return [] if sets is None else ["data.extra_train_sets must be a list of mappings"]
    problems = []
    for index, extra in enumerate(sets):
        where = f"data.extra_train_sets[{index}]"
        if not isinstance(extra, Mapping):
            problems.append(f"{where} must be a mapping ({', '.join(EXTRA_SET_KEYS)}), got {extra!r}")
            continue
        unknown = sorted(set(map(str, extra)) - set(EXTRA_SET_KEYS))
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(EXTRA_SET_KEYS)}")
        if "kind" in extra and extra["kind"] not in EXTRA_SET_KINDS:
            problems.append(f"{where}.kind is {extra['kind']!r}; choose one of {', '.join(EXTRA_SET_KINDS)}")
        problems += [f"{where}.{key} must be a mapping, got {extra[key]!r}" for key in ("options", "transform")
                     if extra.get(key) is not None and not isinstance(extra[key], Mapping)]
    return problems


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


def _non_finite(node: Any, path: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], float]]:
    """Every NaN or infinity in the recipe, free-form parts and lists included: no recipe
    value means one (a NaN learning rate passes every ``< 0`` check and trains nothing)."""
    if isinstance(node, float) and not math.isfinite(node):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _non_finite(value, path + (str(key),))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _non_finite(value, path + (f"{index}",))


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
