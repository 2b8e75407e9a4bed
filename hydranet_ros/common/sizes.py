"""Image sizes written as WIDTHxHEIGHT on command lines and in parameters."""
from __future__ import annotations


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (width, height), both positive."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected a size as WIDTHxHEIGHT (e.g. 640x480), got {text!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return width, height
