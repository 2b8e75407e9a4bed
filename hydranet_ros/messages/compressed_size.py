"""Width and height of a JPEG or PNG from its header, without decoding a pixel.

The pixel limit must hold before decoding: a 1.2 MB PNG of 20000x20000 costs
3 GB and 15 s to decode. OpenCV has no header-only reader, so the two formats
a CompressedImage carries are read here: PNG's IHDR chunk (always first) and
JPEG's start-of-frame marker.
"""
from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# start-of-frame markers (baseline, progressive, lossless, arithmetic...); C4, C8 and CC are not frames
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# markers that stand alone, without a length: TEM and the restart markers
_JPEG_NO_LENGTH = {0x01} | set(range(0xD0, 0xD8))
_JPEG_SOS = 0xDA


class HeaderError(ValueError):
    """Data that is not a JPEG or PNG, or whose header holds no usable size."""


def compressed_size(data: bytes | memoryview) -> tuple[int, int]:
    """(width, height) of a PNG or JPEG image; HeaderError for anything else."""
    head = bytes(data[:8])
    if head == PNG_SIGNATURE:
        return _png_size(data)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    raise HeaderError("not a JPEG or PNG image")


def _png_size(data: bytes | memoryview) -> tuple[int, int]:
    # signature, then chunk length (4), type (4) and IHDR's width and height (4 each)
    if len(data) < 24 or bytes(data[12:16]) != b"IHDR":
        raise HeaderError("PNG without an IHDR header")
    width, height = struct.unpack(">II", bytes(data[16:24]))
    return width, height


def _jpeg_size(data: bytes | memoryview) -> tuple[int, int]:
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    pos, end = 2, len(view)
    while pos + 1 < end:
        if view[pos] != 0xFF:
            raise HeaderError(f"JPEG header is corrupt (no marker at byte {pos})")
        marker = view[pos + 1]
        if marker == 0xFF:        # fill byte before a marker
            pos += 1
            continue
        pos += 2
        if marker in _JPEG_NO_LENGTH:
            continue
        if pos + 2 > end:
            break
        length = (view[pos] << 8) | view[pos + 1]
        if marker in _JPEG_SOF:
            if pos + 7 > end:
                break
            height = (view[pos + 3] << 8) | view[pos + 4]
            width = (view[pos + 5] << 8) | view[pos + 6]
            if height == 0:
                # the height may follow the scan (a DNL marker); nothing safe can be said before decoding
                raise HeaderError("JPEG whose height is not in its header")
            return width, height
        if marker == _JPEG_SOS or length < 2:
            raise HeaderError("JPEG without a frame header before its image data")
        pos += length
    raise HeaderError("JPEG header is truncated")
