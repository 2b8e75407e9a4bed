"""The FPS comparison as a PNG, drawn with OpenCV (already a dependency) rather than adding matplotlib."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ...common.image_files import write_image
from .run import Result

COLOURS_BGR = {"segm": (180, 119, 31), "depth": (14, 127, 255), "stacked": (40, 39, 214),
               "hydranet": (44, 160, 44), "naive": (127, 127, 127)}


def draw_chart(results: Sequence[Result], title: str, path: Path) -> None:
    """Horizontal FPS bars, one block per resolution and batch."""
    import cv2

    groups: dict[tuple, list[Result]] = {}
    for r in results:
        groups.setdefault((r.resolution, r.batch), []).append(r)
    row_h, label_w, bar_w, margin = 24, 300, 520, 12
    height = 50 + sum(30 + row_h * len(rows) for rows in groups.values())
    image = np.full((height, label_w + bar_w + 200, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, title, (margin, 30), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    y = 50
    for (resolution, batch), rows in groups.items():
        heading = f"{resolution}  batch {batch}"
        cv2.putText(image, heading, (margin, y + 20), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        y += 30
        best = max(r.fps for r in rows) or 1.0
        for r in rows:
            cv2.putText(image, f"{r.variant} {r.mode} {r.precision} ({r.backend})", (margin, y + 17), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            length = max(1, int(bar_w * r.fps / best))
            cv2.rectangle(image, (label_w, y + 4), (label_w + length, y + row_h - 4), COLOURS_BGR[r.variant], -1)
            memory = f", {r.peak_mem_mib:.0f} MiB" if r.peak_mem_mib is not None else ""
            cv2.putText(image, f"{r.fps:.1f} fps{memory}", (label_w + length + 6, y + 17), font, 0.45, (0, 0, 0), 1,
                        cv2.LINE_AA)
            y += row_h
    write_image(path, image)
