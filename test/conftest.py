"""Shared fixtures: small random-weight models written as real weights files; each test
run on its own DDS domain; log capture that holds under ROS's logging set-up."""
from __future__ import annotations

import logging
import os
import sys
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

from hydranet_ros.inference.weights import ModelCard, save_weights
from hydranet_ros.model import HydraNet, ModelConfig
from hydranet_ros.model.presets import KITTI6


def _run_number() -> int:
    """This process's number among test runs: the pid, or under pytest-xdist the run's id
    plus the worker's index, so that the workers of one run never share a domain (two pids
    may fall on one domain, their numbers taken modulo 100)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return zlib.crc32(os.environ.get("PYTEST_XDIST_TESTRUNUID", "").encode()) + int(worker[2:])
    return os.getpid()


def _isolate_dds() -> None:
    """Each test run talks DDS on a domain of its own (from the pid; 1..100, never the
    default 0 where robots live) and discovers only this machine, so parallel runs and
    other ROS 2 processes cannot cross-talk. Set here, before any test initialises rclpy;
    node subprocesses inherit it. HYDRANET_TEST_ROS_DOMAIN_ID picks the domain."""
    os.environ["ROS_DOMAIN_ID"] = os.environ.get("HYDRANET_TEST_ROS_DOMAIN_ID", str(1 + _run_number() % 100))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"   # Jazzy and later
    if os.environ.get("ROS_DISTRO") == "humble":
        os.environ["ROS_LOCALHOST_ONLY"] = "1"                  # Humble's spelling of the same
    # the pip ROS 2 wheels keep their ament index under the environment's prefix
    if not os.environ.get("AMENT_PREFIX_PATH") and (Path(sys.prefix) / "share" / "ament_index").is_dir():
        os.environ["AMENT_PREFIX_PATH"] = sys.prefix


_isolate_dds()


@contextmanager
def captured_log(name: str, level: int = logging.WARNING,
                 records: list[logging.LogRecord] | None = None) -> Iterator[list[logging.LogRecord]]:
    """The records logged to logger ``name`` (or below it) at ``level`` and up, whatever the
    root logger's set-up. Under ROS 2's launch_testing pytest plugin the root logging is
    reconfigured and ``caplog`` sees nothing, so this handler sits on the named logger
    itself, which it also re-enables for the duration (``dictConfig`` disables loggers
    that existed before it)."""
    logger = logging.getLogger(name)
    records = [] if records is None else records

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level)
    family = [logger] + [other for key, other in logging.root.manager.loggerDict.items()
                         if (not name or key.startswith(f"{name}.")) and isinstance(other, logging.Logger)]
    disabled = [member.disabled for member in family]
    saved_level, saved_disable = logger.level, logging.root.manager.disable
    logger.addHandler(handler)
    for member in family:
        member.disabled = False
    logging.disable(logging.NOTSET)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
        for member, was in zip(family, disabled):
            member.disabled = was
        logging.disable(saved_disable)


def log_text(records: list[logging.LogRecord]) -> str:
    return "\n".join(record.getMessage() for record in records)


class LogCapture:
    """caplog's interface (``at_level``, ``text``, ``records``, ``clear``) on ``captured_log``."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []

    @contextmanager
    def at_level(self, level: int, logger: str = "") -> Iterator[None]:
        with captured_log(logger, level, self.records):
            yield

    @property
    def text(self) -> str:
        return log_text(self.records)

    def clear(self) -> None:
        self.records.clear()


@pytest.fixture
def log_capture() -> LogCapture:
    """Use instead of ``caplog`` for the package's own log lines: it holds under ``colcon test``."""
    return LogCapture()


def make_card(num_classes: int = 6, **overrides) -> ModelCard:
    names = list(KITTI6.class_names) if num_classes == 6 else [f"class{i}" for i in range(num_classes)]
    palette = list(KITTI6.palette) if num_classes == 6 else [((37 * i) % 256, (91 * i) % 256, (151 * i) % 256)
                                                              for i in range(num_classes)]
    fields = dict(model=ModelConfig(num_classes=num_classes), class_names=names, palette=palette,
                  depth_range=KITTI6.depth_range, provenance={"source": "test fixture, random weights"})
    fields.update(overrides)
    return ModelCard(**fields)


def make_model(card: ModelCard, seed: int = 0) -> HydraNet:
    torch.manual_seed(seed)
    return HydraNet(card.model).eval()


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    """A 6-class KITTI-style weights file with seeded random weights."""
    card = make_card()
    path = tmp_path / "random_kitti6.safetensors"
    save_weights(path, make_model(card), card)
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """On a small shared machine several torch threads thrash: the training and
    benchmark tests ran 4-15x slower with two threads while other jobs ran."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
