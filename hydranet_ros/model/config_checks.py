"""Checks shared by the model configs: every field a weights file's card can set is
refused by name when it cannot build a network (a negative width, a string where a
count belongs, NaN), before torch fails somewhere deep inside a layer."""
from __future__ import annotations

import math
from typing import Any


class ConfigError(ValueError):
    """A model config field that cannot describe a network; the message names the field."""


def check_fields(cls: type, data: Any) -> None:
    """Refuse what is not a mapping, and keys a config dataclass does not have (a card
    from a newer version, a typo)."""
    if not isinstance(data, dict):
        raise ConfigError(f"model config must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - set(cls.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown model config fields: {sorted(unknown)}")


def check_int(name: str, value: Any, minimum: int) -> None:
    # bool is an int to Python, never to a config
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"model config field {name!r} must be an integer >= {minimum}, got {value!r}")


def check_number(name: str, value: Any, positive: bool = False) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or (positive and value <= 0):
        what = "a finite number > 0" if positive else "a finite number"
        raise ConfigError(f"model config field {name!r} must be {what}, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"model config field {name!r} must be one of {', '.join(choices)}, got {value!r}")
