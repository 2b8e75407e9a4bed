"""The README's two install commands: the pins live in setup.py alone, the ROS 2 wheels are
asked for only where they exist and only where no ROS 2 is sourced."""
from __future__ import annotations

import re
import runpy
import subprocess
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


@pytest.mark.parametrize("ros_distro, extras", [(None, "torch,test,ros"), ("jazzy", "torch,test,system-ros")])
def test_the_test_command_leaves_a_sourced_ros_alone(setup_kwargs, ros_distro, extras):
    _, test = _commands()
    install = test.split("&&")[0].replace("python3 -m pip install", "printf '%s\\n'")
    env = {"PATH": "/usr/bin:/bin"} | ({"ROS_DISTRO": ros_distro} if ros_distro else {})
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", install], capture_output=True, text=True, env=env,
                          check=True)
    assert done.stdout.split() == ["-e", f".[{extras}]"]
    assert set(extras.split(",")) <= set(setup_kwargs["extras_require"])
