"""The hydranet_node executable in a process of its own: a start that fails, signals at any
moment (the warm-up included), warnings in the ROS log, a lifecycle shutdown."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from node_harness import ROS_SKIP, module_weights, rclpy  # noqa: F401

if rclpy is not None:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

pytestmark = ROS_SKIP


# ----- the executable -------------------------------------------------------------------

def _run_node(*ros_args: str) -> subprocess.Popen:
    # unbuffered log output, so the test sees each line as soon as the node says it
    env = {**os.environ, "RCUTILS_LOGGING_BUFFERED_STREAM": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "hydranet_ros.node.main", "--ros-args", *ros_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


class Output:
    """A subprocess's output lines, read as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        self._reader = threading.Thread(target=lambda: self.lines.extend(proc.stdout), daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(text in line for line in self.lines):
            assert self.proc.poll() is None, self.text
            time.sleep(0.05)
        assert any(text in line for line in self.lines), self.text

    @property
    def text(self) -> str:
        self._reader.join(timeout=0.1)
        return "".join(self.lines)


def test_executable_exits_with_error_on_missing_weights(tmp_path):
    missing = tmp_path / "nope.safetensors"
    proc = _run_node("-p", f"weights:={missing}", "-p", "device:=cpu")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert str(missing) in out and "weights" in out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_warm_up_ends_the_node_cleanly(module_weights, signum):
    # a 1920x1080 warm-up pass takes seconds on a CPU: the signal comes in the middle of it
    proc = _run_node("-p", f"weights:={module_weights}", "-p", "device:=cpu", "-p", "backend:=eager",
                     "-p", "warmup_size:=1920x1080", "-r", f"__ns:=/hydranet_signal_{os.getpid()}")
    out = Output(proc)
    out.wait_for("warming up at 1920x1080")
    proc.send_signal(signum)
    sent = time.monotonic()
    assert proc.wait(timeout=30) == 0, out.text
    assert time.monotonic() - sent < 10.0, out.text
    assert "warmed up" not in out.text, "the signal came after the warm-up; the test proves nothing"
    assert "Traceback" not in out.text and "terminate called" not in out.text, out.text


def _loading_torch(pid: int) -> bool:
    """Has the process begun importing torch (its shared library is mapped)?"""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches the start-up through /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_node_imports_torch_ends_it_cleanly(signum):
    # the first seconds go to importing torch; the handler must be in place before that
    proc = _run_node("-p", "device:=cpu", "-r", f"__ns:=/hydranet_start_{os.getpid()}")
    out = Output(proc)
    deadline = time.monotonic() + 60
    while not _loading_torch(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None and _loading_torch(proc.pid), out.text
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == 0, out.text
    assert "Traceback" not in out.text and "KeyboardInterrupt" not in out.text, out.text
    assert "configured" not in out.text, "the signal came after the start-up; the test proves nothing"


def test_ctrl_c_while_running_and_warnings_in_the_ros_log(module_weights):
    proc = _run_node("-p", f"weights:={module_weights}", "-p", "device:=cpu", "-p", "devcie:=cpu",
                     "-p", "precision:=fp16", "-p", "backend:=eager", "-p", "warmup_size:=''",
                     "-r", f"__ns:=/hydranet_sigint_{os.getpid()}")
    out = Output(proc)
    out.wait_for("active: publishing")
    # a misspelt parameter is named; the predictor's fallback warning reaches the ROS log
    assert "'devcie' is not a parameter of hydranet_node and is ignored; did you mean 'device'?" in out.text
    fallback = [line for line in out.lines if "falling back to fp32" in line]
    assert fallback and fallback[0].startswith("[WARN]") and "hydranet_node]" in fallback[0], out.text
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, out.text
    assert "Traceback" not in out.text, out.text


def test_a_lifecycle_shutdown_ends_the_process(module_weights):
    namespace = f"/hydranet_shutdown_{os.getpid()}"
    proc = _run_node("-p", f"weights:={module_weights}", "-p", "device:=cpu", "-p", "backend:=eager",
                     "-p", "warmup_size:=''", "-r", f"__ns:={namespace}")
    out = Output(proc)
    out.wait_for("active: publishing")
    context = Context()
    rclpy.init(context=context)
    try:
        probe = Node("shutdown_probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        client = probe.create_client(ChangeState, f"{namespace}/hydranet_node/change_state")
        assert client.wait_for_service(timeout_sec=30.0)
        future = client.call_async(ChangeState.Request(transition=Transition(label="shutdown")))
        executor.spin_until_future_complete(future, timeout_sec=30.0)
        assert future.result() is not None and future.result().success
        executor.shutdown()
        probe.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert proc.wait(timeout=30) == 0, out.text
