"""Class ids, names and colours as the node announces them on segmentation/label_info."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

UNLABELED_ID = 255
LABEL_INFO_TYPE = "vision_msgs/msg/LabelInfo"
VISION_CLASS_TYPE = "vision_msgs/msg/VisionClass"
# vision_msgs' definitions (Humble on), for a bag writer whose type store lacks them;
# the field list is what the type hash covers, so it must match vision_msgs exactly
LABEL_INFO_DEFINITIONS = {
    VISION_CLASS_TYPE: "uint16 class_id\nstring class_name\n",
    LABEL_INFO_TYPE: "std_msgs/Header header\nvision_msgs/VisionClass[] class_map\nfloat32 threshold\n",
}


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


def label_info_message(label_info: type, vision_class: type, header: Any, entries: Sequence[LabelEntry]) -> Any:
    """vision_msgs/LabelInfo from either message family (rclpy classes, or a rosbags type
    store's), so that the node and the replay tool announce the classes alike."""
    return label_info(header=header, class_map=[vision_class(class_id=e.class_id, class_name=e.name) for e in entries],
                      threshold=0.0)   # labels are an argmax; no confidence threshold is applied


def label_info_json(entries: Sequence[LabelEntry]) -> str:
    """The std_msgs/String fallback when vision_msgs is not installed."""
    return json.dumps({"unlabeled_id": UNLABELED_ID,
                       "classes": [{"id": e.class_id, "name": e.name, "colour": list(e.colour)}
                                   for e in entries]})
