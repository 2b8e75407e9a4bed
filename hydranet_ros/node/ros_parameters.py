"""The node's parameters on an rclpy node: declared from ``parameters.PARAMS`` with their
ranges (``ros2 param describe`` shows them), the start-up-only ones read-only; a value
given at start-up that breaks its rule is kept out and reported by ``configure``; an
override that names no parameter is reported at once."""
from __future__ import annotations

import array
import json
import math
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.logging import LoggingSeverity
from rclpy.parameter import Parameter

from .parameters import CONFIGURE, LIVE, PARAMS, START, ParamSpec, unknown_overrides

INT64_MAX = 2**63 - 1
WHEN = {LIVE: "changes at run time",
        CONFIGURE: "read at configure: set it while the node is unconfigured",
        START: "read once at start-up (read-only)"}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    constraints = [f"one of: {', '.join(spec.choices)}"] if spec.choices else []
    constraints.append(WHEN[spec.applies])
    # dynamic typing: the node's own rules convert and check types, so `overlay_alpha: 1` is
    # accepted as 1.0 and a wrong type is refused with the parameter's name, not an rclpy exception.
    # String arrays are typed: rclpy takes an empty list for a byte array, and YAML's [] for no value
    array = isinstance(spec.default, list)
    kind = ParameterType.PARAMETER_STRING_ARRAY if array else ParameterType.PARAMETER_NOT_SET
    result = ParameterDescriptor(description=spec.description, additional_constraints="; ".join(constraints),
                                 read_only=spec.applies == START, dynamic_typing=not array, type=kind)
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
    if hasattr(node, "add_pre_set_parameters_callback"):   # from Jazzy on
        node.add_pre_set_parameters_callback(empty_arrays_as_string_arrays)
    for spec in PARAMS:
        take_override = spec.name in overrides
        if isinstance(spec.default, list):
            _declare_string_array(node, spec, overrides, rejected)
            continue
        if take_override:
            try:
                spec.check(overrides[spec.name].value)
            except ValueError as error:
                rejected[spec.name] = (f"{error} (given at start-up; the default {json.dumps(spec.default)} "
                                       "stands until the parameter is set)")
                take_override = False
        node.declare_parameter(spec.name, spec.default, descriptor(spec), ignore_override=not take_override)
    return rejected


def _declare_string_array(node: Any, spec: ParamSpec, overrides: dict, rejected: dict[str, str]) -> None:
    """Declared as a STRING_ARRAY, then set to the default unless a usable override came. An
    empty one is the default anyway (YAML's ``[]`` has no type, Python's ``[]`` makes a byte
    array); one of another type or that breaks the rule is kept out, as in ``declare_parameters``."""
    override = overrides.get(spec.name)
    value = None if override is None else override.value
    take = False
    if value is not None and not (isinstance(value, (list, tuple)) and len(value) == 0):
        try:
            if override.type_ != Parameter.Type.STRING_ARRAY:
                raise ValueError(f"expected a list of strings, got {value!r}")
            spec.check(value)
            take = True
        except ValueError as error:
            rejected[spec.name] = f"{error} (given at start-up; the default [] stands until the parameter is set)"
    node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, descriptor(spec), ignore_override=not take)
    if not take:
        node.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY, list(spec.default))])


def empty_arrays_as_string_arrays(parameters: list) -> list:
    """An rclpy pre-set callback: ``ros2 param set <node> points_exclude_classes "[]"`` sends an
    empty *bool* array (YAML's ``[]`` has no element type), which a STRING_ARRAY parameter
    would refuse; it means the empty list."""
    arrays = {spec.name for spec in PARAMS if isinstance(spec.default, list)}
    return [Parameter(p.name, Parameter.Type.STRING_ARRAY, [])
            if p.name in arrays and p.type_ != Parameter.Type.STRING_ARRAY
            and isinstance(p.value, (list, tuple, array.array))
            and len(p.value) == 0 else p for p in parameters]


def warn_unknown_overrides(node: Any) -> list[str]:
    """Log (and return) a warning for each override that is not a parameter of the node."""
    overrides = getattr(node, "_parameter_overrides", {})
    known = node.list_parameters([], 0).names   # depth 0: every parameter, rclpy's own included
    notes = unknown_overrides(overrides, known)
    for note in notes:
        node.get_logger().log(note, LoggingSeverity.WARN)
    return notes
