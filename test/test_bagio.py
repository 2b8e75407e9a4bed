import numpy as np
import pytest
from replay_helpers import FRAME_ID, HEIGHT, START_NS, WIDTH, K, camera_message, make_images, read_bag, write_camera_bag
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.typesys import Stores, get_typestore

from hydranet_ros.messages.builders import depth_camera_info
from hydranet_ros.messages.image import ImageDecodeError, image_to_array
from hydranet_ros.messages.stamps import Header, header_of
from hydranet_ros.offline.bagio import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    BagError,
    BagMessage,
    BagWriter,
    bag_storage,
    camera_info_message,
    compressed_message,
    find_camera_info_topic,
    find_image_topic,
    image_message,
    is_bag,
    make_header,
    message_to_frame,
    open_bag,
    ros2_typestore,
    typestore_types,
)


@pytest.mark.parametrize("encoding, channels", [("rgb8", "rgb"), ("bgr8", "bgr"), ("mono8", "mono"),
                                                ("png", "bgr")])
def test_camera_messages_round_trip_in_their_own_channel_order(encoding, channels):
    ts = ros2_typestore()
    image = make_images(1)[0]
    msg = camera_message(ts, image, encoding, Header(START_NS + 5, FRAME_ID))
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    frame = message_to_frame(back, msg.__msgtype__)
    assert frame.channels == channels
    expected = np.repeat(image[:, :, 1:2], 3, axis=2) if encoding == "mono8" else image
    np.testing.assert_array_equal(frame.to_rgb(), expected)
    assert header_of(back) == Header(START_NS + 5, FRAME_ID)


def test_depth_image_keeps_float_values_and_encoding():
    ts = ros2_typestore()
    depth = np.linspace(0.5, 80.0, WIDTH * HEIGHT, dtype=np.float32).reshape(HEIGHT, WIDTH)
    msg = image_message(ts, depth, "32FC1", Header(1, "x"))
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, IMAGE_TYPE), IMAGE_TYPE)
    array = image_to_array(back)
    assert back.encoding == "32FC1" and back.step == WIDTH * 4 and back.is_bigendian == 0
    np.testing.assert_array_equal(array, depth)


def test_unsupported_encoding_is_named():
    ts = ros2_typestore()
    msg = image_message(ts, np.zeros((4, 4), np.uint8), "mono8", Header(0, ""))
    msg.encoding = "nv21"
    with pytest.raises(ImageDecodeError, match="unsupported encoding 'nv21'"):
        message_to_frame(msg, IMAGE_TYPE)


def test_the_pixel_limit_and_non_image_types_are_bad_frames():
    ts = ros2_typestore()
    msg = image_message(ts, make_images(1)[0], "rgb8", Header(0, ""))
    assert message_to_frame(msg, IMAGE_TYPE, WIDTH * HEIGHT).size == (WIDTH, HEIGHT)
    with pytest.raises(ImageDecodeError, match=f"{WIDTH}x{HEIGHT} exceeds the limit of {WIDTH * HEIGHT - 1}"):
        message_to_frame(msg, IMAGE_TYPE, WIDTH * HEIGHT - 1)
    with pytest.raises(ImageDecodeError, match="sensor_msgs/msg/CameraInfo is not an image message"):
        message_to_frame(msg, CAMERA_INFO_TYPE)


@pytest.mark.parametrize("channels", ["rgb", "bgr"])
def test_compressed_messages_from_either_order_decode_to_the_same_image(channels):
    ts = ros2_typestore()
    image = make_images(1)[0]
    pixels = image if channels == "rgb" else np.ascontiguousarray(image[:, :, ::-1])
    msg = compressed_message(ts, pixels, Header(0, ""), fmt="png", channels=channels)
    np.testing.assert_array_equal(message_to_frame(msg, COMPRESSED_TYPE).to_rgb(), image)
    with pytest.raises(ValueError, match="rgb or bgr pixels, got 'mono'"):
        compressed_message(ts, pixels, Header(0, ""), channels="mono")


def test_depth_camera_info_is_the_cameras_with_the_frames_header():
    ts = ros2_typestore("jazzy")
    info = camera_info_message(ts, Header(1, "a"), WIDTH, HEIGHT, K, d=(0.1, -0.05, 0.0, 0.0, 0.01))
    moved = depth_camera_info(typestore_types(ts), make_header(ts, Header(2_000_000_001, "b")), info)
    assert header_of(moved) == Header(2_000_000_001, "b") and header_of(info) == Header(1, "a")
    back = ts.deserialize_cdr(ts.serialize_cdr(moved, CAMERA_INFO_TYPE), CAMERA_INFO_TYPE)
    for field in ("height", "width", "distortion_model", "binning_x", "binning_y", "roi"):
        assert getattr(back, field) == getattr(info, field), field
    for field in ("d", "k", "r", "p"):
        np.testing.assert_array_equal(getattr(back, field), getattr(info, field), err_msg=field)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_write_and_read_bag_in_both_storages(tmp_path, storage):
    path = tmp_path / "bag"
    images = make_images(3)
    headers = write_camera_bag(path, images, "rgb8", storage)
    assert is_bag(path) and bag_storage(path) == storage
    with open_bag(path) as reader:
        assert find_image_topic(reader) == "/camera/image_raw"
        assert find_camera_info_topic(reader, "/camera") == "/camera/camera_info"
        assert find_camera_info_topic(reader, "/other") is None
    topics = read_bag(path)
    assert [header_of(m) for _, m in topics["/camera/image_raw"]] == headers
    for (_, msg), image in zip(topics["/camera/image_raw"], images):
        np.testing.assert_array_equal(message_to_frame(msg, IMAGE_TYPE).pixels, image)


