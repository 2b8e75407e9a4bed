import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from replay_helpers import HEIGHT, WIDTH, K, count_video_frames, make_images, read_bag, write_camera_bag, write_video

from hydranet_ros.inference.predictor import OUTPUTS, Predictor, load_predictor
from hydranet_ros.common.pinhole import PinholeK
from hydranet_ros.messages.label_info import LABEL_INFO_TYPE, VISION_CLASS_TYPE, label_entries, label_info_message
from hydranet_ros.messages.point_cloud import cloud_array
from hydranet_ros.messages.stamps import header_of
from hydranet_ros.messages.topics import OUTPUT_SPECS
from hydranet_ros.messages.image import image_to_array
from hydranet_ros.node.parameters import PARAMS_BY_NAME
from hydranet_ros.offline.bagio import image_message, make_header, message_to_frame
from hydranet_ros.offline.evaluation import Evaluation
from hydranet_ros.offline.replay import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def predictor(weights_file) -> Predictor:
    return load_predictor(weights_file, device="cpu")


def run(capsys, *args) -> tuple[int, str, str]:
    """main() on the CPU; no warm-up unless asked: on 64x48 frames it would only double the test's time."""
    extra = [] if "--warmup" in args else ["--warmup", "0"]
    code = main([str(a) for a in args] + ["--device", "cpu", "--no-progress"] + extra)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def visible(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("encoding, storage", [("rgb8", "sqlite3"), ("bgr8", "mcap"), ("mono8", "sqlite3"),
                                               ("jpeg", "mcap")])
def test_bag_replay_writes_the_nodes_topics(tmp_path, capsys, weights_file, predictor, encoding, storage):
    source, out = tmp_path / "in", tmp_path / "out"
    headers = write_camera_bag(source, make_images(2), encoding, storage)
    code, stdout, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--outputs", "all",
                               "--report", tmp_path / "report.json")
    assert code == 0, stderr
    inputs, outputs = read_bag(source), read_bag(out)
    image_topic = "/camera/image_raw/compressed" if encoding == "jpeg" else "/camera/image_raw"
    expected_topics = {image_topic, "/camera/camera_info", "/camera/depth/camera_info", "/camera/points",
                       "/camera/segmentation/label_info"} | {"/camera/" + spec.topic for spec in OUTPUT_SPECS}
    assert set(outputs) == expected_topics
    assert (out / f"out.{'db3' if storage == 'sqlite3' else 'mcap'}").is_file()  # same storage as the input
    # the recording is copied unchanged
    assert len(outputs[image_topic]) == len(outputs["/camera/camera_info"]) == 2
    assert [t for t, _ in outputs[image_topic]] == [t for t, _ in inputs[image_topic]]
    for spec in OUTPUT_SPECS:
        messages = outputs["/camera/" + spec.topic]
        assert len(messages) == 2
        for (log_time, msg), header, (in_log_time, _) in zip(messages, headers, inputs[image_topic]):
            assert msg.encoding == spec.encoding and (msg.width, msg.height) == (WIDTH, HEIGHT)
            assert header_of(msg) == header and log_time == in_log_time
    for (_, original), (_, depth), (_, labels), (_, overlay) in zip(
            inputs[image_topic], outputs["/camera/depth/image"], outputs["/camera/segmentation/image"],
            outputs["/camera/overlay/image"]):
        frame = message_to_frame(original, original.__msgtype__)   # in its own order, as replay and the node take it
        expected = predictor.predict(frame.pixels, OUTPUTS, frame.channels)
        np.testing.assert_allclose(image_to_array(depth), expected.depth, rtol=1e-6)
        np.testing.assert_array_equal(image_to_array(labels), expected.labels)
        np.testing.assert_array_equal(image_to_array(overlay), expected.overlay)
    for (_, original), (log_time, points), header in zip(inputs[image_topic], outputs["/camera/points"], headers):
        # 'all' includes the point cloud: from the bag's camera_info, default options (stride 4, dense)
        frame = message_to_frame(original, original.__msgtype__)
        expected = predictor.predict(frame.pixels, ["points"], frame.channels, camera=PinholeK.from_k(K, WIDTH, HEIGHT))
        assert header_of(points) == header and (points.height, points.width) == (1, len(expected.points))
        assert cloud_array(points)[0].tobytes() == expected.points.tobytes()
    for (_, info), header in zip(outputs["/camera/depth/camera_info"], headers):
        assert header_of(info) == header
        np.testing.assert_array_equal(info.k, K.reshape(-1))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["frames"] == {"read": 2, "processed": 2, "skipped": 0, "skipped_frames": []}
    assert report["device"] == "cpu" and report["precision"] == "fp32"
    for stage in ("read", "decode", "predict", "encode", "write"):
        assert report["speed"]["stages_ms"][stage]["count"] == 2
        assert set(report["speed"]["stages_ms"][stage]) >= {"p50_ms", "p95_ms", "p99_ms"}
    assert report["speed"]["fps"] > 0
    assert "p95" in stdout and "FPS" in stdout


