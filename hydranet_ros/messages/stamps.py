"""Header stamps and frame ids as plain values, shared by the node and the offline tools."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Header:
    """The two std_msgs/Header values that outputs copy from their input."""

    stamp_ns: int
    frame_id: str


def stamp_to_ns(sec: int, nanosec: int) -> int:
    return int(sec) * 1_000_000_000 + int(nanosec)


def ns_to_stamp(stamp_ns: int) -> tuple[int, int]:
    """(sec, nanosec) of a stamp in nanoseconds, as builtin_interfaces/Time holds it."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return sec, nanosec


def header_of(msg: Any) -> Header:
    stamp = msg.header.stamp
    return Header(stamp_ns=stamp_to_ns(stamp.sec, stamp.nanosec), frame_id=str(msg.header.frame_id))