def test_topic_discovery_errors_list_topics(tmp_path):
    path = tmp_path / "bag"

    def second_camera(bag, i, header, log_time):
        bag.write("/left/image_raw", image_message(bag.typestore, make_images(1)[0], "rgb8", header), log_time)

    write_camera_bag(path, make_images(1), extra=second_camera)
    with open_bag(path) as reader:
        with pytest.raises(BagError, match="several image topics") as several:
            find_image_topic(reader)
        assert "/camera/image_raw" in str(several.value) and "/left/image_raw" in str(several.value)
        assert find_image_topic(reader, exclude=["/left/image_raw"]) == "/camera/image_raw"
        with pytest.raises(BagError, match="not in the bag") as missing:
            find_image_topic(reader, "/nope")
        assert "/camera/camera_info (sensor_msgs/msg/CameraInfo, 1 messages)" in str(missing.value)
        with pytest.raises(BagError, match="has type sensor_msgs/msg/CameraInfo"):
            find_image_topic(reader, "/camera/camera_info")


def test_unreadable_bag_is_a_bag_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.yaml").write_text("not: [a bag")
    with pytest.raises(BagError, match="cannot read bag"):
        with open_bag(tmp_path / "bad"):
            pass


def test_failed_write_leaves_no_metadata(tmp_path):
    path = tmp_path / "bag"
    with pytest.raises(RuntimeError):
        with BagWriter(path) as bag:
            bag.write("/x", image_message(bag.typestore, np.zeros((2, 2), np.uint8), "mono8", Header(0, "")), 0)
            raise RuntimeError("interrupted")
    assert not (path / "metadata.yaml").exists()


def test_copy_keeps_bytes_and_definitions(tmp_path):
    source, copy = tmp_path / "in", tmp_path / "out"
    write_camera_bag(source, make_images(2), "jpeg", "mcap")
    with open_bag(source) as reader, BagWriter(copy, "sqlite3") as bag:
        bag.add_copies(reader, reader.connections)
        originals = []
        for connection, log_time, raw in reader.messages():
            bag.copy(BagMessage(connection, log_time, raw))
            originals.append((connection.topic, log_time, bytes(raw)))
    with open_bag(copy) as reader:
        copied = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
        assert reader.topics["/camera/image_raw/compressed"].msgtype == COMPRESSED_TYPE
    assert sorted(copied) == sorted(originals)


def test_ros1_bag_is_converted_to_ros2(tmp_path):
    ts1 = get_typestore(Stores.ROS1_NOETIC)
    path = tmp_path / "cam.bag"
    image = make_images(1)[0]
    time_type, header_type = ts1.types["builtin_interfaces/msg/Time"], ts1.types["std_msgs/msg/Header"]
    header = header_type(seq=7, stamp=time_type(sec=1_600_000_000, nanosec=5), frame_id=FRAME_ID)
    msg = ts1.types[IMAGE_TYPE](header=header, height=HEIGHT, width=WIDTH, encoding="rgb8", is_bigendian=0,
                                step=WIDTH * 3, data=image.reshape(-1))
    roi = ts1.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    info = ts1.types[CAMERA_INFO_TYPE](header=header, height=HEIGHT, width=WIDTH, distortion_model="plumb_bob",
                                       D=np.zeros(5), K=K.reshape(-1), R=np.eye(3).reshape(-1),
                                       P=np.hstack([K, np.zeros((3, 1))]).reshape(-1), binning_x=0, binning_y=0,
                                       roi=roi)
    with Ros1Writer(path) as writer:
        for topic, message in (("/camera/image_raw", msg), ("/camera/camera_info", info)):
            connection = writer.add_connection(topic, message.__msgtype__, typestore=ts1)
            writer.write(connection, 1_600_000_000_000_000_010, ts1.serialize_ros1(message, message.__msgtype__))
    assert is_bag(path) and bag_storage(path) == "rosbag1"
    out = tmp_path / "out"
    with open_bag(path) as reader, BagWriter(out) as bag:
        assert find_image_topic(reader) == "/camera/image_raw"
        bag.add_copies(reader, reader.connections)
        for connection, log_time, raw in reader.messages():
            bag.copy(BagMessage(connection, log_time, raw))
    topics = read_bag(out)
    image_back = topics["/camera/image_raw"][0][1]
    assert header_of(image_back) == Header(1_600_000_000_000_000_005, FRAME_ID)
    np.testing.assert_array_equal(message_to_frame(image_back, IMAGE_TYPE).pixels, image)
    np.testing.assert_array_equal(topics["/camera/camera_info"][0][1].k, K.reshape(-1))
    # the copies carry the distribution's own ROS 2 definitions (lower-case k, no Header.seq)
    with open_bag(out) as reader:
        digests = {c.msgtype: c.digest for c in reader.connections}
    assert digests == {t: ros2_typestore().hash_rihs01(t) for t in (IMAGE_TYPE, CAMERA_INFO_TYPE)}
