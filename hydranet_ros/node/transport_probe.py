"""How many raw camera frames reach a subscriber on this machine, per size and QoS.

    python -m hydranet_ros.node.transport_probe --sizes 640x480,1920x1080 --publisher reliable

A camera stand-in (a child process, as a camera driver is) publishes ``--frames``
rgb8 frames at ``--rate`` Hz with the ``--publisher`` reliability; this process
subscribes as hydranet_node does (keep last 1) with each ``--subscriber`` reliability
(``auto`` is the node's default: what the publisher offers) and counts what arrives.
Run it under the RMW and DDS settings the node will run under (RMW_IMPLEMENTATION,
FASTRTPS_DEFAULT_PROFILES_FILE); ``--publisher-profile`` gives the camera stand-in a
Fast DDS profile of its own. The README's "QoS" section holds what it measured.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Sequence

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..common.arguments import positive_float, positive_int, size_arg
from .qos import BEST_EFFORT, RELIABLE, QosChoice, choose_reliability
from .ros_messages import qos_profile

TOPIC = "hydranet_transport_probe/image"
MATCH_TIMEOUT_S = 20.0


def _sizes(text: str) -> list[tuple[int, int]]:
    return [size_arg(part) for part in text.split(",")]


def publish(size: tuple[int, int], rate: float, frames: int, reliability: str) -> None:
    """The camera stand-in: wait for the subscriber, then publish at ``rate``."""
    rclpy.init()
    node = Node("hydranet_transport_probe_camera")
    publisher = node.create_publisher(Image, TOPIC, qos_profile(QosChoice(reliability, depth=10)))
    width, height = size
    msg = Image(width=width, height=height, encoding="rgb8", step=width * 3)
    msg.data = np.random.default_rng(0).integers(0, 256, width * height * 3, dtype=np.uint8).tobytes()
    deadline = time.monotonic() + MATCH_TIMEOUT_S
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)   # let discovery settle on both sides
    start = time.monotonic()
    for index in range(frames):
        msg.header.stamp.sec = index + 1
        publisher.publish(msg)
        time.sleep(max(0.0, start + (index + 1) / rate - time.monotonic()))
    time.sleep(1.0)   # the last frames are still on their way
    node.destroy_node()
    rclpy.shutdown()


def measure(size: tuple[int, int], rate: float, frames: int, publisher: str, subscriber: str,
            publisher_profile: str | None) -> int:
    """Frames of ``frames`` that reached a keep-last-1 subscription with ``subscriber`` reliability."""
    context = Context()
    rclpy.init(context=context)
    node = Node("hydranet_transport_probe", context=context)
    stamps: set[int] = set()
    node.create_subscription(Image, TOPIC, lambda msg: stamps.add(msg.header.stamp.sec),
                             qos_profile(QosChoice(subscriber, depth=1)))
    env = dict(os.environ)
    if publisher_profile is not None:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = env["FASTDDS_DEFAULT_PROFILES_FILE"] = publisher_profile
    child = subprocess.Popen([sys.executable, "-m", __spec__.name, "--publish", f"{size[0]}x{size[1]}",
                              "--rate", str(rate), "--frames", str(frames), "--publisher", publisher], env=env)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    while child.poll() is None:
        executor.spin_once(timeout_sec=0.05)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
    return len(stamps)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hydranet_ros.node.transport_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_sizes, default="640x480,800x600,1280x720,1920x1080",
                        help="frame sizes WIDTHxHEIGHT, comma-separated")
    parser.add_argument("--rate", type=positive_float, default=30.0, help="frames per second")
    parser.add_argument("--frames", type=positive_int, default=60, help="frames per measurement")
    parser.add_argument("--publisher", choices=(RELIABLE, BEST_EFFORT), default=RELIABLE,
                        help="the camera's reliability")
    parser.add_argument("--subscriber", default="best_effort,reliable,auto",
                        help="the subscription's reliabilities to try, comma-separated (auto = the node's default)")
    parser.add_argument("--publisher-profile", help="a Fast DDS XML profile for the camera stand-in only")
    parser.add_argument("--publish", type=size_arg, help=argparse.SUPPRESS)   # the child process: be the camera
    args = parser.parse_args(argv)
    if args.publish:
        publish(args.publish, args.rate, args.frames, args.publisher)
        return 0
    print(f"{'size':>10} {'rate':>5} {'camera':>12} {'subscription':>20} {'received':>9}")
    for size in args.sizes:
        text = f"{size[0]}x{size[1]}"
        for requested in args.subscriber.split(","):
            subscriber = choose_reliability(requested, [args.publisher])
            got = measure(size, args.rate, args.frames, args.publisher, subscriber, args.publisher_profile)
            label = subscriber if requested == subscriber else f"{requested} ({subscriber})"
            print(f"{text:>10} {args.rate:>5g} {args.publisher:>12} {label:>20} {got:>4}/{args.frames}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
