"""rosbag reading and writing with rosbags: no ROS installation needed.

Image, CompressedImage and CameraInfo messages are turned into plain numpy
arrays and header values (and back) through ``messages``, the conventions the
live node uses, so a bag written here carries the node's exact messages.
Reading covers rosbag2 (sqlite3 and MCAP) and ROS 1 bags; writing is rosbag2.

ROS 1 messages are copied into ROS 2 types with rosbags' converter, which
rosbags does not export (``rosbags.convert`` offers only whole-bag conversion,
a full copy of the input on disk): setup.py pins the rosbags range it is tested with.
The module runs past 300 lines because it is the one place that touches rosbags'
readers, writers and typestores; everything else sees plain messages and arrays.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinitionFormat
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ..messages.builders import MessageTypes, with_byte_view
from ..messages.builders import image_message as build_image_message
from ..messages.image import DecodedFrame, ImageDecodeError, decode_frame
from ..messages.label_info import LABEL_INFO_DEFINITIONS
from ..messages.stamps import Header, ns_to_stamp
from ..messages.topics import CAMERA_INFO_TOPIC, COMPRESSED_TYPE, IMAGE_TYPE, join_topic

CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
# the node's input_transport that reads each image type
TRANSPORTS = {IMAGE_TYPE: "raw", COMPRESSED_TYPE: "compressed"}
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
# message definitions of these types are identical across the distributions;
# the choice only sets what the bag's metadata says it was written for
DISTROS = {"humble": Stores.ROS2_HUMBLE, "iron": Stores.ROS2_IRON, "jazzy": Stores.ROS2_JAZZY}
# rosbag2 metadata version per distribution: Humble's reader predates version 9
BAG_VERSIONS = {"humble": 8, "iron": 8, "jazzy": 9}


class BagError(ValueError):
    """A bag that cannot be read or written as asked; the message says why."""


@dataclass(frozen=True)
class BagMessage:
    """One raw message as stored: its connection, log time (ns) and serialised bytes."""

    connection: Connection
    log_time_ns: int
    raw: bytes | memoryview

    @property
    def topic(self) -> str:
        return self.connection.topic

    @property
    def msgtype(self) -> str:
        return self.connection.msgtype


def ros2_typestore(distro: str = "humble") -> Typestore:
    if distro not in DISTROS:
        raise BagError(f"unknown ROS distribution {distro!r}; choose from {', '.join(DISTROS)}")
    return get_typestore(DISTROS[distro])


# ---------------------------------------------------------------- reading

def is_bag(path: Path) -> bool:
    """A rosbag2 directory (has metadata.yaml) or a ROS 1 ``.bag`` file."""
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (path.is_file() and path.suffix == ".bag")


def bag_storage(path: Path) -> str:
    """'sqlite3', 'mcap' or 'rosbag1', for reports and for choosing the output's storage."""
    if path.is_file():
        return "rosbag1"
    import yaml

    metadata = path / "metadata.yaml"
    try:
        info = yaml.safe_load(metadata.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise BagError(f"cannot read {metadata}: {type(error).__name__}: {error}") from None
    if not isinstance(info, dict) or not isinstance(info.get("rosbag2_bagfile_information"), dict):
        raise BagError(f"{metadata} is not rosbag2 metadata (no rosbag2_bagfile_information mapping); "
                       "'ros2 bag reindex' can rebuild it from the storage files")
    return str(info["rosbag2_bagfile_information"].get("storage_identifier") or "sqlite3")


def looks_like_bag_without_metadata(path: Path) -> bool:
    """A directory holding rosbag2 storage files but no metadata.yaml (a killed recorder)."""
    return path.is_dir() and not (path / "metadata.yaml").exists() and any(
        p.suffix in (".db3", ".mcap") for p in path.iterdir())


@contextmanager
def open_bag(path: Path) -> Iterator[AnyReader]:
    """An open ``AnyReader``; bags without embedded definitions fall back to Humble's types."""
    try:
        reader = AnyReader([Path(path)], default_typestore=ros2_typestore("humble"))
        reader.open()
    # rosbags reads metadata.yaml without checking its shape: garbage there fails as anything
    except (AnyReaderError, OSError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise BagError(f"cannot read bag {path}: {type(error).__name__}: {error}") from None
    try:
        yield reader
    finally:
        reader.close()


def topic_types(reader: AnyReader) -> dict[str, str]:
    return {name: info.msgtype or "?" for name, info in reader.topics.items()}


def describe_topics(reader: AnyReader) -> str:
    """One indented line per topic, for error messages."""
    lines = [f"  {name} ({info.msgtype}, {info.msgcount} messages)" for name, info in sorted(reader.topics.items())]
    return "\n".join(lines) if lines else "  (the bag has no topics)"


def require_topic(reader: AnyReader, topic: str, msgtypes: Sequence[str], what: str) -> str:
    """The topic's type, after checking that it exists with one of ``msgtypes``."""
    types = topic_types(reader)
    if topic not in types:
        raise BagError(f"{what} topic {topic!r} is not in the bag; it has:\n{describe_topics(reader)}")
    if types[topic] not in msgtypes:
        raise BagError(f"{what} topic {topic!r} has type {types[topic]}, expected {' or '.join(msgtypes)}")
    return types[topic]


def find_image_topic(reader: AnyReader, topic: str | None = None, exclude: Iterable[str] = ()) -> str:
    """``topic`` checked, or the bag's one camera topic (Image or CompressedImage).

    ``exclude`` removes topics that are known not to be the camera (ground truth,
    earlier HydraNet outputs), so that a bag replayed before still resolves."""
    if topic:
        require_topic(reader, topic, IMAGE_TYPES, "image")
        return topic
    excluded = set(exclude)
    candidates = sorted(name for name, msgtype in topic_types(reader).items()
                        if msgtype in IMAGE_TYPES and name not in excluded)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise BagError(f"the bag has no Image or CompressedImage topic; it has:\n{describe_topics(reader)}")
    raise BagError("the bag has several image topics, choose one with --topic:\n"
                   + "\n".join(f"  {name}" for name in candidates))


def find_camera_info_topic(reader: AnyReader, namespace: str) -> str | None:
    """``<namespace>/camera_info`` when the bag has it as CameraInfo (the image_transport convention)."""
    topic = join_topic(namespace, CAMERA_INFO_TOPIC)
    return topic if topic_types(reader).get(topic) == CAMERA_INFO_TYPE else None


def first_message(reader: AnyReader, topic: str) -> BagMessage | None:
    connections = [c for c in reader.connections if c.topic == topic]
    for connection, log_time, raw in reader.messages(connections=connections):
        return BagMessage(connection, log_time, raw)
    return None


# ---------------------------------------------------------------- messages <-> numpy

def message_to_frame(msg: Any, msgtype: str, max_pixels: int | None = None) -> DecodedFrame:
    """An Image or CompressedImage message -> its frame, decoded as the node decodes it
    (``messages.image.decode_frame``); ImageDecodeError if it cannot be."""
    if msgtype not in TRANSPORTS:
        raise ImageDecodeError(f"{msgtype} is not an image message")
    return decode_frame(msg, TRANSPORTS[msgtype], max_pixels)


def typestore_types(typestore: Typestore) -> MessageTypes:
    """The typestore's message classes for ``messages.builders``; data as numpy views (no copy)."""
    return MessageTypes(image=typestore.types[IMAGE_TYPE], camera_info=typestore.types[CAMERA_INFO_TYPE],
                        build=with_byte_view, point_cloud=typestore.types[POINT_CLOUD_TYPE],
                        point_field=typestore.types["sensor_msgs/msg/PointField"])


def make_header(typestore: Typestore, header: Header) -> Any:
    sec, nanosec = ns_to_stamp(header.stamp_ns)
    time_type = typestore.types["builtin_interfaces/msg/Time"]
    return typestore.types["std_msgs/msg/Header"](stamp=time_type(sec=sec, nanosec=nanosec), frame_id=header.frame_id)


def image_message(typestore: Typestore, array: np.ndarray, encoding: str, header: Header) -> Any:
    """``messages.builders.image_message`` for a plain ``Header`` in this typestore."""
    return build_image_message(typestore_types(typestore), make_header(typestore, header), array, encoding)


def compressed_message(typestore: Typestore, pixels: np.ndarray, header: Header, fmt: str = "jpeg",
                       quality: int = 90, channels: str = "rgb") -> Any:
    """A CompressedImage of ``pixels`` (H, W, 3) in ``channels`` order, rgb or bgr: OpenCV
    encodes BGR, so a BGR frame (a video's, a folder's) is encoded as it is."""
    import cv2

    if channels not in ("rgb", "bgr"):
        raise ValueError(f"a compressed image is encoded from rgb or bgr pixels, got {channels!r}")
    extension = {"jpeg": ".jpg", "png": ".png"}[fmt]
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []
    bgr = pixels if channels == "bgr" else np.ascontiguousarray(pixels[:, :, ::-1])
    ok, encoded = cv2.imencode(extension, bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {pixels.shape} image as {fmt}")
    return typestore.types[COMPRESSED_TYPE](header=make_header(typestore, header), format=fmt,
                                            data=encoded.reshape(-1).astype(np.uint8))


def camera_info_message(typestore: Typestore, header: Header, width: int, height: int, k: np.ndarray,
                        d: Sequence[float] = (0.0, 0.0, 0.0, 0.0, 0.0), distortion_model: str = "plumb_bob") -> Any:
    """A rectified pinhole camera: R = identity and P = [K | 0]."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    p = np.hstack([k, np.zeros((3, 1))])
    roi = typestore.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                             do_rectify=False)
    return typestore.types[CAMERA_INFO_TYPE](
        header=make_header(typestore, header), height=height, width=width, distortion_model=distortion_model,
        d=np.asarray(d, dtype=np.float64), k=k.reshape(-1), r=np.eye(3).reshape(-1), p=p.reshape(-1),
        binning_x=0, binning_y=0, roi=roi)


# ---------------------------------------------------------------- writing

class BagWriter:
    """A rosbag2 writer for new messages (serialised with ``typestore``) and copied ones.

    Copies keep each input connection's message definition and QoS; ROS 1
    messages are converted to CDR on the way, as ``rosbags-convert`` does."""

    def __init__(self, path: Path, storage: str = "sqlite3", distro: str = "humble") -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}; choose from {', '.join(STORAGES)}")
        self.path = Path(path)
        self.distro = distro
        self.typestore = ros2_typestore(distro)
        # segmentation/label_info's type (package.xml depends on vision_msgs), which rosbags' stores lack
        for name, definition in LABEL_INFO_DEFINITIONS.items():
            self.typestore.register(get_types_from_msg(definition, name))
        try:
            self._writer = Writer(self.path, version=BAG_VERSIONS[distro], storage_plugin=STORAGES[storage])
        except WriterError as error:
            raise BagError(str(error)) from None
        self._topics: dict[tuple[str, str], Connection] = {}
        # (input connection id, owner) -> (output connection, bytes converter)
        self._copies: dict[tuple[int, int], tuple[Connection, Any]] = {}

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self._writer.close()
        else:
            # no metadata.yaml: the storage file alone is not a readable bag
            self._writer.abort()

    def serialize(self, msg: Any) -> memoryview:
        """A typestore message object -> CDR bytes (kept apart from writing so callers can time both)."""
        return self.typestore.serialize_cdr(msg, msg.__msgtype__)

    def write_serialized(self, topic: str, msgtype: str, raw: bytes | memoryview, log_time_ns: int) -> None:
        connection = self._topics.get((topic, msgtype))
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._topics[(topic, msgtype)] = connection
        self._writer.write(connection, log_time_ns, raw)

    def write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        """Serialise ``msg`` and write it on ``topic``."""
        self.write_serialized(topic, msg.__msgtype__, self.serialize(msg), log_time_ns)

    def add_copies(self, reader: AnyReader, connections: Sequence[Connection]) -> None:
        """Prepare output connections for copying messages of ``connections`` from ``reader``."""
        if reader.is2:
            for connection in connections:
                self._copies[(connection.id, id(connection.owner))] = (self._copy_connection(reader, connection),
                                                                       None)
            return
        # ROS 1 -> ROS 2 needs type migration (Header loses seq, field names change): rosbags'
        # converter does it into the distribution's own types (a fresh store: it registers into it)
        from rosbags.convert.converter import create_connections_converters

        connmap, convmap = create_connections_converters(connections, ros2_typestore(self.distro), reader,
                                                         self._writer)
        for connection in connections:
            self._copies[(connection.id, id(connection.owner))] = (connmap[(connection.id, connection.owner)],
                                                                   convmap[connection.msgtype])

    def _copy_connection(self, reader: AnyReader, connection: Connection) -> Connection:
        ext = connection.ext
        assert isinstance(ext, ConnectionExtRosbag2)
        for existing in self._writer.connections:
            # one topic recorded from several publishers with the same QoS maps to one output connection
            if (existing.topic, existing.msgtype, existing.ext) == (connection.topic, connection.msgtype, ext):
                return existing
        definition: dict[str, Any]
        if connection.msgdef.format != MessageDefinitionFormat.NONE and connection.digest:
            definition = {"msgdef": connection.msgdef.data, "rihs01": connection.digest}
        else:
            definition = {"typestore": reader.typestore}  # old bags without definitions
        return self._writer.add_connection(connection.topic, connection.msgtype,
                                           serialization_format=ext.serialization_format,
                                           offered_qos_profiles=ext.offered_qos_profiles, **definition)

    def to_cdr(self, message: BagMessage) -> bytes | memoryview:
        """An input message's bytes as written to the output: unchanged, or converted from ROS 1."""
        convert = self._copies[(message.connection.id, id(message.connection.owner))][1]
        return convert(message.raw) if convert is not None else message.raw

    def copy(self, message: BagMessage) -> bytes | memoryview:
        """Write an input message unchanged (CDR-converted for ROS 1); returns the CDR bytes written."""
        raw = self.to_cdr(message)
        self._writer.write(self._copies[(message.connection.id, id(message.connection.owner))][0],
                           message.log_time_ns, raw)
        return raw
