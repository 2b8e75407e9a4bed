"""``hydranet_node``: start the node, spin, and end cleanly on Ctrl-C, SIGTERM or a
lifecycle ``shutdown``, whatever it is doing at the time (the warm-up included).

The signals are handled here rather than by rclpy: a Python handler only sets a
flag, the main thread spins in short steps and checks it, and every wait in a
transition (the warm-up) gives up when it is set. A pass that cannot be interrupted
(a long warm-up on the CPU, a torch.compile) may still run in the inference thread
then; the process leaves without the interpreter's exit, which would otherwise tear
torch down under that thread (``terminate called without an active exception``).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from typing import Sequence

# nothing of the package is imported at module level: its imports load torch (seconds on a
# small CPU), and a signal then must already find main()'s handler in place
# longest a signal waits to be noticed by the main loop
SPIN_S = 0.2


def _wants_help(argv: Sequence[str]) -> bool:
    user_args = list(argv)
    if "--ros-args" in user_args:
        user_args = user_args[:user_args.index("--ros-args")]
    return any(arg in ("-h", "--help") for arg in user_args)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``hydranet_node``; ``args`` as for ``rclpy.init`` (default ``sys.argv``)."""
    # before the slow imports (torch, rclpy, the model): a signal at any moment ends the node cleanly
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        argv = list(sys.argv if args is None else args)
        if _wants_help(argv):
            from .parameter_docs import format_usage

            print(format_usage())
            return 0
        from . import node as node_module
        from .parameters import NODE_NAME

        if node_module.ROS_IMPORT_ERROR is not None:
            print(f"{NODE_NAME}: ROS 2 is not available ({node_module.ROS_IMPORT_ERROR}); source your ROS 2 "
                  "installation (e.g. /opt/ros/jazzy/setup.bash) or install the pip ROS 2 wheels (README)",
                  file=sys.stderr)
            return 1
        code, clean = _serve(node_module, argv, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not clean:
        # rcutils writes the console log through C stdio, which os._exit does not flush
        sys.stdout.flush()
        sys.stderr.flush()
        ctypes.CDLL(None).fflush(None)
        os._exit(code)
    return code


def _serve(node_module, argv: list[str], stop: threading.Event) -> tuple[int, bool]:
    """Run the node until a signal or a lifecycle shutdown; (exit code, whether every
    inference thread has ended)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    if stop.is_set():
        return 0, True
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    code, clean = 0, True
    try:
        node = node_module.HydraNetNode(stop_requested=stop)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if node.autostart and not stop.is_set() and not node.start() and not stop.is_set():
            # as a plain node, one that cannot start stops (a launch file ends with it)
            node.get_logger().fatal("cannot start: configure or activate failed (the reason is above)")
            code = 1
        while code == 0 and not stop.is_set() and not node.finalized.is_set():
            executor.spin_once(timeout_sec=SPIN_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            clean = node.close(node_module.EXIT_WAIT_S)
            node.destroy_node()
        if rclpy.ok():   # rclpy.try_shutdown is missing in some distributions
            rclpy.shutdown()
    return code, clean


if __name__ == "__main__":
    sys.exit(main())