def test_output_namespace_and_output_selection(tmp_path, capsys, weights_file):
    source, out = tmp_path / "in", tmp_path / "out"
    write_camera_bag(source, make_images(1), camera_info=False)
    code, _, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--outputs", "depth,labels",
                          "--output-namespace", "/hydranet")
    assert code == 0, stderr
    assert set(read_bag(out)) == {"/camera/image_raw", "/hydranet/depth/image", "/hydranet/segmentation/image",
                                  "/hydranet/segmentation/label_info"}


def test_evaluation_against_the_prediction_itself_is_perfect(tmp_path, capsys, weights_file, predictor):
    source, images = tmp_path / "in", make_images(2, seed=1)
    predictions = [predictor.predict(image, ("depth", "labels")) for image in images]

    def ground_truth(bag, i, header, log_time):
        # logged before and after the image, to check that matching goes by stamp, not by order
        bag.write("/camera/gt/depth", image_message(bag.typestore, predictions[i].depth, "32FC1", header),
                  log_time - 500)
        bag.write("/camera/gt/labels", image_message(bag.typestore, predictions[i].labels, "mono8", header),
                  log_time + 500)

    write_camera_bag(source, images, extra=ground_truth)
    report_path = tmp_path / "eval.json"
    code, stdout, stderr = run(capsys, source, "--weights", weights_file, "--gt-depth-topic", "/camera/gt/depth",
                               "--gt-labels-topic", "/camera/gt/labels", "--report", report_path)
    assert code == 0, stderr
    evaluation = json.loads(report_path.read_text())["evaluation"]
    assert evaluation["frames_evaluated"] == 2 and evaluation["frames_without_ground_truth"] == 0
    assert evaluation["segmentation"]["miou"] == pytest.approx(1.0)
    assert evaluation["segmentation"]["pixel_accuracy"] == pytest.approx(1.0)
    assert evaluation["depth"]["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert evaluation["depth"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert evaluation["depth"]["delta1"] == pytest.approx(1.0)
    with open(tmp_path / "eval_frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["index"]) for r in rows] == [0, 1]
    assert all(float(r["miou"]) == pytest.approx(1.0) and float(r["rmse"]) == pytest.approx(0.0, abs=1e-6)
               for r in rows)
    assert "mIoU 1.0000" in stdout


def test_evaluation_hand_computed_case():
    evaluation = Evaluation(("depth", "labels"), num_classes=3, ignore_index=255, class_names=["a", "b", "c"])
    pred_depth = np.full((2, 2), 2.0, np.float32)
    gt_depth = np.array([[2.0, 2.0], [4.0, 0.0]], np.float32)  # 0 = no measurement
    pred_labels = np.array([[0, 0], [1, 1]], np.uint8)
    gt_labels = np.array([[0, 1], [1, 255]], np.uint8)           # 255 = ignored
    evaluation.add_truth("labels", 7, gt_labels)
    evaluation.add_prediction(0, "f0", 7, pred_depth, pred_labels)
    evaluation.add_prediction(1, "f1", 8, pred_depth, pred_labels)  # never gets ground truth
    evaluation.add_truth("depth", 7, gt_depth)
    summary = evaluation.finish()
    # pixel (0,1) is b predicted as a: a has TP 1, FP 1 -> IoU 1/2; b has TP 1, FN 1 -> 1/2
    assert summary["segmentation"]["miou"] == pytest.approx(0.5)
    assert summary["segmentation"]["pixel_accuracy"] == pytest.approx(2 / 3)
    # errors 0, 0, -2 over three valid pixels
    assert summary["depth"]["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert summary["depth"]["abs_rel"] == pytest.approx(0.5 / 3)
    assert summary["depth"]["delta1"] == pytest.approx(2 / 3)
    assert summary["frames_evaluated"] == 1 and summary["frames_without_ground_truth"] == 1
    assert evaluation.rows[0]["miou"] == pytest.approx(0.5) and evaluation.rows[0]["name"] == "f0"


def test_16bit_ground_truth_depth_is_scaled(tmp_path, capsys, weights_file, predictor):
    source, image = tmp_path / "in", make_images(1)[0]
    depth_mm = np.full((HEIGHT, WIDTH), 4000, np.uint16)

    def ground_truth(bag, i, header, log_time):
        bag.write("/gt/depth", image_message(bag.typestore, depth_mm, "16UC1", header), log_time)

    write_camera_bag(source, [image], extra=ground_truth)
    for scale, gt in ((0.001, 4.0), (0.0005, 2.0)):
        report = tmp_path / f"r{scale}.json"
        code, _, stderr = run(capsys, source, "--weights", weights_file, "--gt-depth-topic", "/gt/depth",
                              "--gt-depth-scale", scale, "--report", report)
        assert code == 0, stderr
        pred = predictor.predict(image, ("depth",)).depth.astype(np.float64)
        expected = np.sqrt(np.mean((np.maximum(pred, 1e-3) - gt) ** 2))
        assert json.loads(report.read_text())["evaluation"]["depth"]["rmse"] == pytest.approx(expected, rel=1e-5)


def test_corrupt_and_unsupported_frames_are_skipped_and_counted(tmp_path, capsys, weights_file):
    source, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"

    def unsupported(bag, i, header, log_time):
        if i == 3:
            msg = image_message(bag.typestore, np.zeros((HEIGHT, WIDTH), np.uint8), "mono8", header)
            msg.encoding = "nv21"
            bag.write("/camera/image_raw", msg, log_time + 1)

    write_camera_bag(source, make_images(4), corrupt={1}, extra=unsupported)
    code, stdout, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--report", report)
    assert code == 0, stderr
    frames = json.loads(report.read_text())["frames"]
    assert frames["read"] == 5 and frames["processed"] == 3 and frames["skipped"] == 2
    reasons = [s["reason"] for s in frames["skipped_frames"]]
    assert "deserialis" in reasons[0] and "nv21" in reasons[1]
    outputs = read_bag(out)
    assert len(outputs["/camera/image_raw"]) == 5  # the recording is copied whole, bad frames included
    assert len(outputs["/camera/depth/image"]) == 3
    assert "2 skipped" in stdout


def test_missing_topic_lists_the_topics(tmp_path, capsys, weights_file):
    source = tmp_path / "in"
    write_camera_bag(source, make_images(1))
    code, _, stderr = run(capsys, source, "--weights", weights_file, "--topic", "/nope")
    assert code == 1
    assert "'/nope' is not in the bag" in stderr and "/camera/camera_info" in stderr and "/camera/image_raw" in stderr
    assert "Traceback" not in stderr


def test_several_cameras_need_topic(tmp_path, capsys, weights_file):
    source = tmp_path / "in"

    def second(bag, i, header, log_time):
        bag.write("/left/image_raw", image_message(bag.typestore, make_images(1)[0], "rgb8", header), log_time)

    write_camera_bag(source, make_images(1), extra=second)
    code, _, stderr = run(capsys, source, "--weights", weights_file)
    assert code == 1 and "--topic" in stderr and "/left/image_raw" in stderr
    code, _, stderr = run(capsys, source, "--weights", weights_file, "--topic", "/left/image_raw")
    assert code == 0, stderr


def test_output_bag_announces_the_classes_once_as_the_node_does(tmp_path, capsys, weights_file, predictor):
    # the node latches them at start unless told not to, whatever images it publishes, so a
    # recording of it has them before its first frame; replay logs them with the first frame
    assert PARAMS_BY_NAME["publish_label_info"].default is True
    source, out = tmp_path / "in", tmp_path / "out"
    headers = write_camera_bag(source, make_images(3), topic="/front/image_raw", camera_info=False)
    code, _, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--outputs", "depth")
    assert code == 0, stderr
    outputs = read_bag(out)
    [(log_time, msg)] = outputs["/front/segmentation/label_info"]
    assert msg.__msgtype__ == LABEL_INFO_TYPE and log_time == outputs["/front/image_raw"][0][0]
    assert header_of(msg).stamp_ns == headers[0].stamp_ns and header_of(msg).frame_id == ""   # as the node's
    names = list(predictor.card.class_names)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [*enumerate(names), (255, "unlabeled")]
    assert msg.threshold == 0.0


def test_input_with_the_label_info_topic_needs_another_namespace(tmp_path, capsys, weights_file, predictor):
    def label_info(bag, i, header, log_time):
        types = bag.typestore.types
        entries = label_entries(predictor.card.class_names, predictor.card.palette)
        bag.write("/camera/segmentation/label_info", label_info_message(
            types[LABEL_INFO_TYPE], types[VISION_CLASS_TYPE], make_header(bag.typestore, header), entries), log_time)

    source, out = tmp_path / "in", tmp_path / "out"
    write_camera_bag(source, make_images(1), camera_info=False, extra=label_info)
    code, _, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--outputs", "depth")
    assert code == 1 and "already has /camera/segmentation/label_info" in stderr, stderr


def test_replaying_an_output_bag_finds_the_camera_again(tmp_path, capsys, weights_file):
    source, first, second = tmp_path / "in", tmp_path / "first", tmp_path / "second"
    write_camera_bag(source, make_images(1))
    assert run(capsys, source, "--weights", weights_file, "-o", first)[0] == 0
    code, _, stderr = run(capsys, first, "--weights", weights_file, "-o", second)
    assert code == 1 and "already has /camera/depth/camera_info" in stderr and "--output-namespace" in stderr
    code, _, stderr = run(capsys, first, "--weights", weights_file, "-o", second, "--output-namespace", "/v2")
    assert code == 0, stderr


def test_existing_output_needs_overwrite(tmp_path, capsys, weights_file):
    source, out = tmp_path / "in", tmp_path / "out"
    write_camera_bag(source, make_images(1))
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = run(capsys, source, "--weights", weights_file, "-o", out)
    assert code == 1 and "exists; pass --overwrite" in stderr
    assert (out / "keep.txt").read_text() == "mine"
    code, _, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--overwrite")
    assert code == 0, stderr
    assert not (out / "keep.txt").exists() and (out / "metadata.yaml").is_file()
    assert visible(tmp_path) == ["in", "out", "out_report.json", "random_kitti6.safetensors"]


@pytest.mark.parametrize("failure", [RuntimeError("device lost"), KeyboardInterrupt()])
def test_failure_midway_leaves_no_output(tmp_path, capsys, weights_file, monkeypatch, failure):
    source, out = tmp_path / "in", tmp_path / "out"
    write_camera_bag(source, make_images(3))
    calls = []
    original = Predictor.predict

    def flaky(self, image, outputs=("depth",), *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # warm-up is separate: this is the second real frame
            raise failure
        return original(self, image, outputs, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", flaky)
    args = [source, "--weights", weights_file, "-o", out, "--video", tmp_path / "v.mp4", "--report",
            tmp_path / "r.json", "--warmup", 0]
    if isinstance(failure, KeyboardInterrupt):
        assert run(capsys, *args)[0] == 130
    else:
        with pytest.raises(RuntimeError, match="device lost"):
            run(capsys, *args)
    assert visible(tmp_path) == ["in", "random_kitti6.safetensors"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_video_input_to_bag_and_video(tmp_path, capsys, weights_file):
    clip, out, video = tmp_path / "clip.mp4", tmp_path / "out", tmp_path / "side.mp4"
    write_video(clip, make_images(4), fps=5)
    code, _, stderr = run(capsys, clip, "--weights", weights_file, "-o", out, "--video", video,
                          "--topic", "/front/image_raw/compressed", "--frame-id", "front")
    assert code == 0, stderr
    outputs = read_bag(out)
    assert len(outputs["/front/image_raw/compressed"]) == 4 and len(outputs["/front/depth/image"]) == 4
    stamps = [header_of(m).stamp_ns for _, m in outputs["/front/depth/image"]]
    assert stamps == [0, 200_000_000, 400_000_000, 600_000_000]  # the clip's 5 fps
    assert header_of(outputs["/front/overlay/image"][0][1]).frame_id == "front"
    assert count_video_frames(video) == (4, 2 * WIDTH, HEIGHT)


def test_folder_input_with_ground_truth_folders(tmp_path, capsys, weights_file, predictor):
    images_dir, depth_dir, labels_dir = (tmp_path / n for n in ("images", "depth", "labels"))
    for d in (images_dir, depth_dir, labels_dir):
        d.mkdir()
    images = make_images(3, seed=2)
    for i, image in enumerate(images):
        cv2.imwrite(str(images_dir / f"frame_{i:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if i != 1:  # frame 1 has no ground truth
            prediction = predictor.predict(image, ("depth", "labels"))
            np.save(depth_dir / f"frame_{i:03d}.npy", prediction.depth)
            cv2.imwrite(str(labels_dir / f"frame_{i:03d}.png"), prediction.labels)
    (images_dir / "notes.txt").write_text("not an image")
    png_dir, per_frame = tmp_path / "png", tmp_path / "frames.jsonl"
    code, _, stderr = run(capsys, images_dir, "--weights", weights_file, "--gt-depth-dir", depth_dir,
                          "--gt-labels-dir", labels_dir, "--png-dir", png_dir, "--report", tmp_path / "r.json",
                          "--per-frame", per_frame)
    assert code == 0, stderr
    evaluation = json.loads((tmp_path / "r.json").read_text())["evaluation"]
    assert evaluation["frames_evaluated"] == 2 and evaluation["frames_without_ground_truth"] == 1
    assert evaluation["segmentation"]["miou"] == pytest.approx(1.0)
    rows = [json.loads(line) for line in per_frame.read_text().splitlines()]
    assert [r["name"] for r in rows] == ["frame_000", "frame_002"]
    assert sorted(p.name for p in png_dir.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert cv2.imread(str(png_dir / "000000.png")).shape == (HEIGHT, 2 * WIDTH, 3)


def test_missing_input_and_no_input(tmp_path, capsys, weights_file):
    code, _, stderr = run(capsys, tmp_path / "nothing", "--weights", weights_file)
    assert code == 1 and "input not found" in stderr
    code, _, stderr = run(capsys, "--weights", weights_file)
    assert code == 1 and "--demo" in stderr


class _Frame:
    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.depth = np.linspace(1.0, 30.0, image.shape[0] * image.shape[1], dtype=np.float32).reshape(image.shape[:2])
        self.labels = (np.arange(image.shape[0] * image.shape[1]) % 6).astype(np.uint8).reshape(image.shape[:2])
        self.K = K


def test_demo_writes_bags_video_and_report(tmp_path, capsys, weights_file, monkeypatch):
    from hydranet_ros.offline import demo

    monkeypatch.setattr(demo, "render_demo_frames", lambda n, w, h, seed: (_Frame(i) for i in make_images(n)))
    directory = tmp_path / "demo"
    code, stdout, stderr = run(capsys, "--demo", "--output-dir", directory, "--weights", weights_file,
                               "--frames", 3, "--width", WIDTH, "--height", HEIGHT)
    assert code == 0, stderr
    assert visible(directory) == ["report.json", "report_frames.csv", "synthetic_street",
                                  "synthetic_street_hydranet", "synthetic_street_hydranet.mp4"]
    inputs = read_bag(directory / "synthetic_street")
    assert set(inputs) == {"/camera/image_raw/compressed", "/camera/camera_info", "/camera/ground_truth/depth",
                           "/camera/ground_truth/labels"}
    assert len(read_bag(directory / "synthetic_street_hydranet")["/camera/depth/image"]) == 3
    report = json.loads((directory / "report.json").read_text())
    assert report["evaluation"]["frames_evaluated"] == 3
    # backend auto on the CPU: the demo runs ONNX Runtime (a regular dependency), not eager
    assert (report["device"], report["backend"]) == ("cpu", "onnxruntime")
    assert "FPS" in stdout and str(directory / "synthetic_street_hydranet.mp4") in stdout
    # a second run needs --overwrite
    assert run(capsys, "--demo", "--output-dir", directory, "--weights", weights_file, "--frames", 1)[0] == 1


def test_demo_without_weights_names_the_path(tmp_path, capsys, monkeypatch):
    from hydranet_ros.inference import shipped

    missing = tmp_path / "share" / shipped.SHIPPED_WEIGHTS
    monkeypatch.setattr(shipped, "shipped_weights_candidates", lambda: [missing])
    code, _, stderr = run(capsys, "--demo", "--output-dir", tmp_path / "demo")
    assert code == 1 and str(missing) in stderr and "Traceback" not in stderr
    assert not (tmp_path / "demo").exists()


def test_demo_renders_with_the_synthetic_generator(tmp_path, capsys, weights_file):
    directory = tmp_path / "demo"
    code, _, stderr = run(capsys, "--demo", "--output-dir", directory, "--weights", weights_file,
                          "--frames", 2, "--width", WIDTH, "--height", HEIGHT)
    assert code == 0, stderr
    assert json.loads((directory / "report.json").read_text())["frames"]["processed"] == 2


def test_no_decodable_frame_is_an_error_and_leaves_no_output(tmp_path, capsys, weights_file):
    source, out, video = tmp_path / "in", tmp_path / "out", tmp_path / "v.mp4"
    write_camera_bag(source, make_images(1), corrupt={0})
    code, _, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--video", video)
    assert code == 1 and "none of the 1 frame(s)" in stderr and "deserialis" in stderr
    assert "Traceback" not in stderr
    assert visible(tmp_path) == ["in", "random_kitti6.safetensors"]


def test_folder_of_unreadable_images_is_an_error(tmp_path, capsys, weights_file):
    images = tmp_path / "images"
    images.mkdir()
    (images / "empty.png").write_bytes(b"")            # cv2.imdecode asserts on an empty buffer
    (images / "garbage.jpg").write_bytes(b"not a jpeg")
    code, _, stderr = run(capsys, images, "--weights", weights_file, "-o", tmp_path / "out")
    assert code == 1 and "none of the 2 frame(s)" in stderr and "empty.png: empty file (0 bytes)" in stderr
    assert "Traceback" not in stderr and visible(tmp_path) == ["images", "random_kitti6.safetensors"]


def test_empty_image_in_a_folder_is_skipped(tmp_path, capsys, weights_file):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), make_images(1)[0])
    (images / "b.png").write_bytes(b"")
    code, _, stderr = run(capsys, images, "--weights", weights_file, "--report", tmp_path / "r.json")
    assert code == 0, stderr
    frames = json.loads((tmp_path / "r.json").read_text())["frames"]
    assert frames["processed"] == 1 and frames["skipped"] == 1
    assert "b.png: empty file (0 bytes)" in frames["skipped_frames"][0]["reason"]


def test_odd_width_yuv422_frame_is_a_bad_frame(tmp_path, capsys, weights_file):
    source, report = tmp_path / "in", tmp_path / "r.json"

    def odd_yuv(bag, i, header, log_time):
        msg = image_message(bag.typestore, np.full((HEIGHT, WIDTH - 1, 2), 128, np.uint8), "yuv422", header)
        bag.write("/camera/image_raw", msg, log_time + 1)

    write_camera_bag(source, make_images(1), extra=odd_yuv)
    code, _, stderr = run(capsys, source, "--weights", weights_file, "--report", report)
    assert code == 0, stderr
    frames = json.loads(report.read_text())["frames"]
    assert frames["processed"] == 1 and frames["skipped"] == 1
    assert f"needs an even width, got {WIDTH - 1}" in frames["skipped_frames"][0]["reason"]


@pytest.mark.parametrize("metadata, fragment", [
    (b"\xff\xfe\x00garbage\x80\x81", "UnicodeDecodeError"),
    (b"", "not rosbag2 metadata"),
    (b"- a list\n", "not rosbag2 metadata"),
    (None, "no metadata.yaml"),
])
def test_broken_bag_metadata_is_named(tmp_path, capsys, weights_file, metadata, fragment):
    source = tmp_path / "in"
    write_camera_bag(source, make_images(1))
    if metadata is None:
        (source / "metadata.yaml").unlink()
    else:
        (source / "metadata.yaml").write_bytes(metadata)
    code, _, stderr = run(capsys, source, "--weights", weights_file, "-o", tmp_path / "out")
    assert code == 1 and fragment in stderr and str(source) in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flag, value", [("--fps", "-5"), ("--fps", "0"), ("--fps", "nan"), ("--max-frames", "0"),
                                         ("--max-frames", "-1"), ("--gt-depth-scale", "0"), ("--warmup", "-1")])
def test_bad_numbers_are_argument_errors(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), flag, value])
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


def test_stale_partials_are_reported_and_removed_with_overwrite(tmp_path, capsys, weights_file):
    source, out = tmp_path / "in", tmp_path / "out"
    write_camera_bag(source, make_images(1))
    stale = tmp_path / ".out.k1ll3d.partial"
    (stale / "out").mkdir(parents=True)
    code, _, stderr = run(capsys, source, "--weights", weights_file, "-o", out)
    assert code == 0, stderr
    assert str(stale) in stderr and "--overwrite removes them" in stderr and stale.is_dir()
    code, _, stderr = run(capsys, source, "--weights", weights_file, "-o", out, "--overwrite")
    assert code == 0, stderr
    assert f"removed unfinished output(s) of an interrupted run: {stale}" in stderr and not stale.exists()


def test_sigterm_cleans_up_as_ctrl_c_does(tmp_path, weights_file):
    source, out = tmp_path / "in", tmp_path / "out"
    write_camera_bag(source, make_images(600, width=32, height=16), camera_info=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "hydranet_ros.offline.replay", str(source), "--weights", str(weights_file),
         "-o", str(out), "--device", "cpu", "--warmup", "0", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.*.partial/out/*.db3")) and process.poll() is None:
            assert time.monotonic() < deadline, "replay never started writing"
            time.sleep(0.05)
        assert process.poll() is None, "replay finished before it could be terminated"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated; unfinished outputs were removed" in stderr and "Traceback" not in stderr
    assert visible(tmp_path) == ["in", "random_kitti6.safetensors"]
    assert list(tmp_path.glob(".*.partial")) == []


@pytest.mark.parametrize("kind", ["bag", "folder"])
def test_frames_over_max_input_pixels_are_skipped_as_the_node_drops_them(tmp_path, capsys, weights_file, kind):
    images = [make_images(1)[0], make_images(1, width=WIDTH // 2, height=HEIGHT // 2)[0]]
    source = tmp_path / "in"
    if kind == "bag":
        write_camera_bag(source, images, camera_info=False)
    else:
        source.mkdir()
        for i, image in enumerate(images):
            cv2.imwrite(str(source / f"{i}.png"), image)
    limit = (WIDTH // 2) * (HEIGHT // 2)
    code, _, stderr = run(capsys, source, "--weights", weights_file, "--max-input-pixels", limit,
                          "--report", tmp_path / "r.json")
    assert code == 0, stderr
    frames = json.loads((tmp_path / "r.json").read_text())["frames"]
    assert frames["processed"] == 1 and frames["skipped"] == 1
    assert f"image {WIDTH}x{HEIGHT} exceeds the limit of {limit} pixels" in frames["skipped_frames"][0]["reason"]
    code, _, stderr = run(capsys, source, "--weights", weights_file, "--max-input-pixels", 0,
                          "--report", tmp_path / "r0.json")   # 0: no limit, as the node's max_input_pixels
    assert code == 0, stderr
    assert json.loads((tmp_path / "r0.json").read_text())["frames"]["processed"] == 2


@pytest.mark.parametrize("topic", ["/camera/image_raw", "/camera/image_raw/compressed"])
def test_folder_frames_go_into_the_bag_in_opencvs_order(tmp_path, capsys, weights_file, topic):
    images_dir, out = tmp_path / "images", tmp_path / "out"
    images_dir.mkdir()
    image = make_images(1, seed=4)[0]
    cv2.imwrite(str(images_dir / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    code, _, stderr = run(capsys, images_dir, "--weights", weights_file, "-o", out, "--outputs", "depth",
                          "--topic", topic)
    assert code == 0, stderr
    [(_, original)] = read_bag(out)[topic]
    frame = message_to_frame(original, original.__msgtype__)
    if topic.endswith("compressed"):   # JPEG: within a few levels; a channel swap is tens off
        assert np.abs(frame.to_rgb().astype(int) - image).mean() < 6
    else:                               # the file's BGR as it is, no flip on the host
        assert original.encoding == "bgr8"
        np.testing.assert_array_equal(frame.pixels, image[:, :, ::-1])
