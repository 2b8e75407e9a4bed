"""The node's health tested without ROS 2: the inference thread,
statistics, the diagnostic level, why frames do not come, the camera's QoS, and where
the package's warnings go."""
from __future__ import annotations

import logging
import logging.config
import math
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import captured_log, log_text

from hydranet_ros.inference.device import choose_precision
from hydranet_ros.node import health as node_health
from hydranet_ros.node import parameters as params
from hydranet_ros.node import qos
from hydranet_ros.node.worker import InferenceWorker


def test_only_enabled_and_subscribed_outputs_are_computed():
    enabled = ("depth", "labels", "overlay", "depth_colour")
    assert node_health.select_outputs(enabled, {}) == ()
    assert node_health.select_outputs(enabled, {"overlay": 1, "depth": 2, "segm_colour": 5}) == ("depth", "overlay")
    assert node_health.select_outputs(enabled, {"depth_colour": 1, "labels": 0}) == ("depth_colour",)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


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


def test_frames_without_points_or_of_a_new_size_warn_with_the_reason():
    stats, judge = node_health.Stats(), node_health.HealthJudge()
    stats.frame_received(False)
    stats.frame_done(0.01, None)
    assert judge.judge(stats.snapshot()).level == "ok"
    stats.frame_without_points("no camera_info received yet")
    health = judge.judge(stats.snapshot())
    assert health.level == "warn" and "1 frame(s) without points: no camera_info received yet" in health.message
    stats.frame_resized("camera 'left' changed from 64x48 to 32x24")
    health = judge.judge(stats.snapshot())
    assert health.level == "warn" and "changed size" in health.message and "64x48 to 32x24" in health.message
    assert judge.judge(stats.snapshot()).level == "ok"              # nothing new since
    pairs = dict(stats.snapshot().as_pairs())
    assert pairs["frames without points (camera_info)"] == "1" and pairs["frames of a new size"] == "1"


def test_several_cameras_report_the_worst_by_name():
    fine, late = node_health.Health("ok", "10.0 fps"), node_health.Health("warn", "no image for 6.0 s on '/left'")
    assert node_health.worst_health([("front", fine), ("right", fine)]).message == "front: 10.0 fps; right: 10.0 fps"
    worst = node_health.worst_health([("front", fine), ("left", late)])
    assert worst.level == "warn" and worst.message == "left: no image for 6.0 s on '/left'"


# ----- the inference thread -----------------------------------------------------------

def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_worker_warms_up_before_the_first_frame_and_survives_a_broken_one():
    seen: list[object] = []
    errors: list[Exception] = []

    def process(frames: dict[str, int]) -> None:
        seen.append(frames[""])
        if frames[""] == 2:
            raise RuntimeError("broken frame")

    worker = InferenceWorker(process, lambda stopping: seen.append("warm-up"), errors.append)
    worker.slot.put("", 1)        # parked before the thread starts: it waits for the warm-up
    worker.start()
    assert worker.wait_warmed(give_up=lambda: False)
    _wait_for(lambda: seen == ["warm-up", 1])
    worker.slot.put("", 2)
    _wait_for(lambda: len(errors) == 1)
    worker.slot.put("", 3)
    _wait_for(lambda: seen == ["warm-up", 1, 2, 3])
    assert [str(error) for error in errors] == ["broken frame"]
    assert worker.stop(timeout=2.0) and not worker.alive


def test_a_stop_interrupts_the_warm_up_between_passes():
    passes: list[int] = []
    release = threading.Event()

    def warm_up(stopping) -> None:
        for index in range(5):          # five long passes, like a large CPU warm-up
            if stopping():
                return
            passes.append(index)
            release.wait(5)

    worker = InferenceWorker(lambda frame: None, warm_up, lambda error: None)
    worker.start()
    while not passes:
        time.sleep(0.01)
    giving_up = threading.Event()
    giving_up.set()
    assert not worker.wait_warmed(give_up=giving_up.is_set)      # a signal: configure gives up at once
    assert not worker.stop(timeout=0.05) and worker.alive        # the pass in progress cannot be cut short
    release.set()
    assert worker.stop(timeout=5.0) and passes == [0]            # ... but no further pass starts


# ----- why no frame comes ---------------------------------------------------------------

