"""Frame sources for the replay tool: a bag, a video file or a folder of images.

Each source yields ``Frame`` objects in recording order: header (stamp,
frame_id), log time, a name for reports and a ``decode()`` that returns the
frame in the channel order it comes in (``messages.image.DecodedFrame``: a bag's
message decoded as the node decodes it, a video's or an image file's pixels in
OpenCV's BGR) or raises ``ImageDecodeError``, also for a frame over the pixel
limit. Decoding is deferred so that the caller can time it as its own stage and
count a bad frame instead of stopping.
A bag source also yields every other message (``BagMessage``) so that the
caller can copy the recording and read ground truth and camera info from it.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..common.image_files import IMAGE_SUFFIXES, ImageFileError, image_files, read_bgr
from ..messages.image import DecodedFrame, ImageDecodeError, check_pixels
from ..messages.stamps import Header, header_of
from ..messages.topics import OUTPUT_SPECS
from .bagio import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    BagError,
    BagMessage,
    bag_storage,
    find_image_topic,
    is_bag,
    looks_like_bag_without_metadata,
    message_to_frame,
    open_bag,
    topic_types,
)

DEFAULT_TOPIC = "/camera/image_raw"


class SourceError(ValueError):
    """An input that cannot be opened as a frame source; the message says why."""


@dataclass
class Frame:
    index: int                # position among the source's frames, from 0
    name: str                 # file stem, or the header stamp in ns
    header: Header            # copied onto every output
    log_time_ns: int          # bag log time; outputs are written at the same time
    _decode: Callable[[], DecodedFrame] = field(repr=False)
    original: BagMessage | None = None  # the stored message, for bag sources

    def decode(self) -> DecodedFrame:
        """The frame in its own channel order; raises ImageDecodeError. Video frames must
        be decoded before the iterator moves on (OpenCV keeps only the last grabbed frame)."""
        return self._decode()


def _failing(error: Exception) -> Callable[[], DecodedFrame]:
    def decode() -> DecodedFrame:
        raise error
    return decode


def _opencv_frame(bgr: np.ndarray, max_pixels: int | None) -> DecodedFrame:
    """A frame OpenCV decoded (a video's, an image file's), held to the pixel limit as a message is."""
    check_pixels(bgr.shape[1], bgr.shape[0], max_pixels)
    return DecodedFrame(bgr, "bgr")


def frame_stamp_ns(start_ns: int, index: int, fps: float) -> int:
    """The stamp of frame ``index`` of a sequence that starts at ``start_ns`` and runs at ``fps``."""
    return start_ns + round(index * 1e9 / fps)


def earlier_output_topics(topics: Iterable[str]) -> set[str]:
    """Topics that look like HydraNet outputs (``.../depth/image`` ...): never the camera."""
    suffixes = tuple("/" + spec.topic for spec in OUTPUT_SPECS)
    return {t for t in topics if t.endswith(suffixes)}


class BagSource:
    """Frames from the image topic of a rosbag2 (sqlite3, MCAP) or ROS 1 bag."""

    def __init__(self, path: Path, topic: str | None = None, exclude: Iterable[str] = (),
                 max_pixels: int | None = None) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels
        self.storage = bag_storage(self.path)
        self.kind = f"rosbag ({self.storage})"
        self._stack = ExitStack()
        self.reader = self._stack.enter_context(open_bag(self.path))
        types = topic_types(self.reader)
        try:
            self.image_topic = find_image_topic(self.reader, topic, set(exclude) | earlier_output_topics(types))
        except BagError:
            self.close()
            raise
        self.image_msgtype = types[self.image_topic]
        self.topics = types
        self.total: int | None = self.reader.topics[self.image_topic].msgcount

    @property
    def fps(self) -> float | None:
        """Image rate over the whole recording, for the video's frame rate; None if unknown."""
        duration_s = self.reader.duration / 1e9
        return (self.total - 1) / duration_s if self.total and self.total > 1 and duration_s > 0 else None

    def close(self) -> None:
        self._stack.close()

    def deserialize(self, message: BagMessage) -> Any:
        return self.reader.deserialize(message.raw, message.msgtype)

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[Frame | BagMessage]:
        """Messages in log-time order: a ``Frame`` for each image message, the others as they are.
        ``topics`` limits reading to those topics (plus the image topic); None reads all."""
        wanted = None if topics is None else set(topics) | {self.image_topic}
        connections = [c for c in self.reader.connections if wanted is None or c.topic in wanted]
        index = 0
        for connection, log_time, raw in self.reader.messages(connections=connections):
            message = BagMessage(connection, log_time, raw)
            if connection.topic != self.image_topic:
                yield message
                continue
            yield self._frame(index, message)
            index += 1

    def _frame(self, index: int, message: BagMessage) -> Frame:
        try:
            msg = self.deserialize(message)
            header = header_of(msg)
        # corrupt bytes fail in many ways inside the deserialiser (struct, index, unicode errors);
        # any of them only means this one message is unusable
        except Exception as error:  # noqa: BLE001
            reason = ImageDecodeError(f"message could not be deserialised ({type(error).__name__}: {error})")
            return Frame(index, str(message.log_time_ns), Header(message.log_time_ns, ""), message.log_time_ns,
                         _failing(reason), message)
        msgtype = message.msgtype
        return Frame(index, str(header.stamp_ns), header, message.log_time_ns,
                     lambda: message_to_frame(msg, msgtype, self.max_pixels), message)


