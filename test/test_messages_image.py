"""Camera frames through messages.image: every encoding, 8-bit frames passed on in place in
their own channel order, every bad frame, the pixel limit before decoding, and cv_bridge and
rosbags-image giving the same pixels."""
from __future__ import annotations

import array
import struct
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from hydranet_ros.messages import image as image_msgs
from hydranet_ros.messages.compressed_size import HeaderError, compressed_size
from hydranet_ros.messages.image import DecodedFrame, ImageDecodeError, decode_frame, image_fields, image_to_array

RGB = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def raw_msg(pixels: np.ndarray, array_encoding: str, **overrides) -> SimpleNamespace:
    fields = image_fields(np.ascontiguousarray(pixels), array_encoding)
    values = dict(height=fields.height, width=fields.width, encoding=fields.encoding,
                  is_bigendian=fields.is_bigendian, step=fields.step, data=fields.data.tobytes())
    values.update(overrides)
    return SimpleNamespace(**values)


def decode(msg) -> np.ndarray:
    """The frame as RGB, whatever order it was decoded in."""
    return decode_frame(msg, "raw", None).to_rgb()


def compressed(data, max_pixels: int | None = None) -> DecodedFrame:
    return decode_frame(SimpleNamespace(data=data, format="jpeg"), "compressed", max_pixels)


# ----- every encoding ---------------------------------------------------------------

@pytest.mark.parametrize("encoding, make", [
    ("rgb8", lambda rgb: rgb),
    ("bgr8", lambda rgb: rgb[:, :, ::-1]),
    ("rgba8", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])),
    ("bgra8", lambda rgb: np.dstack([rgb[:, :, ::-1], np.zeros(rgb.shape[:2], np.uint8)])),
    # 16-bit full scale is 65535 = 255 * 257: the libraries scale by 255/65535
    ("rgb16", lambda rgb: rgb.astype(np.uint16) * 257),
    ("bgr16", lambda rgb: (rgb.astype(np.uint16) * 257)[:, :, ::-1]),
    ("rgba16", lambda rgb: np.dstack([rgb.astype(np.uint16) * 257, np.full(rgb.shape[:2], 65535, np.uint16)])),
    ("bgra16", lambda rgb: np.dstack([(rgb.astype(np.uint16) * 257)[:, :, ::-1],
                                      np.zeros(rgb.shape[:2], np.uint16)])),
])
def test_colour_encodings_decode_to_the_same_rgb(encoding, make):
    assert np.array_equal(decode(raw_msg(make(RGB), encoding)), RGB)


@pytest.mark.parametrize("encoding, make", [
    ("mono8", lambda grey: grey), ("8UC1", lambda grey: grey),
    ("mono16", lambda grey: grey.astype(np.uint16) * 257), ("16UC1", lambda grey: grey.astype(np.uint16) * 257),
])
def test_grey_encodings_decode_to_grey_rgb(encoding, make):
    grey = RGB[:, :, 0]
    assert np.array_equal(decode(raw_msg(make(grey), encoding)), np.dstack([grey] * 3))


def test_sixteen_bits_round_to_the_nearest_eight_bit_value():
    # cv_bridge scales with OpenCV's rounding; truncating would turn 257 * 200 - 1 into 199
    values = np.array([[0, 128, 129, 257 * 200 - 1, 257 * 200 + 128, 65535]], np.uint16)
    out = decode(raw_msg(values, "mono16"))[:, :, 0]
    assert out.tolist() == [[0, 0, 1, 200, 200, 255]]


def test_big_endian_sixteen_bits():
    wide = RGB.astype(np.uint16) * 257
    msg = raw_msg(wide, "rgb16", is_bigendian=1, data=wide.astype(">u2").tobytes())
    assert np.array_equal(decode(msg), RGB)


@pytest.mark.parametrize("encoding, code", [
    ("yuv422", cv2.COLOR_YUV2RGB_UYVY), ("uyvy", cv2.COLOR_YUV2RGB_UYVY),
    ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2), ("yuyv", cv2.COLOR_YUV2RGB_YUY2),
])
def test_yuv422_encodings(encoding, code):
    yuv = np.random.default_rng(1).integers(16, 235, (48, 64, 2), dtype=np.uint8)
    assert np.array_equal(decode(raw_msg(yuv, encoding)), cv2.cvtColor(yuv, code))


@pytest.mark.parametrize("encoding, code", [
    # ROS names the pattern by its first row; OpenCV by the second row's middle pixels
    ("bayer_rggb8", cv2.COLOR_BayerBG2RGB), ("bayer_bggr8", cv2.COLOR_BayerRG2RGB),
    ("bayer_gbrg8", cv2.COLOR_BayerGR2RGB), ("bayer_grbg8", cv2.COLOR_BayerGB2RGB),
])
def test_bayer_encodings_are_demosaiced(encoding, code):
    raw = RGB[:, :, 1]
    assert np.array_equal(decode(raw_msg(raw, encoding)), cv2.cvtColor(raw, code))