def test_starvation_names_the_cause_and_the_parameter():
    assert node_health.starvation("/cam/image", 0, 0, 100.0, "best_effort") is None      # nobody publishes
    assert node_health.starvation("/cam/image", 1, 1, 2.0, "best_effort") is None        # not yet
    assert node_health.starvation("/cam/image", 1, 1, None, "best_effort") is None       # frames arrive
    mismatch = node_health.starvation("/cam/image", 2, 1, 6.0, "reliable")
    assert "1 of 2 publisher(s) on '/cam/image'" in mismatch and "qos_reliability to auto or best_effort" in mismatch
    dropped = node_health.starvation("/cam/image", 1, 1, 6.0, "best_effort")
    assert "drops large best-effort frames" in dropped and "qos_reliability" in dropped
    assert "fastdds_large_images.xml" in dropped
    silent = node_health.starvation("/cam/image", 1, 1, 6.0, "reliable")
    assert "sends nothing" in silent and "ros2 topic hz /cam/image" in silent


def test_lifecycle_state_in_diagnostics():
    judged = node_health.Health("warn", "2 bad frame(s) dropped")
    assert node_health.lifecycle_health("active", "", judged) is judged
    assert node_health.lifecycle_health("inactive", "", None).message.startswith("inactive")
    assert node_health.lifecycle_health("unconfigured", "", None).level == "ok"
    failed = node_health.lifecycle_health("unconfigured", "parameter 'weights': file not found: /x", None)
    assert failed.level == "error" and "parameter 'weights'" in failed.message


# ----- the camera's QoS -----------------------------------------------------------------

def test_auto_reliability_follows_the_publishers():
    assert qos.choose_reliability("auto", []) == "best_effort"                 # matches whoever comes
    assert qos.choose_reliability("auto", ["reliable", "reliable"]) == "reliable"
    assert qos.choose_reliability("auto", ["reliable", "best_effort"]) == "best_effort"
    assert qos.choose_reliability("reliable", ["best_effort"]) == "reliable"   # asked for: kept
    assert qos.choose_reliability("best_effort", ["reliable"]) == "best_effort"


def test_qos_choices():
    default = qos.subscription_qos(params.load_config({}))
    assert default == qos.QosChoice(reliability="best_effort", depth=1, durability="volatile")
    assert qos.subscription_qos(params.load_config({}), ["reliable"]).reliability == "reliable"
    assert qos.subscription_qos(params.load_config({"qos_reliability": "reliable", "qos_depth": 5})) == \
        qos.QosChoice(reliability="reliable", depth=5)
    assert qos.PUBLISHER_QOS.reliability == "reliable" and qos.PUBLISHER_QOS.durability == "volatile"
    assert qos.LATCHED_QOS.durability == "transient_local" and qos.LATCHED_QOS.reliability == "reliable"


# ----- where the package's warnings go ------------------------------------------------

def test_a_fallback_warning_is_captured_even_after_logging_is_reconfigured():
    """What ROS's launch_testing pytest plugin does to logging, roughly: a dictConfig that
    disables every logger that exists and a root logger that shows nothing. caplog then sees
    nothing; the package's tests capture with captured_log, which must still work."""
    logging.getLogger("hydranet_ros.inference.device")   # exists before the reconfiguration
    root, saved = logging.getLogger(), (logging.getLogger().level, list(logging.getLogger().handlers))
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": True,
                               "root": {"level": "CRITICAL", "handlers": []}})
    try:
        assert logging.getLogger("hydranet_ros.inference.device").disabled
        with captured_log("hydranet_ros.inference.device") as records:
            assert choose_precision("fp16", torch.device("cpu")) == "fp32"
        assert "falling back to fp32" in log_text(records)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for logger in logging.root.manager.loggerDict.values():
            if isinstance(logger, logging.Logger):
                logger.disabled = False


def test_a_fallback_warning_reaches_a_plain_python_user():
    """No logging set-up at all (a script calling the predictor): the warning still shows."""
    code = ("import torch; from hydranet_ros.inference.device import choose_precision; "
            "choose_precision('fp16', torch.device('cpu'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "'fp16' is not supported on the CPU" in done.stderr and "falling back to fp32" in done.stderr


def test_the_node_forwards_the_package_warnings_to_its_ros_log():
    pytest.importorskip("rclpy", reason="rclpy is not installed; the node's ROS log needs it")
    from rclpy.logging import LoggingSeverity

    from hydranet_ros.node.ros_logging import forward_package_logs, stop_forwarding

    class RosLogger:
        def __init__(self) -> None:
            self.lines: list[tuple[str, object]] = []

        def log(self, message: str, severity: object) -> bool:
            self.lines.append((message, severity))
            return True

    ros_logger = RosLogger()
    handler = forward_package_logs(ros_logger)
    try:
        choose_precision("fp16", torch.device("cpu"))
    finally:
        stop_forwarding(handler)
    assert [severity for _, severity in ros_logger.lines] == [LoggingSeverity.WARN]
    assert "falling back to fp32" in ros_logger.lines[0][0]
    choose_precision("fp16", torch.device("cpu"))
    assert len(ros_logger.lines) == 1                    # removed: nothing more reaches it
