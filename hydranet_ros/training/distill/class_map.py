"""Which of our classes each class of another label set becomes (a teacher's output ids,
or a dataset's ground truth), as a lookup table; everything unmapped is ignored (255).

A label set is named (``cityscapes``: the 19 train ids, ``camvid``: SegNet's 11-class
CamVid) or given as a list of names. A class map is ``{their class: our class}`` with
names (or their integer ids); without one, classes of the same name (after the set's
aliases, e.g. CamVid's "pavement" is our "sidewalk") map onto each other.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..data.cityscapes_labels import CITYSCAPES19_NAMES
from ..data.sample import IGNORE_INDEX

CAMVID11_NAMES: tuple[str, ...] = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
                                   "pedestrian", "bicyclist")  # id 11 is void
LABEL_SETS: dict[str, tuple[str, ...]] = {"cityscapes": CITYSCAPES19_NAMES, "camvid": CAMVID11_NAMES}
# a set's own name for one of our classes (ours: synthetic/KITTI6 names)
ALIASES: dict[str, dict[str, str]] = {"camvid": {"pavement": "sidewalk", "tree": "vegetation"}}


class ClassMapError(ValueError):
    """A class map naming a class that one side does not have; the message says which."""


def label_set(classes: str | Sequence[str] | None, what: str = "class map") -> tuple[str, ...] | None:
    """The class names of a named set or a given list; None stays None (ids only).
    ClassMapError starting with ``what`` (e.g. the teacher file) for an unknown set name."""
    if classes is None or (not isinstance(classes, str) and not classes):
        return None
    if isinstance(classes, str):
        if classes not in LABEL_SETS:
            raise ClassMapError(f"{what}: unknown label set {classes!r}; name one of {', '.join(LABEL_SETS)} "
                                "or give the class names as a list")
        return LABEL_SETS[classes]
    return tuple(str(c) for c in classes)


def default_class_map(their: Sequence[str], ours: Sequence[str], aliases: Mapping[str, str] = {}) -> dict[str, str]:
    return {name: aliases.get(name, name) for name in their if aliases.get(name, name) in ours}


def class_lut(class_map: Mapping[Any, str] | None, their_classes: str | Sequence[str] | None,
              our_classes: Sequence[str], their_count: int | None = None, what: str = "class map") -> np.ndarray:
    """uint8 table of 256 entries: their id -> our id (IGNORE_INDEX where unmapped).

    ``their_count`` (e.g. a teacher's score channels) is checked against the set's size.
    Raises ClassMapError naming any class that does not exist on its side."""
    names = label_set(their_classes, what)
    if names is not None and their_count is not None and len(names) != their_count:
        raise ClassMapError(f"{what}: the label set has {len(names)} classes but the network outputs {their_count}")
    if class_map is None:
        if names is None:
            raise ClassMapError(f"{what}: give a class map (their id -> our class) or their class names")
        aliases = ALIASES.get(their_classes, {}) if isinstance(their_classes, str) else {}
        class_map = default_class_map(names, our_classes, aliases)
        if not class_map:
            raise ClassMapError(f"{what}: no class of {list(names)} is one of ours ({', '.join(our_classes)})")
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    count = len(names) if names is not None else their_count
    for key, target in class_map.items():
        if target not in our_classes:
            raise ClassMapError(f"{what}: {target!r} (for {key!r}) is not one of our classes: {', '.join(our_classes)}")
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            their_id = int(key)
            if not 0 <= their_id < (count if count is not None else IGNORE_INDEX):
                raise ClassMapError(f"{what}: id {their_id} is not a class of theirs (0..{(count or 255) - 1})")
        else:
            if names is None or str(key) not in names:
                known = ", ".join(names) if names is not None else "none given: use integer ids"
                raise ClassMapError(f"{what}: {key!r} is not one of their classes ({known})")
            their_id = names.index(str(key))
        lut[their_id] = our_classes.index(target)
    return lut
