"""The node's decisions and message conventions, tested without ROS 2 (node.parameters, node.health,
node.qos and messages/)."""
from __future__ import annotations

import importlib.util
import math
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from hydranet_ros.inference import shipped as shipped_files
from hydranet_ros.messages import camera_info, stamps
from hydranet_ros.messages.topics import OUTPUT_SPECS
from hydranet_ros.node import health as node_health
from hydranet_ros.node import parameters as params
from hydranet_ros.node import qos

ROOT = Path(__file__).resolve().parents[1]


# ----- parameters ---------------------------------------------------------------

def test_every_parameter_has_a_description_and_a_valid_default():
    assert len({p.name for p in params.PARAMS}) == len(params.PARAMS)
    for spec in params.PARAMS:
        assert len(spec.description) > 15, spec.name
        spec.check(spec.default)
    config = params.load_config({})
    assert config.outputs == ("depth", "labels", "overlay")
    assert config.depth_range is None and config.max_input_pixels == params.DEFAULT_MAX_INPUT_PIXELS
    assert config.qos_reliability == "best_effort" and config.qos_depth == 1


def test_every_output_has_a_publish_switch():
    names = {p.name for p in params.PARAMS}
    for spec in OUTPUT_SPECS:
        assert params.publish_param(spec) in names
    on = {spec.name for spec in OUTPUT_SPECS if params.PARAMS_BY_NAME[params.publish_param(spec)].default}
    assert on == {"depth", "labels", "overlay"}


def test_shipped_yaml_holds_the_table_defaults():
    text = (ROOT / "config" / "hydranet.yaml").read_text()
    assert text == params.parameters_yaml(), "regenerate config/hydranet.yaml from params.parameters_yaml()"
    assert yaml.safe_load(text)["/**"]["ros__parameters"] == params.defaults()


@pytest.mark.parametrize("name, value, fragment", [
    ("overlay_alpha", 1.5, "[0, 1]"),
    ("overlay_alpha", True, "number"),
    ("overlay_alpha", "half", "number"),
    ("device", "gpu", "auto, cpu, cuda"),
    ("precision", "fp8", "auto, fp32, fp16, bf16"),
    ("backend", "tflite", "auto, eager, compile, cudagraph, onnxruntime, tensorrt"),
    ("qos_reliability", "sometimes", "best_effort, reliable"),
    ("qos_depth", 0, ">= 1"),
    ("qos_depth", 2.5, "integer"),
    ("input_transport", "h264", "raw, compressed"),
    ("depth_colormap", "rainbow", "turbo"),
    ("publish_depth", "maybe", "true or false"),
    ("max_input_pixels", -1, ">= 0"),
    ("log_period", -2.0, ">= 0"),
    ("warmup_size", "640", "WIDTHxHEIGHT"),
    ("warmup_size", "0x480", "positive"),
    ("depth_display_max", float("nan"), "finite"),
    ("weights", 3, "string"),
    ("no_such_parameter", 1, "unknown parameter"),
])
def test_bad_parameter_is_named(name, value, fragment):
    with pytest.raises(params.ParamError) as info:
        params.load_config({name: value})
    message = str(info.value)
    assert f"parameter '{name}'" in message and fragment in message


def test_all_problems_are_reported_at_once():
    with pytest.raises(params.ParamError) as info:
        params.load_config({"overlay_alpha": 2.0, "qos_depth": 0, "device": "tpu"})
    assert {name for name, _ in info.value.problems} == {"overlay_alpha", "qos_depth", "device"}


def test_parameter_types_are_forgiving_where_unambiguous():
    config = params.load_config({"overlay_alpha": 1, "qos_depth": 3.0, "publish_depth_colour": "True",
                             "qos_reliability": " Reliable ", "max_input_pixels": 0})
    assert config.overlay_alpha == 1.0 and isinstance(config.overlay_alpha, float)
    assert config.qos_depth == 3 and config.qos_reliability == "reliable"
    assert "depth_colour" in config.outputs and config.max_input_pixels is None