def test_sixteen_bit_bayer():
    raw = RGB[:, :, 1].astype(np.uint16) * 257
    expected = cv2.cvtColor(RGB[:, :, 1], cv2.COLOR_BayerBG2RGB)
    assert np.array_equal(decode(raw_msg(raw, "bayer_rggb16")), expected)


def test_padded_rows_and_array_data_decode():
    fields = image_fields(RGB, "rgb8")
    padded = np.zeros((48, fields.step + 16), np.uint8)
    padded[:, :fields.step] = np.frombuffer(fields.data, np.uint8).reshape(48, -1)
    msg = raw_msg(RGB, "rgb8", step=fields.step + 16, data=array.array("B", padded.tobytes()))
    assert np.array_equal(decode(msg), RGB)
    assert np.array_equal(decode(raw_msg(RGB, "rgb8", data=np.frombuffer(fields.data, np.uint8))), RGB)


@pytest.mark.parametrize("encoding, channels, make", [
    ("rgb8", "rgb", lambda rgb: rgb),
    ("bgr8", "bgr", lambda rgb: rgb[:, :, ::-1]),
    ("rgba8", "rgba", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)])),
    ("bgra8", "bgra", lambda rgb: np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 9, np.uint8)])),
    ("mono8", "mono", lambda rgb: rgb[:, :, :1]),
    ("8UC1", "mono", lambda rgb: rgb[:, :, :1]),
])
@pytest.mark.parametrize("padding", [0, 16])
def test_eight_bit_frames_are_the_messages_bytes_in_their_own_order(monkeypatch, encoding, channels, make, padding):
    pixels = np.ascontiguousarray(make(RGB))
    rows = pixels.reshape(48, -1)
    padded = np.zeros((48, rows.shape[1] + padding), np.uint8)
    padded[:, :rows.shape[1]] = rows
    data = array.array("B", padded.tobytes())             # what rclpy hands over
    msg = raw_msg(pixels[:, :, 0] if channels == "mono" else pixels, "mono8" if channels == "mono" else encoding,
                  encoding=encoding, step=padded.shape[1], data=data)

    def no_converter(fields):
        raise AssertionError("an 8-bit frame went through the converter")

    monkeypatch.setattr(image_msgs, "_DEFAULT", image_msgs.Converter("none", no_converter, no_converter))
    frame = decode_frame(msg, "raw", None)
    assert frame.channels == channels and frame.encoding == ("mono8" if channels == "mono" else encoding)
    assert frame.pixels.shape == pixels.shape and np.array_equal(frame.pixels, pixels)
    assert np.shares_memory(frame.pixels, np.frombuffer(data, np.uint8))   # a view: no host pass


def test_other_encodings_are_converted_to_rgb():
    frame = decode_frame(raw_msg(RGB.astype(np.uint16) * 257, "bgr16"), "raw", None)
    assert frame.channels == "rgb" and np.array_equal(frame.pixels, RGB[:, :, ::-1])


def test_ground_truth_arrays_keep_their_encoding():
    depth = np.linspace(0.5, 80, 48 * 64, dtype=np.float32).reshape(48, 64)
    assert np.array_equal(image_to_array(raw_msg(depth, "32FC1")), depth)
    labels = (np.arange(48 * 64) % 7).astype(np.uint8).reshape(48, 64)
    assert np.array_equal(image_to_array(raw_msg(labels, "mono8")), labels)
    mm = np.full((48, 64), 4000, np.uint16)
    assert np.array_equal(image_to_array(raw_msg(mm, "16UC1")), mm)


# ----- bad frames -------------------------------------------------------------------

@pytest.mark.parametrize("overrides, fragment", [
    ({"encoding": "nv21"}, "unsupported encoding 'nv21'"),
    ({"encoding": "32FC1"}, "unsupported encoding '32FC1'"),    # depth is not a camera frame
    ({"encoding": "8UC3"}, "unsupported encoding '8UC3'"),      # no colour order: rgb8 or bgr8
    ({"data": b"\0" * 100}, "expected step x height"),
    ({"step": 10}, "step 10 is smaller"),
    ({"width": 0}, "empty image"),
    ({"height": 0}, "empty image"),
])
def test_bad_raw_frames_raise_with_the_reason(overrides, fragment):
    with pytest.raises(ImageDecodeError, match=fragment):
        decode(raw_msg(RGB, "rgb8", **overrides))


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_odd_width_yuv422_is_a_bad_frame(encoding):
    yuv = np.full((4, 63, 2), 128, np.uint8)
    with pytest.raises(ImageDecodeError, match=f"{encoding} .*even width, got 63"):
        decode(raw_msg(yuv, encoding))


def test_a_conversion_the_library_refuses_is_a_bad_frame(monkeypatch):
    def refuse(fields):
        raise cv2.error("unsupported layout")

    converter = image_msgs.Converter("broken", refuse, refuse)
    with pytest.raises(ImageDecodeError, match="rgb8 64x48 could not be converted to rgb8: error: unsupported"):
        image_msgs.image_to_rgb(raw_msg(RGB, "rgb8"), converter=converter)


