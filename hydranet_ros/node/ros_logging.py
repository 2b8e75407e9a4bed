"""The package's Python log records (a backend or precision that falls back, a failed
compile) into the node's ROS log, so they reach /rosout and the console like the
node's own lines instead of Python's bare last-resort stream."""
from __future__ import annotations

import logging
from typing import Any

from ..inference.shipped import PACKAGE

try:
    from rclpy.logging import LoggingSeverity
except ImportError:  # pragma: no cover - the node module reports the missing ROS 2
    LoggingSeverity = None


class RosLogHandler(logging.Handler):
    """Writes each record to a ROS logger (``node.get_logger()``) at the matching severity."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.INFO)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            severity = LoggingSeverity.ERROR
        elif record.levelno >= logging.WARNING:
            severity = LoggingSeverity.WARN
        else:
            severity = LoggingSeverity.INFO
        try:
            self._ros_logger.log(record.getMessage(), severity)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def forward_package_logs(ros_logger: Any) -> RosLogHandler:
    """Attach a ``RosLogHandler`` to the package's logger; ``stop_forwarding`` removes it."""
    handler = RosLogHandler(ros_logger)
    # the logger's own level still decides (warnings and up by default)
    logging.getLogger(PACKAGE).addHandler(handler)
    return handler


def stop_forwarding(handler: RosLogHandler) -> None:
    logging.getLogger(PACKAGE).removeHandler(handler)