def test_warmup_size_is_width_by_height_or_off():
    assert params.load_config({}).warmup_size == (640, 480)
    assert params.load_config({"warmup_size": "1242x375"}).warmup_size == (1242, 375)
    assert params.load_config({"warmup_size": ""}).warmup_size is None


def test_depth_display_range():
    assert params.load_config({"depth_display_min": 1.0, "depth_display_max": 50.0}).depth_range == (1.0, 50.0)
    with pytest.raises(params.ParamError, match="depth_display_min"):
        params.load_config({"depth_display_min": 60.0, "depth_display_max": 50.0})


def test_all_outputs_off_is_an_error():
    off = {params.publish_param(spec): False for spec in OUTPUT_SPECS}
    with pytest.raises(params.ParamError, match="nothing to publish"):
        params.load_config({**off, "publish_depth_camera_info": False})
    assert params.load_config(off).outputs == ()   # camera info alone is still something


def test_a_precision_or_backend_the_device_cannot_run_falls_back_and_says_so(weights_file):
    from hydranet_ros.inference.predictor import load_predictor

    config = params.load_config({"device": "cpu", "precision": "fp16", "backend": "cudagraph"})
    predictor = load_predictor(weights_file, **config.predictor_options())
    assert (predictor.precision, predictor.backend) == ("fp32", "eager")
    assert params.fallback_notes(config, predictor.precision, predictor.backend) == [
        "precision fp16 cannot run here; running fp32", "backend cudagraph cannot run here; running eager"]
    assert params.fallback_notes(params.load_config({"device": "cpu"}), "fp32", "eager") == []  # auto is never a fallback


def test_device_is_checked_by_the_predictor_rules():
    if not torch.cuda.is_available():
        with pytest.raises(params.ParamError, match="parameter 'device'.*CUDA"):
            params.load_config({"device": "cuda"})
    else:
        with pytest.raises(params.ParamError, match="parameter 'device'.*CUDA device"):
            params.load_config({"device": f"cuda:{torch.cuda.device_count()}"})


def test_predictor_options_feed_load_predictor(weights_file):
    from hydranet_ros.inference.predictor import load_predictor

    config = params.load_config({"device": "cpu", "overlay_alpha": 0.25, "depth_display_max": 40.0,
                             "depth_colormap": "viridis"})
    predictor = load_predictor(weights_file, **config.predictor_options())
    assert predictor.overlay_alpha == 0.25 and predictor.depth_range == (0.0, 40.0)
    assert predictor.depth_colormap == "viridis"


def test_resolve_weights(tmp_path):
    given = tmp_path / "w.safetensors"
    with pytest.raises(params.ParamError, match=f"parameter 'weights'.*{given}"):
        params.resolve_weights(str(given), None)
    given.write_bytes(b"x")
    assert params.resolve_weights(str(given), None) == given

    shipped = tmp_path / shipped_files.SHIPPED_WEIGHTS
    with pytest.raises(params.ParamError, match="shipped"):
        params.resolve_weights("", tmp_path)
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(b"x")
    assert params.resolve_weights("", tmp_path) == shipped
    with pytest.raises(params.ParamError, match="not installed"):
        params.resolve_weights("", None)


def test_usage_and_readme_table_list_every_parameter():
    usage, table = params.format_usage(), params.parameter_table_markdown()
    for spec in params.PARAMS:
        assert spec.name in usage
        assert f"| `{spec.name}` |" in table


def _load_node_module():
    spec = importlib.util.find_spec("hydranet_ros.node.node")
    assert spec is not None
    import hydranet_ros.node.node as node
    return node


def test_help_needs_no_ros(capsys):
    node = _load_node_module()
    assert node.main(["hydranet_node", "--help"]) == 0
    out = capsys.readouterr().out
    assert "qos_reliability" in out and "depth/image" in out
    # arguments after --ros-args belong to ROS, not to us
    assert not node._wants_help(["hydranet_node", "--ros-args", "-h"])


