"""Replay's pluggable outputs: each gets every recorded message and every frame.

An output is told about each non-image message of the recording (``message``),
each frame that could not be decoded (``skipped``) and each predicted frame, in
two steps so that the loop can time them as stages: ``encode`` builds what is to
be written, ``write`` writes it. Ground truth is not an output of this kind: it
is read from messages and compared with predictions (``GroundTruth``).
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from ..inference.predictor import Prediction
from ..messages.builders import depth_camera_info
from ..messages.image import DecodedFrame, ImageDecodeError, image_to_array
from ..messages.label_info import LABEL_INFO_TYPE, VISION_CLASS_TYPE, LabelEntry, label_info_message
from ..messages.point_cloud import point_cloud_message
from ..messages.stamps import Header, header_of
from ..messages.topics import COMPRESSED_TYPE, OUTPUT_SPECS
from .bagio import (
    CAMERA_INFO_TYPE,
    BagMessage,
    BagWriter,
    compressed_message,
    first_message,
    image_message,
    make_header,
    typestore_types,
)
from .evaluation import Evaluation, GroundTruthError, depth_from_array, labels_from_array
from .replay_plan import Plan
from .sources import BagSource, Frame, FrameSource
from .video import SideBySideWriter


class FrameOutput:
    """What every output can be told; the defaults ignore it."""

    def message(self, message: BagMessage) -> None:
        """A non-image message of the recording, in log-time order."""

    def skipped(self, frame: Frame) -> None:
        """A frame that could not be decoded."""

    def encode(self, frame: Frame, decoded: DecodedFrame, prediction: Prediction) -> Any:
        """What ``write`` will write for ``frame``; ``decoded`` is its input, as the predictor took it."""
        return None

    def write(self, frame: Frame, encoded: Any) -> None:
        """Write what ``encode`` returned for ``frame``."""


class BagOutput(FrameOutput):
    """The recording copied whole, plus the node's topics for each predicted frame, written
    with the frame's log time and header (``depth/camera_info`` from the camera's latest),
    and the node's latched ``classes`` once, with the first."""

    def __init__(self, bag: BagWriter, source: FrameSource, plan: Plan, classes: Sequence[LabelEntry]) -> None:
        self.bag, self.source, self.plan = bag, source, plan
        self.types = typestore_types(bag.typestore)
        self.camera_info: Any = None
        # still to write: a recorder of the node gets the latched classes before its first frame
        self.classes: Sequence[LabelEntry] | None = classes if plan.label_info_topic else None
        if isinstance(source, BagSource):
            bag.add_copies(source.reader, source.reader.connections)
            if plan.camera_info_topic:
                # the first one before any frame: a camera_info logged just after its image still counts
                first = first_message(source.reader, plan.camera_info_topic)
                self.camera_info = self._camera_info(first) if first else None

    def _camera_info(self, message: BagMessage) -> Any:
        """A CameraInfo from the input, as a message of the writer's types (ROS 1 ones converted)."""
        try:
            return self.bag.typestore.deserialize_cdr(self.bag.to_cdr(message), CAMERA_INFO_TYPE)
        except Exception:  # noqa: BLE001 - a corrupt CameraInfo only costs depth/camera_info until the next one
            return None

    def message(self, message: BagMessage) -> None:
        self.bag.copy(message)
        if message.topic == self.plan.camera_info_topic:
            self.camera_info = self._camera_info(message) or self.camera_info

    def skipped(self, frame: Frame) -> None:
        if frame.original is not None:
            self.bag.copy(frame.original)  # the recording stays complete; only the outputs are missing

    def encode(self, frame: Frame, decoded: DecodedFrame, prediction: Prediction) -> list[tuple[str, str, Any]]:
        """The frame's output messages, serialised: (topic, msgtype, CDR bytes). Serialising here,
        before the next prediction, matters: the messages are views of the prediction's arrays."""
        ts, header = self.bag.typestore, make_header(self.bag.typestore, frame.header)
        msgs = [(topic, image_message(ts, getattr(prediction, spec.name), spec.encoding, frame.header))
                for spec in OUTPUT_SPECS if (topic := self.plan.output_topics.get(spec.name))]
        if self.plan.depth_info_topic and self.camera_info is not None:
            msgs.append((self.plan.depth_info_topic, depth_camera_info(self.types, header, self.camera_info)))
        if self.plan.points_topic and prediction.points is not None:
            msgs.append((self.plan.points_topic, point_cloud_message(self.types, header, prediction.points)))
        if frame.original is None:  # video or folder: the frame itself, in its own order, becomes the recording
            original = (compressed_message(ts, decoded.pixels, frame.header, channels=decoded.channels)
                        if self.source.image_msgtype == COMPRESSED_TYPE
                        else image_message(ts, decoded.pixels, decoded.encoding, frame.header))
            msgs.insert(0, (self.source.image_topic, original))
        return [(topic, msg.__msgtype__, self.bag.serialize(msg)) for topic, msg in msgs]

    def write(self, frame: Frame, encoded: list[tuple[str, str, Any]]) -> None:
        if frame.original is not None:
            self.bag.copy(frame.original)
        if self.classes is not None:
            # the frame's stamp; no frame_id, as the node's has none (it stamps with its clock)
            ts = self.bag.typestore
            header = make_header(ts, Header(frame.header.stamp_ns, ""))
            message = label_info_message(ts.types[LABEL_INFO_TYPE], ts.types[VISION_CLASS_TYPE], header, self.classes)
            self.bag.write(self.plan.label_info_topic, message, frame.log_time_ns)
            self.classes = None
        for topic, msgtype, raw in encoded:
            self.bag.write_serialized(topic, msgtype, raw, frame.log_time_ns)