class VideoSource:
    """Frames of a video file; stamps advance by the file's frame rate from ``start_ns``."""

    def __init__(self, path: Path, topic: str = DEFAULT_TOPIC, frame_id: str = "camera", start_ns: int = 0,
                 fps: float | None = None, max_pixels: int | None = None) -> None:
        import cv2

        self.path = Path(path)
        self.kind = "video"
        self.max_pixels = max_pixels
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            raise SourceError(f"cannot open {self.path} as a video (OpenCV/FFmpeg could not read it)")
        self.fps = fps or self._capture.get(cv2.CAP_PROP_FPS) or 10.0
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.total: int | None = count if count > 0 else None
        self.image_topic, self.frame_id, self.start_ns = topic, frame_id, start_ns
        self.image_msgtype = synthetic_msgtype(topic)

    def close(self) -> None:
        self._capture.release()

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[Frame]:
        index = 0
        # grab() reads, retrieve() decodes: splitting them lets the caller time decoding
        while self._capture.grab():
            stamp = frame_stamp_ns(self.start_ns, index, self.fps)
            yield Frame(index, str(stamp), Header(stamp, self.frame_id), stamp, self._retriever(index))
            index += 1

    def _retriever(self, index: int) -> Callable[[], DecodedFrame]:
        def decode() -> DecodedFrame:
            ok, bgr = self._capture.retrieve()
            if not ok or bgr is None or bgr.ndim != 3:
                raise ImageDecodeError(f"video frame {index} could not be decoded")
            return _opencv_frame(bgr, self.max_pixels)
        return decode


class FolderSource:
    """Images of a folder in file-name order (zero-pad numbered names); stamps advance at ``fps``."""

    def __init__(self, path: Path, topic: str = DEFAULT_TOPIC, frame_id: str = "camera", start_ns: int = 0,
                 fps: float = 10.0, max_pixels: int | None = None) -> None:
        self.path = Path(path)
        self.kind = "image folder"
        self.max_pixels = max_pixels
        self.files = image_files(self.path, recursive=False)
        if not self.files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.path}")
        self.total: int | None = len(self.files)
        self.image_topic, self.frame_id, self.start_ns, self.fps = topic, frame_id, start_ns, fps
        self.image_msgtype = synthetic_msgtype(topic)

    def close(self) -> None:
        pass

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            stamp = frame_stamp_ns(self.start_ns, index, self.fps)
            yield Frame(index, path.stem, Header(stamp, self.frame_id), stamp, _file_reader(path, self.max_pixels))


def _file_reader(path: Path, max_pixels: int | None) -> Callable[[], DecodedFrame]:
    def decode() -> DecodedFrame:
        try:
            return _opencv_frame(read_bgr(path), max_pixels)
        except ImageFileError as error:
            raise ImageDecodeError(str(error)) from None
        except ImageDecodeError as error:
            raise ImageDecodeError(f"{path}: {error}") from None
    return decode


def synthetic_msgtype(topic: str) -> str:
    """Frames from a video or folder go into an output bag JPEG-compressed when the topic
    says so (``.../compressed``, image_transport's name), else as raw bgr8 Images."""
    return COMPRESSED_TYPE if topic.rstrip("/").endswith("/compressed") else IMAGE_TYPE


FrameSource = BagSource | VideoSource | FolderSource


def open_source(path: Path, topic: str | None = None, exclude: Iterable[str] = (), frame_id: str = "camera",
                start_ns: int = 0, fps: float | None = None, max_pixels: int | None = None) -> FrameSource:
    """The right source for ``path``: a rosbag2 directory or ``.bag`` file, a folder of images, a video.
    A frame with more than ``max_pixels`` pixels (None: no limit) does not decode."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"input not found: {path}")
    if is_bag(path):
        return BagSource(path, topic, exclude, max_pixels)
    if path.suffix in (".mcap", ".db3"):
        raise SourceError(f"{path} is a rosbag2 storage file; pass its directory (with metadata.yaml) instead")
    if looks_like_bag_without_metadata(path):
        raise SourceError(f"{path} holds rosbag2 storage files but no metadata.yaml (an interrupted recording?); "
                          "'ros2 bag reindex' can rebuild it")
    if path.is_dir():
        return FolderSource(path, topic or DEFAULT_TOPIC, frame_id, start_ns, fps or 10.0, max_pixels)
    return VideoSource(path, topic or DEFAULT_TOPIC, frame_id, start_ns, fps, max_pixels)