def test_without_ros_main_fails_clearly(capsys):
    node = _load_node_module()
    if node.rclpy is not None:
        pytest.skip("ROS 2 is sourced here; this checks the message shown without it")
    assert node.main(["hydranet_node"]) == 1
    assert "ROS 2 is not available" in capsys.readouterr().err


# ----- QoS and topics ------------------------------------------------------------

def test_qos_choices():
    default = qos.subscription_qos(params.load_config({}))
    assert default == qos.QosChoice(reliability="best_effort", depth=1, durability="volatile", history="keep_last")
    assert qos.subscription_qos(params.load_config({"qos_reliability": "reliable", "qos_depth": 5})) == \
        qos.QosChoice(reliability="reliable", depth=5)
    assert qos.PUBLISHER_QOS.reliability == "reliable" and qos.PUBLISHER_QOS.durability == "volatile"
    assert qos.LATCHED_QOS.durability == "transient_local" and qos.LATCHED_QOS.reliability == "reliable"


# ----- newest-frame slot ---------------------------------------------------------

def test_slot_keeps_only_the_newest_and_counts_drops():
    slot: node_health.FrameSlot[int] = node_health.FrameSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.take(timeout=0) == 3
    assert slot.take(timeout=0.01) is None
    assert slot.dropped == 2


def test_slot_close_wakes_a_waiting_worker():
    slot: node_health.FrameSlot[int] = node_health.FrameSlot()
    result = []
    worker = threading.Thread(target=lambda: result.append(slot.take(timeout=10)))
    worker.start()
    time.sleep(0.05)
    slot.close()
    worker.join(timeout=2)
    assert not worker.is_alive() and result == [None]
    assert slot.put(1) is False and slot.take(timeout=0) is None


def test_slow_worker_never_builds_a_backlog():
    slot: node_health.FrameSlot[int] = node_health.FrameSlot()
    seen: list[int] = []

    def worker():
        while (item := slot.take(timeout=1.0)) is not None:
            seen.append(item)
            time.sleep(0.01)   # "inference" slower than the camera

    thread = threading.Thread(target=worker)
    thread.start()
    for frame in range(200):
        slot.put(frame)
        time.sleep(0.0005)
    time.sleep(0.05)
    slot.close()
    thread.join(timeout=2)
    assert seen == sorted(seen) and seen[-1] == 199      # always the newest, finishing on the last
    assert len(seen) + slot.dropped == 200               # every frame is processed or counted dropped
    assert slot.dropped > 100


# ----- output selection ------------------------------------------------------------

def test_only_enabled_and_subscribed_outputs_are_computed():
    enabled = ("depth", "labels", "overlay", "depth_colour")
    assert node_health.select_outputs(enabled, {}) == ()
    assert node_health.select_outputs(enabled, {"overlay": 1, "depth": 2, "segm_colour": 5}) == ("depth", "overlay")
    assert node_health.select_outputs(enabled, {"depth_colour": 1, "labels": 0}) == ("depth_colour",)


# ----- camera info ---------------------------------------------------------------

