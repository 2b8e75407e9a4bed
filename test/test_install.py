"""The README's two install commands: the pins live in setup.py alone, the ROS 2 wheels are
asked for only where they exist and only where no ROS 2 is sourced."""
from __future__ import annotations

import importlib
import os
import platform
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ROS_WHEELS = {"ros-jazzy-rclpy", "ros-jazzy-sensor-msgs", "ros-jazzy-std-msgs", "ros-jazzy-std-srvs",
              "ros-jazzy-diagnostic-msgs", "ros-jazzy-rmw-fastrtps-cpp"}


@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
    """What setup.py hands to setuptools.setup, without running an install."""
    seen: dict = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: seen.update(kwargs)
    try:
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
    return seen


def _commands() -> list[str]:
    """The quick start's command and the test command (the one CI runs)."""
    quick = README.split("## Quick start", 1)[1]
    return [block.split("```", 1)[0].strip() for block in quick.split("```bash\n")[1:3]]


def test_the_commands_pin_nothing_themselves(setup_kwargs):
    quick, test = _commands()
    assert "hydranet_replay --demo" in quick and "pytest" in test
    for command in (quick, test):
        assert "==" not in command and ".[torch" in command    # the pins come from the torch extra
    assert setup_kwargs["extras_require"]["torch"] == ["torch==2.14.1", "torchvision==0.29.1"]
    assert not re.search(r"torchvision==", README)


def test_the_ros_wheels_only_where_they_exist(setup_kwargs):
    ros = setup_kwargs["extras_require"]["ros"]
    assert {requirement.split(";")[0].strip() for requirement in ros} == ROS_WHEELS
    for requirement in ros:
        marker = requirement.split(";", 1)[1]
        assert 'platform_system == "Linux"' in marker and 'platform_machine == "x86_64"' in marker
    assert setup_kwargs["extras_require"]["system-ros"] == []


def _test_install_arguments(ros_distro: str | None) -> list[str]:
    """What the README's test command hands to pip install, with ROS_DISTRO set or not."""
    _, test = _commands()
    install = test.split("&&")[0].replace("python3 -m pip install", "printf '%s\\n'")
    env = {"PATH": "/usr/bin:/bin"} | ({"ROS_DISTRO": ros_distro} if ros_distro else {})
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", install], capture_output=True, text=True, env=env,
                          check=True)
    return done.stdout.split()


@pytest.mark.parametrize("ros_distro, extras", [(None, "torch,test,ros"), ("jazzy", "torch,test,system-ros")])
def test_the_test_command_leaves_a_sourced_ros_alone(setup_kwargs, ros_distro, extras):
    assert _test_install_arguments(ros_distro) == ["-e", f".[{extras}]"]
    assert set(extras.split(",")) <= set(setup_kwargs["extras_require"])


def test_the_node_tests_skip_message_gives_the_readme_command():
    from node_harness import ROS_SKIP, ROS_WHEELS_INSTALL

    assert shlex.split(ROS_WHEELS_INSTALL)[:4] == ["python3", "-m", "pip", "install"]
    assert shlex.split(ROS_WHEELS_INSTALL)[4:] == _test_install_arguments(None)
    assert ROS_WHEELS_INSTALL in ROS_SKIP.kwargs["reason"]


# where the ros extra installs the wheels; elsewhere rclpy comes from a sourced ROS 2, or the node tests skip
ON_ROS_WHEEL_PLATFORMS = (sys.platform == "linux" and platform.machine() == "x86_64"
                          and platform.python_implementation() == "CPython" and sys.version_info < (3, 14))
ROS_MODULES = ("rclpy", "sensor_msgs.msg", "std_msgs.msg", "std_srvs.srv", "diagnostic_msgs.msg")


@pytest.mark.skipif(not ON_ROS_WHEEL_PLATFORMS, reason="the pip ROS 2 wheels exist for Linux x86_64, CPython < 3.14 only")
@pytest.mark.skipif(bool(os.environ.get("ROS_DISTRO")), reason="ROS 2 is sourced: its own rclpy is used")
@pytest.mark.parametrize("module", ROS_MODULES)
def test_rclpy_imports_where_the_ros_wheels_exist(module):
    """Else every node test would skip and CI would pass without running the node."""
    from node_harness import ROS_WHEELS_INSTALL

    try:
        importlib.import_module(module)
    except ImportError as error:
        pytest.fail(f"{module} cannot be imported ({error}) on Linux x86_64 without a sourced ROS 2, so the "
                    f"node tests would all skip: the README's test command installs the pip ROS 2 wheels "
                    f"({ROS_WHEELS_INSTALL})")


def test_the_workers_of_one_parallel_run_get_domains_of_their_own(monkeypatch):
    from conftest import _run_number  # before the environment below is changed

    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "run-a")
    domains = set()
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        domains.add(1 + _run_number() % 100)
    assert len(domains) == 3
