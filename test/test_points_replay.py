"""hydranet_replay --outputs ...,points: the labelled cloud in the output bag, from the bag's camera_info."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from replay_helpers import FRAME_ID, HEIGHT, START_NS, WIDTH, K, make_images, read_bag, write_camera_bag

from hydranet_ros.inference.points import DEFAULT_STRIDE
from hydranet_ros.inference.predictor import load_predictor
from hydranet_ros.messages.image import image_to_array
from hydranet_ros.messages.point_cloud import cloud_array
from hydranet_ros.messages.stamps import header_of
from hydranet_ros.offline.bagio import camera_info_message
from hydranet_ros.offline.replay import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args] + ["--device", "cpu", "--backend", "eager", "--no-progress", "--warmup", "0"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def unpack_rgb(rgb: np.ndarray) -> np.ndarray:
    bits = rgb.view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1)


def test_organized_cloud_with_class_colours_follows_the_depth_image_and_k(tmp_path, capsys, weights_file):
    source, out = tmp_path / "in", tmp_path / "out"
    images = make_images(2)
    headers = write_camera_bag(source, images)
    predictor = load_predictor(weights_file, device="cpu", backend="eager")
    limit = float(np.median(predictor.predict(images[0], ["depth"]).depth[::2, ::2]))
    code, stdout, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--outputs", "depth,labels,points",
                               "--points-stride", 2, "--points-organized", "--points-colour", "class",
                               "--points-max-depth", limit, "--points-exclude", "sky")
    assert code == 0, stderr
    bag = read_bag(out)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    rows, cols = np.mgrid[0:HEIGHT:2, 0:WIDTH:2]
    palette = np.asarray(predictor.card.palette)
    for (_, msg), (_, depth_msg), (_, labels_msg), header in zip(bag["/camera/points"], bag["/camera/depth/image"],
                                                                 bag["/camera/segmentation/image"], headers):
        assert header_of(msg) == header and header.frame_id == FRAME_ID   # the input's optical frame
        assert (msg.height, msg.width, msg.is_dense) == (HEIGHT // 2, WIDTH // 2, False)
        cloud = cloud_array(msg)
        depth, labels = image_to_array(depth_msg)[::2, ::2], image_to_array(labels_msg)[::2, ::2]
        kept = (depth <= limit) & (labels != 0)                      # sky is class 0
        assert 0 < kept.sum() < kept.size
        assert np.isnan(cloud["z"][~kept]).all()
        np.testing.assert_array_equal(cloud["z"][kept], depth[kept])  # z is the depth image at its pixel
        np.testing.assert_allclose(cloud["x"][kept], ((cols - cx) * depth / fx)[kept], rtol=1e-6)
        np.testing.assert_allclose(cloud["y"][kept], ((rows - cy) * depth / fy)[kept], rtol=1e-6)
        np.testing.assert_array_equal(cloud["label"][kept], labels[kept])
        np.testing.assert_array_equal(unpack_rgb(cloud["rgb"][kept]), palette[labels[kept]])
    report = json.loads((tmp_path / "out_report.json").read_text())["points"]
    assert report["frames_with_points"] == 2 and report["frames_without_points"] == 0
    assert report["exclude_ids"] == [0] and report["organized"] is True
    assert "points: /camera/points: 2 frames with points" in stdout


KITTI_BAG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti91_jpeg_db3"
KITTI_FRAMES = 2


@pytest.mark.skipif(not KITTI_BAG.is_dir(), reason=f"the shared KITTI bag {KITTI_BAG} is absent")
def test_the_kitti_bag_gets_a_cloud_per_frame_from_its_camera_info(tmp_path, capsys):
    """A real camera: 1242x375 JPEG frames with their CameraInfo, the shipped weights, the default stride."""
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, KITTI_BAG, "-o", out, "--outputs", "depth,points",
                               "--max-frames", KITTI_FRAMES)
    assert code == 0, stderr
    source = read_bag(KITTI_BAG)
    frames = [header_of(msg) for _, msg in source["/camera/image_raw/compressed"][:KITTI_FRAMES]]
    infos = {header_of(msg).stamp_ns: msg for _, msg in source["/camera/camera_info"]}
    bag = read_bag(out)
    clouds, depths = bag["/camera/points"], bag["/camera/depth/image"]
    assert len(clouds) == len(depths) == KITTI_FRAMES
    for header, (_, msg), (_, depth_msg) in zip(frames, clouds, depths):
        assert header_of(msg) == header_of(depth_msg) == header        # the frame's stamp and optical frame
        assert [field.name for field in msg.fields] == ["x", "y", "z", "rgb", "label"]
        info = infos[header.stamp_ns]
        fx, cx, fy, cy = info.k[0], info.k[2], info.k[4], info.k[5]
        depth = image_to_array(depth_msg)[::DEFAULT_STRIDE, ::DEFAULT_STRIDE]
        rows, cols = np.mgrid[0:info.height:DEFAULT_STRIDE, 0:info.width:DEFAULT_STRIDE]
        kept = np.isfinite(depth) & (depth > 0)         # dense: only the pixels with a depth, in raster order
        cloud = cloud_array(msg).reshape(-1)
        assert (msg.height, msg.width) == (1, kept.sum()) and 20_000 < kept.sum() <= depth.size
        np.testing.assert_array_equal(cloud["z"], depth[kept])          # z is the depth image at its pixel
        np.testing.assert_allclose(cloud["x"], ((cols - cx) * depth / fx)[kept], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(cloud["y"], ((rows - cy) * depth / fy)[kept], rtol=1e-5, atol=1e-5)
        assert np.unique(cloud["label"]).size > 1                       # a street has more than one class
    assert f"points: /camera/points: {KITTI_FRAMES} frames with points" in stdout


def test_bad_camera_info_costs_only_that_frames_points(tmp_path, capsys, weights_file):
    source, out = tmp_path / "in", tmp_path / "out"
    good, no_focal = K, np.zeros((3, 3))
    cameras = [(good, WIDTH, HEIGHT), (no_focal, WIDTH, HEIGHT), (good, 2 * WIDTH, 2 * HEIGHT)]

    def camera_info_before_the_image(bag, i, header, log_time):
        k, width, height = cameras[i]
        bag.write("/camera/camera_info", camera_info_message(bag.typestore, header, width, height, k), log_time - 500)

    write_camera_bag(source, make_images(3), camera_info=False, extra=camera_info_before_the_image)
    code, stdout, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--outputs", "depth,points")
    assert code == 0, stderr
    bag = read_bag(out)
    assert len(bag["/camera/depth/image"]) == 3                    # every frame keeps its other outputs
    assert [header_of(m).stamp_ns for _, m in bag["/camera/points"]] == [START_NS]
    report = json.loads((tmp_path / "out_report.json").read_text())["points"]
    assert report["frames_with_points"] == 1 and report["frames_without_points"] == 2
    assert report["without_points_reasons"] == {
        "camera_info has no usable focal length (fx=0, fy=0); is the camera calibrated?": 1,
        f"camera_info is for {2 * WIDTH}x{2 * HEIGHT} images, the frame is {WIDTH}x{HEIGHT}": 1}
    assert "1 frame(s) without points: camera_info has no usable focal length" in stdout

    # no camera_info in the bag at all: the frames still run, the report says why there are no points
    write_camera_bag(tmp_path / "no_info", make_images(3), camera_info=False)
    code, stdout, stderr = run(capsys, tmp_path / "no_info", "--weights", weights_file, "-o", tmp_path / "out2",
                               "--outputs", "depth,points")
    assert code == 0, stderr
    assert "/camera/points" not in read_bag(tmp_path / "out2")
    report = json.loads((tmp_path / "out2_report.json").read_text())["points"]
    assert report["without_points_reasons"] == {
        "the input has no CameraInfo on /camera/camera_info (name one with --camera-info-topic)": 3}


def test_excluded_class_names_are_checked_against_the_model_card(tmp_path, capsys, weights_file):
    source, out = tmp_path / "in", tmp_path / "out"
    write_camera_bag(source, make_images(1))
    code, _, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--outputs", "points",
                          "--points-exclude", "road,person,pole")
    assert code == 1
    assert stderr.strip() == ("hydranet_replay: error: --points-exclude: unknown class name(s) 'person', 'pole'; "
                              "the model's classes are sky, building, road, sidewalk, vegetation, car")
    assert not out.exists()


@pytest.mark.parametrize("flag, value", [("--points-stride", "0"), ("--points-max-depth", "-2"),
                                         ("--points-colour", "depth")])
def test_bad_point_flags_are_argparse_errors(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--outputs", "points", flag, value])
    assert exit_info.value.code == 2 and flag in capsys.readouterr().err
