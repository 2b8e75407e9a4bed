"""The node's parameters on an rclpy node: declared from ``parameters.PARAMS`` with their
ranges (``ros2 param describe`` shows them), the start-up-only ones read-only; a value
given at start-up that breaks its rule is kept out and reported by ``configure``; an
override that names no parameter is reported at once."""
from __future__ import annotations

import json
import math
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.logging import LoggingSeverity

from .parameters import CONFIGURE, LIVE, PARAMS, START, ParamSpec, unknown_overrides

INT64_MAX = 2**63 - 1
WHEN = {LIVE: "changes at run time",
        CONFIGURE: "read at configure: set it while the node is unconfigured",
        START: "read once at start-up (read-only)"}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    constraints = [f"one of: {', '.join(spec.choices)}"] if spec.choices else []
    constraints.append(WHEN[spec.applies])
    # dynamic typing: the node's own rules convert and check types, so `overlay_alpha: 1` is
    # accepted as 1.0 and a wrong type is refused with the parameter's name, not an rclpy exception
    result = ParameterDescriptor(description=spec.description, additional_constraints="; ".join(constraints),
                                 read_only=spec.applies == START, dynamic_typing=True)
    if spec.bounds is not None:
        lo, hi = spec.bounds
        if isinstance(spec.default, int):
            result.integer_range = [IntegerRange(from_value=int(lo), to_value=INT64_MAX if hi is None else int(hi),
                                                 step=0)]
        else:
            result.floating_point_range = [FloatingPointRange(from_value=float(lo),
                                                              to_value=math.inf if hi is None else float(hi),
                                                              step=0.0)]
    return result


def declare_parameters(node: Any) -> dict[str, str]:
    """Declare every parameter; returns {name: problem} for start-up values that break
    their rule, which are not taken (the default stands until the parameter is set
    again) so that the node stays up and ``configure`` can say what is wrong."""
    # rclpy offers no public view of the overrides (-p, --params-file, parameter_overrides);
    # Node._parameter_overrides holds them in Humble and Jazzy alike
    overrides = getattr(node, "_parameter_overrides", {})
    rejected: dict[str, str] = {}
    for spec in PARAMS:
        take_override = spec.name in overrides
        if take_override:
            try:
                spec.check(overrides[spec.name].value)
            except ValueError as error:
                rejected[spec.name] = (f"{error} (given at start-up; the default {json.dumps(spec.default)} "
                                       "stands until the parameter is set)")
                take_override = False
        node.declare_parameter(spec.name, spec.default, descriptor(spec), ignore_override=not take_override)
    return rejected


def warn_unknown_overrides(node: Any) -> list[str]:
    """Log (and return) a warning for each override that is not a parameter of the node."""
    overrides = getattr(node, "_parameter_overrides", {})
    known = node.list_parameters([], 0).names   # depth 0: every parameter, rclpy's own included
    notes = unknown_overrides(overrides, known)
    for note in notes:
        node.get_logger().log(note, LoggingSeverity.WARN)
    return notes
