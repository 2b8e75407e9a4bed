"""Class ids, names and colours as the node announces them on segmentation/label_info."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

UNLABELED_ID = 255


@dataclass(frozen=True)
class LabelEntry:
    class_id: int
    name: str
    colour: tuple[int, int, int]


def label_entries(class_names: Sequence[str], palette: Sequence[Sequence[int]]) -> list[LabelEntry]:
    """One entry per class plus 255 = unlabeled, as vision_msgs/LabelInfo reserves the
    maximum id of the label image's type for the unlabeled class."""
    entries = [LabelEntry(i, name, tuple(int(c) for c in colour))
               for i, (name, colour) in enumerate(zip(class_names, palette))]
    entries.append(LabelEntry(UNLABELED_ID, "unlabeled", (0, 0, 0)))
    return entries


def label_info_json(entries: Sequence[LabelEntry]) -> str:
    """The std_msgs/String fallback when vision_msgs is not installed."""
    return json.dumps({"unlabeled_id": UNLABELED_ID,
                       "classes": [{"id": e.class_id, "name": e.name, "colour": list(e.colour)}
                                   for e in entries]})
