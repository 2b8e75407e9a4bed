"""Overlay and coloured depth side by side, as an MP4 video and/or a PNG sequence."""
from __future__ import annotations

from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

DEFAULT_FOURCC = "mp4v"  # the MP4 codec OpenCV's pip wheels can always write; avc1 needs an H.264 encoder


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two RGB images of the same height, left | right."""
    if left.shape[0] != right.shape[0]:
        right = cv2.resize(right, (round(right.shape[1] * left.shape[0] / right.shape[0]), left.shape[0]))
    return np.hstack([left, right])


class SideBySideWriter:
    """Writes ``left | right`` frames; the video keeps the first frame's size (later ones are resized)."""

    def __init__(self, video: Path | None = None, png_dir: Path | None = None, fps: float = 10.0,
                 fourcc: str = DEFAULT_FOURCC) -> None:
        self.video_path, self.png_dir, self.fps, self.fourcc = video, png_dir, fps, fourcc
        self._video: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0
        if png_dir is not None:
            png_dir.mkdir(parents=True, exist_ok=True)

    def compose(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The BGR frame to write (OpenCV's channel order)."""
        bgr = cv2.cvtColor(side_by_side(left, right), cv2.COLOR_RGB2BGR)
        # MPEG-4 and H.264 encoders need even sizes and would silently drop the odd row themselves
        bgr = bgr[: bgr.shape[0] - bgr.shape[0] % 2, : bgr.shape[1] - bgr.shape[1] % 2]
        if self._size is not None and (bgr.shape[1], bgr.shape[0]) != self._size:
            bgr = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA)
        return bgr

    def write(self, bgr: np.ndarray, index: int) -> None:
        if self.video_path is not None:
            if self._video is None:
                self._open(bgr.shape[1], bgr.shape[0])
            assert self._video is not None
            self._video.write(bgr)
        if self.png_dir is not None:
            if not cv2.imwrite(str(self.png_dir / f"{index:06d}.png"), bgr):
                raise OSError(f"could not write {self.png_dir / f'{index:06d}.png'}")
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        self._size = (width, height)
        self._video = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps,
                                      (width, height))
        if not self._video.isOpened():
            raise OSError(f"OpenCV cannot write {self.video_path} with codec {self.fourcc!r}")

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None

    def __enter__(self) -> "SideBySideWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
