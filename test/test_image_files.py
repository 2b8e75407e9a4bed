"""The shared image-file reader and writer: every unreadable file is an ImageFileError naming
it; a written image appears whole or not at all."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from hydranet_ros.common.image_files import (ImageFileError, image_files, is_image_file, read_label_ids, read_rgb,
                                             write_image)


@pytest.mark.parametrize("name, content, fragment", [
    ("empty.png", b"", "empty file (0 bytes)"),          # cv2.imdecode asserts on an empty buffer
    ("garbage.jpg", b"not a jpeg", "not a readable image"),
    ("truncated.png", None, "not a readable image"),
])
def test_unreadable_files_are_named(tmp_path, name, content, fragment):
    path = tmp_path / name
    if content is None:
        ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
        content = png.tobytes()[:20]
    path.write_bytes(content)
    for read in (read_rgb, read_label_ids):
        with pytest.raises(ImageFileError, match=re.escape(fragment)) as info:
            read(path)
        assert info.value.source == str(path)


def test_missing_file_and_suffixes(tmp_path):
    with pytest.raises(ImageFileError, match="file not found"):
        read_rgb(tmp_path / "nope.png")
    for name in ("a.PNG", "b.tif", "c.webp", ".hidden.png", "d.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in image_files(tmp_path)] == ["a.PNG", "b.tif", "c.webp"]
    assert not is_image_file(tmp_path / ".hidden.png")


def test_written_images_read_back_and_nothing_is_left_on_failure(tmp_path):
    labels = np.arange(48, dtype=np.uint8).reshape(6, 8)
    write_image(tmp_path / "out" / "labels.png", labels)   # its folder is made
    np.testing.assert_array_equal(read_label_ids(tmp_path / "out" / "labels.png"), labels)
    with pytest.raises(OSError, match="could not encode labels.nope"):
        write_image(tmp_path / "labels.nope", labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]   # no file, no temporary left over
