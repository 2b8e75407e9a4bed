"""The rules a node parameter's value must pass: each takes what ROS hands over and
returns the checked value or raises ``ValueError`` saying what was expected. Types
are forgiving only where that is unambiguous (``overlay_alpha: 1`` is 1.0, but
``true`` is a typo, not 1.0)."""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

from ..common.sizes import parse_size

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
# a relative ROS name: tokens of letters, digits and underscores, none starting with a digit
CAMERA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"expected true or false, got {value!r}")


def as_float(value: Any) -> float:
    # bool is an int subclass; `overlay_alpha: true` is a typo, not 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value.strip()


def string_list(value: Any) -> tuple[str, ...]:
    """A string array (``[sky, road]``), each entry stripped."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(v.strip() for v in value)


def camera_names(value: Any) -> tuple[str, ...]:
    """Camera names: each a relative ROS name (it prefixes the camera's topics), none twice."""
    names = string_list(value)
    if any(not name for name in names):
        raise ValueError(f"a camera name is empty in {list(names)}")
    bad = [name for name in names if not CAMERA_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))} cannot prefix a topic: use letters, digits, '_' and '/' "
                         "between names, not starting with a digit")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"camera name(s) {', '.join(map(repr, twice))} given more than once")
    return names


def size_or_empty(value: Any) -> tuple[int, int] | None:
    text = as_str(value)
    return parse_size(text) if text else None


def choice(choices: Sequence[str]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = as_str(value).lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text
    return check


def device(value: Any) -> str:
    text = as_str(value).lower()
    if not DEVICE_PATTERN.match(text):
        raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
    return text


def bounded(convert: Callable[[Any], float | int], lo: float, hi: float | None) -> Callable[[Any], Any]:
    """``convert``, then ``lo <= value (<= hi)``; the same bounds go into the ROS descriptor."""
    noun = "an integer" if convert is as_int else "a value"

    def check(value: Any) -> Any:
        number = convert(value)
        if hi is None and number < lo:
            raise ValueError(f"expected {noun} >= {lo:g}, got {number:g}")
        if hi is not None and not lo <= number <= hi:
            raise ValueError(f"expected {noun} in [{lo:g}, {hi:g}], got {number:g}")
        return number
    return check