def test_frame_over_the_pixel_limit_is_bad():
    with pytest.raises(ImageDecodeError, match="exceeds the limit of 3000"):
        decode_frame(raw_msg(RGB, "rgb8"), "raw", 3000)
    assert decode_frame(raw_msg(RGB, "rgb8"), "raw", 64 * 48).size == (64, 48)   # at the limit: fine
    ok, png = cv2.imencode(".png", RGB[:, :, ::-1])
    with pytest.raises(ImageDecodeError, match="exceeds the limit"):
        compressed(png.tobytes(), 3000)


# ----- compressed frames ------------------------------------------------------------

def png_header_claiming(width: int, height: int) -> bytes:
    """A real small PNG whose IHDR claims another size: what a decompression bomb looks like
    to a header reader (a 20000x20000 PNG can be 1.2 MB)."""
    ok, png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_oversize_compressed_frame_is_dropped_before_decoding(monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the size was checked")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(ImageDecodeError, match="image 20000x20000 exceeds the limit of 8294400 pixels"):
        compressed(png_header_claiming(20000, 20000), 8294400)


def test_compressed_frames_stay_in_opencvs_bgr():
    ok, png = cv2.imencode(".png", RGB[:, :, ::-1])
    frame = compressed(png.tobytes())
    assert frame.channels == "bgr" and np.array_equal(frame.pixels, RGB[:, :, ::-1])
    assert np.array_equal(frame.to_rgb(), RGB)
    ok, jpeg = cv2.imencode(".jpg", RGB[:, :, ::-1])
    assert compressed(jpeg.tobytes()).pixels.shape == RGB.shape
    ok, grey = cv2.imencode(".jpg", RGB[:, :, 0])
    assert compressed(grey).pixels.shape == RGB.shape
    with pytest.raises(ImageDecodeError, match="not a JPEG or PNG"):
        compressed(b"not a jpeg at all")
    with pytest.raises(ImageDecodeError, match="no data"):
        compressed(b"")
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        compressed(jpeg.tobytes()[:400])


@pytest.mark.parametrize("extension, params", [(".png", []), (".jpg", []),
                                               (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])])
@pytest.mark.parametrize("shape", [(48, 64, 3), (1, 7), (301, 300, 3)])
def test_size_from_the_header(extension, params, shape):
    ok, encoded = cv2.imencode(extension, np.zeros(shape, np.uint8), params)
    assert compressed_size(encoded.reshape(-1)) == (shape[1], shape[0])


@pytest.mark.parametrize("data, fragment", [
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "PNG without an IHDR"),
    (b"\xff\xd8\xff\xe0\0\x10JFIF", "truncated"),
    (b"\xff\xd8\xff\xda\0\x0c" + b"\0" * 12, "without a frame header"),
    (b"\xff\xd8\x00\x00", "corrupt"),
    (b"GIF89a......", "not a JPEG or PNG"),
])
def test_bad_headers(data, fragment):
    with pytest.raises(HeaderError, match=fragment):
        compressed_size(data)


# ----- cv_bridge and rosbags-image agree ----------------------------------------------

AGREEMENT_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "rgb16", "bgr16", "rgba16", "bgra16",
                       "mono16", "yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8",
                       "bayer_grbg8", "bayer_rggb16", "bayer_bggr16", "bayer_gbrg16", "bayer_grbg16")


def random_frame(encoding: str, seed: int) -> np.ndarray:
    """Full-range random pixels (16-bit ones not multiples of 257: rounding shows)."""
    bytes_per_channel, channels = image_msgs.pixel_layout(encoding)
    dtype = np.uint8 if bytes_per_channel == 1 else np.uint16
    shape = (48, 64) if channels == 1 else (48, 64, channels)
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def test_every_input_encoding_is_in_the_agreement_test():
    canonical = {image_msgs.ALIASES.get(e, e) for e in image_msgs.INPUT_ENCODINGS}
    assert canonical == set(AGREEMENT_ENCODINGS)


@pytest.mark.parametrize("encoding", AGREEMENT_ENCODINGS)
def test_cv_bridge_and_rosbags_image_give_identical_arrays(encoding):
    if "cv_bridge" not in image_msgs.available_converters():
        pytest.skip("cv_bridge is not installed (it comes with a ROS 2 installation: "
                    "source /opt/ros/<distro>/setup.bash); this runs under colcon test")
    msg = raw_msg(random_frame(encoding, seed=len(encoding)), encoding)
    bridge = image_msgs.image_to_rgb(msg, converter=image_msgs.CONVERTERS["cv_bridge"])
    twin = image_msgs.image_to_rgb(msg, converter=image_msgs.CONVERTERS["rosbags-image"])
    assert bridge.dtype == twin.dtype == np.uint8 and bridge.shape == twin.shape == (48, 64, 3)
    np.testing.assert_array_equal(bridge, twin)


def test_the_converter_is_cv_bridge_where_installed():
    names = image_msgs.available_converters()
    assert "rosbags-image" in names   # a declared dependency: always here
    assert image_msgs.default_converter().name == names[0]
    assert names[0] == ("cv_bridge" if "cv_bridge" in names else "rosbags-image")
