"""A teacher's labels for the frames of an unlabelled recording, computed once and kept on disk.

Layout under ``<cache_dir>/<key>/`` (the key hashes the teacher file's bytes, the source's
path, size and modification time, and the frame selection, so a changed teacher or recording
gets its own folder): ``frames/NNNNNN.jpg`` (the frame, JPEG quality 95), ``labels/NNNNNN.png``
(the teacher's own class ids, uint8), ``confidence/NNNNNN.png`` (the teacher's probability of
that class x 255, where the teacher gives scores) and ``manifest.json``. Each file is written
atomically and a frame's labels last, so a killed run resumes where it stopped: frames whose
labels exist are not recomputed. The class map is applied when the dataset reads the labels,
so changing it costs nothing.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ...common.atomic import atomic_write
from ...common.image_files import write_image
from ...messages.image import ImageDecodeError
from ...offline.sources import Frame, SourceError, open_source
from .teacher import Teacher


class UnlabelledDataError(ValueError):
    """An unlabelled recording that yields no usable frame; the message names it."""


@dataclass(frozen=True)
class FrameSelection:
    start: int = 0            # first source frame (index among the recording's frames)
    stop: int | None = None   # one past the last; None = to the end
    every: int = 1            # keep every n-th frame
    topic: str | None = None  # the image topic of a bag with several

    def keeps(self, index: int) -> bool:
        return index >= self.start and (self.stop is None or index < self.stop) and (index - self.start) % self.every == 0


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(teacher: Teacher, source: Path, selection: FrameSelection) -> str:
    stat = source.stat()
    text = json.dumps([_file_digest(teacher.path), str(source.resolve()), stat.st_size, stat.st_mtime_ns,
                       selection.start, selection.stop, selection.every, selection.topic,
                       teacher.input.kind, teacher.input.size])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def label_recording(teacher: Teacher, source: Path, cache_dir: Path, selection: FrameSelection = FrameSelection(),
                    progress: Callable[[str], None] = print) -> Path:
    """Label the selected frames of ``source`` (anything ``hydranet_replay`` reads) into the cache;
    returns the folder. Raises UnlabelledDataError when no frame could be read."""
    source = Path(source).expanduser()
    try:
        frames = open_source(source, selection.topic)
    except (SourceError, ValueError) as error:  # BagError is a ValueError too
        raise UnlabelledDataError(f"unlabelled data {source}: {error}") from None
    folder = Path(cache_dir) / cache_key(teacher, source, selection)
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()).get("complete"):
        frames.close()
        return folder
    labelled = reused = bad = 0
    started = time.monotonic()
    names: dict[str, str] = {}
    try:
        for frame in frames.messages(topics=()):
            if not isinstance(frame, Frame) or not selection.keeps(frame.index):
                continue
            stem = f"{frame.index:06d}"
            names[stem] = frame.name
            if (folder / "labels" / f"{stem}.png").is_file():
                reused += 1
                continue
            try:
                rgb = frame.decode().to_rgb()   # the teacher takes RGB
            except ImageDecodeError as error:
                bad += 1
                progress(f"skipping frame {frame.index} of {source}: {error}")
                continue
            _label_frame(teacher, rgb, folder, stem)
            labelled += 1
            if labelled % 25 == 0:
                rate = labelled / (time.monotonic() - started)
                progress(f"teacher labels: {labelled + reused} frames of {source.name} ({rate:.1f} frames/s)")
    finally:
        frames.close()
    if labelled + reused == 0:
        raise UnlabelledDataError(f"unlabelled data {source}: no readable frame"
                                  f"{f' ({bad} could not be decoded)' if bad else ''} in the selection "
                                  f"start={selection.start} stop={selection.stop} every={selection.every}")
    manifest = {"complete": True, "teacher": str(teacher.path), "source": str(source), "frames": len(names),
                "undecodable": bad, "confidence": teacher.scores, "names": names,
                "selection": vars(selection)}
    atomic_write(manifest_path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
    progress(f"teacher labels: {len(names)} frames of {source} in {folder} ({labelled} new, {reused} cached)")
    return folder


def _label_frame(teacher: Teacher, rgb: np.ndarray, folder: Path, stem: str) -> None:
    ids, confidence = teacher.label(rgb)
    if ids.min() < 0 or ids.max() > 254:
        raise UnlabelledDataError(f"teacher {teacher.path}: class ids {ids.min()}..{ids.max()} do not fit 0..254")
    write_image(folder / "frames" / f"{stem}.jpg", np.ascontiguousarray(rgb[:, :, ::-1]),
                 (cv2.IMWRITE_JPEG_QUALITY, 95))
    if confidence is not None:
        write_image(folder / "confidence" / f"{stem}.png", np.round(confidence * 255).astype(np.uint8))
    write_image(folder / "labels" / f"{stem}.png", ids.astype(np.uint8))  # last: marks the frame done