class VideoOutput(FrameOutput):
    """Overlay | coloured depth, as a video and/or a PNG sequence."""

    def __init__(self, writer: SideBySideWriter) -> None:
        self.writer = writer

    def encode(self, frame: Frame, decoded: DecodedFrame, prediction: Prediction) -> np.ndarray:
        return self.writer.compose(prediction.overlay, prediction.depth_colour)

    def write(self, frame: Frame, encoded: np.ndarray) -> None:
        self.writer.write(encoded, frame.index)


class GroundTruth:
    """Ground truth from bag topics (paired by stamp) or folders (by frame name), compared with
    each prediction. Time spent on ground-truth messages is kept apart (``take_seconds``) so
    that it counts as evaluation, not as reading."""

    def __init__(self, evaluation: Evaluation, plan: Plan, source: FrameSource, depth_scale: float) -> None:
        self.evaluation, self.plan, self.source, self.depth_scale = evaluation, plan, source, depth_scale
        self._seconds = 0.0

    def take_seconds(self) -> float:
        seconds, self._seconds = self._seconds, 0.0
        return seconds

    def message(self, message: BagMessage) -> None:
        kind = self.plan.gt_topics.get(message.topic)
        if kind is None:
            return
        assert isinstance(self.source, BagSource)
        start = time.perf_counter()
        try:
            msg = self.source.deserialize(message)
            array = image_to_array(msg)
            truth = (depth_from_array(array, msg.encoding, self.depth_scale) if kind == "depth"
                     else labels_from_array(array, msg.encoding))
            self.evaluation.add_truth(kind, header_of(msg).stamp_ns, truth)
        except (GroundTruthError, ImageDecodeError) as error:
            self.evaluation.truth_error(f"{message.topic} at {message.log_time_ns}: {error}")
        except Exception as error:  # noqa: BLE001 - corrupt bytes: see sources.BagSource._frame
            self.evaluation.truth_error(f"{message.topic} at {message.log_time_ns}: could not be deserialised "
                                        f"({error})")
        finally:
            self._seconds += time.perf_counter() - start

    def evaluate(self, frame: Frame, prediction: Prediction) -> None:
        for kind, folder in self.plan.gt_folders.items():
            try:
                truth = folder.load(frame.name)
            except GroundTruthError as error:
                self.evaluation.truth_error(str(error))
                continue
            if truth is not None:
                self.evaluation.add_truth(kind, frame.header.stamp_ns, truth)
        self.evaluation.add_prediction(frame.index, frame.name, frame.header.stamp_ns, prediction.depth,
                                       prediction.labels)