INFO = camera_info.Intrinsics(width=640, height=480,
                     k=(500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0),
                     p=(500.0, 0.0, 320.0, -25.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                     roi=(10, 20, 300, 200))


def test_camera_info_unchanged_at_input_resolution():
    assert camera_info.scale_intrinsics(INFO, (640, 480), (640, 480)) == INFO


def test_camera_info_scales_with_the_output():
    half = camera_info.scale_intrinsics(INFO, (640, 480), (320, 240))
    assert (half.width, half.height) == (320, 240)
    assert half.k == (250.0, 0.0, 160.0, 0.0, 255.0, 120.0, 0.0, 0.0, 1.0)
    assert half.p == (250.0, 0.0, 160.0, -12.5, 0.0, 255.0, 120.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert half.roi == (5, 10, 150, 100)
    # anisotropic: only x changes
    wide = camera_info.scale_intrinsics(INFO, (640, 480), (1280, 480))
    assert wide.k[0] == 1000.0 and wide.k[2] == 640.0 and wide.k[4] == 510.0 and wide.k[5] == 240.0


def test_uncalibrated_camera_info_stays_uncalibrated():
    blank = camera_info.Intrinsics(width=0, height=0, k=(0.0,) * 9, p=(0.0,) * 12)
    scaled = camera_info.scale_intrinsics(blank, (640, 480), (320, 240))
    assert (scaled.width, scaled.height) == (0, 0) and scaled.k == (0.0,) * 9


def test_camera_info_rejects_empty_sizes():
    with pytest.raises(ValueError, match="positive"):
        camera_info.scale_intrinsics(INFO, (0, 480), (320, 240))


# ----- statistics --------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stamp_latency():
    assert stamps.stamp_to_ns(12, 345) == 12_000_000_345
    assert node_health.stamp_latency(0, 10**18) is None
    assert node_health.stamp_latency(10**18, 0) is None      # simulated time not started yet
    assert node_health.stamp_latency(stamps.stamp_to_ns(10, 0), stamps.stamp_to_ns(10, 250_000_000)) == pytest.approx(0.25)


def test_stats_rates_percentiles_and_counters():
    clock = FakeClock()
    stats = node_health.Stats(device="cpu fp32", window_s=5.0, clock=clock)
    empty = stats.snapshot()
    assert empty.fps == 0.0 and math.isnan(empty.latency_ms[0]) and empty.seconds_since_frame is None
    for i in range(100):                       # 10 s at 10 Hz
        clock.now += 0.1
        stats.frame_received(replaced=(i % 10 == 0))
        stats.frame_done(inference_s=0.02 + 0.0001 * i, latency_s=0.05 if i % 2 else None)
    stats.frame_bad("unsupported encoding 'x'")
    stats.frame_idle()
    snap = stats.snapshot()
    assert snap.fps == pytest.approx(10.0, rel=0.05)
    assert (snap.received, snap.processed, snap.dropped, snap.bad, snap.idle) == (100, 100, 10, 1, 1)
    assert snap.latency_ms[0] == pytest.approx(50.0) and snap.latency_ms[2] == pytest.approx(50.0)
    # only the last 5 s of inference times: 50..99
    assert snap.inference_ms[0] == pytest.approx(20.0 + 0.1 * 74.5, abs=0.1)
    assert snap.inference_ms[2] == pytest.approx(20.0 + 0.1 * 99, abs=0.01)
    assert snap.last_error == "unsupported encoding 'x'" and snap.device == "cpu fp32"
    pairs = dict(snap.as_pairs())
    assert pairs["frames dropped (newer frame arrived)"] == "10" and all(isinstance(v, str) for v in pairs.values())
    line = node_health.format_log_line(snap)
    assert f"{snap.fps:.1f} fps on cpu fp32" in line and "10 dropped" in line and "1 bad" in line


def test_health_reports_what_happened_since_the_last_report():
    clock = FakeClock()
    stats, judge = node_health.Stats(clock=clock), node_health.HealthJudge(stale_after_s=5.0)
    assert judge.judge(stats.snapshot()).level == "warn"          # nothing received yet
    stats.frame_received(False)
    stats.frame_done(0.01, 0.02)
    assert judge.judge(stats.snapshot()).level == "ok"
    stats.frame_received(False)
    stats.frame_bad("data has 100 bytes")
    health = judge.judge(stats.snapshot())
    assert health.level == "warn" and "data has 100 bytes" in health.message
    assert judge.judge(stats.snapshot()).level == "ok"             # no new bad frames
    stats.frame_out_of_memory("GPU out of memory")
    assert judge.judge(stats.snapshot()).level == "error"
    stats.frame_received(False)
    stats.frame_idle()
    assert "idle" in judge.judge(stats.snapshot()).message
    clock.now += 10.0
    assert "no image for" in judge.judge(stats.snapshot()).message


def test_backend_reaches_the_predictor():
    config = params.load_config({"backend": "onnxruntime", "device": "cpu"})
    assert config.predictor_options()["backend"] == "onnxruntime"
    assert params.load_config({"device": "cpu"}).backend == "auto"
