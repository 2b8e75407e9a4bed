"""What a frame costs the host in copies: the node's path now, against the path before
it (the version of c3c272f), measured on the same frame and outputs.

Both paths run on the device in use and every copy is counted by the bytes it moves:
``host`` (a memcpy in host memory), ``to_device`` and ``to_host`` (transfers over the
bus), and the pinned buffers allocated per frame.

The before path, step by step as it was: the decoder turned BGR into RGB on the host;
the frame was uploaded from pageable memory (which the driver stages through its own
buffer: one more host copy); each output was copied back into a newly allocated pinned
buffer; and the message builders copied each output twice (``tobytes()``, then
``array.array``).

The after path is the node's own code, not a re-enactment: a bgr8 ``Image`` built as
rclpy hands one over (``data`` an ``array.array``) goes through ``decode_frame``, the
predictor's ``predict`` in the frame's channel order and the message builders, as
``node.frames`` does. The predictor counts its own copies (``Transfer.counter``); the
decode and each output message count the bytes of every buffer they produced that is
not a view of their input. A message builder that copied twice would still count once
here: ``test_messages_builders`` holds it to one copy.
On the CPU there is no bus: the outputs are the result tensors' own memory, and the
channel swap of a BGR frame, part of the network's preprocessing on the device, is a
pass over the frame in host memory there; it is counted as such.
"""
from __future__ import annotations

import array
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import torch

from ...inference.colour import to_rgb
from ...inference.predictor import Prediction, Predictor
from ...inference.transfer import CopyCounter, wrap_frame
from ...messages.builders import MessageTypes, image_message, with_byte_array
from ...messages.image import DecodedFrame, data_bytes, decode_frame
from ...messages.topics import OUTPUT_SPECS

OUTPUTS = ("depth", "labels", "overlay")
KINDS = ("host", "to_device", "to_host")
STEPS = ("decode", "predictor", "channel order", "messages")
ENCODINGS = {spec.name: spec.encoding for spec in OUTPUT_SPECS}
# rclpy's message classes as the node's builders fill them (data an array.array, copied
# once): plain objects here, so that the benchmark runs without ROS 2
NODE_TYPES = MessageTypes(image=SimpleNamespace, camera_info=SimpleNamespace, build=with_byte_array)
HEADER = SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0), frame_id="camera")


def previous_path(predictor: Predictor, frame_bgr: np.ndarray, outputs: Sequence[str]) -> tuple[CopyCounter, int]:
    """c3c272f's host side of one frame: bytes moved and pinned buffers allocated."""
    counter, allocations = CopyCounter(), 0
    rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])  # the decoder's BGR -> RGB
    counter.add("host", rgb.nbytes)
    images = torch.from_numpy(rgb)[None]
    if predictor.device.type == "cuda":
        images = images.to(predictor.device)  # pageable: staged by the driver
        counter.add("host", rgb.nbytes)
        counter.add("to_device", rgb.nbytes)
    tensors = {name: t[0] for name, t in predictor.predict_batch(images, outputs).items()}
    host = {}
    for name, tensor in tensors.items():
        if tensor.is_cuda:
            pinned = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            allocations += 1
            pinned.copy_(tensor, non_blocking=True)
            counter.add("to_host", pinned.numel() * pinned.element_size())
            tensor = pinned
        host[name] = tensor
    if predictor.device.type == "cuda":
        torch.cuda.synchronize(predictor.device)
    for array_ in (t.numpy() for t in host.values()):
        data = array_.tobytes()                 # image fields
        counter.add("host", len(data))
        counter.add("host", len(array.array("B", data)))  # the rclpy message's data
    return counter, allocations


def camera_message(frame_bgr: np.ndarray) -> Any:
    """A bgr8 Image as the node receives it from rclpy."""
    return image_message(NODE_TYPES, HEADER, frame_bgr, "bgr8")


def node_frame(predictor: Predictor, msg: Any, outputs: Sequence[str]
               ) -> tuple[DecodedFrame, Prediction, dict[str, Any]]:
    """What ``node.frames`` does with one camera message: decode it, predict in its own
    channel order, build each output's message."""
    frame = decode_frame(msg, "raw", None)
    prediction = predictor.predict(frame.pixels, outputs, frame.channels)
    messages = {name: image_message(NODE_TYPES, msg.header, getattr(prediction, name), ENCODINGS[name])
                for name in outputs}
    return frame, prediction, messages


def _copied(result: np.ndarray, source: np.ndarray) -> int:
    """The bytes of ``result`` when it is a buffer of its own, 0 when it is a view of ``source``."""
    return 0 if np.may_share_memory(result, source) else result.nbytes


def current_path(predictor: Predictor, frame_bgr: np.ndarray, outputs: Sequence[str]
                 ) -> tuple[CopyCounter, int, dict[str, int]]:
    """The node's host side of one frame (after a first frame has set up the buffers):
    bytes moved, pinned buffers allocated, and the host bytes by step."""
    msg, transfer = camera_message(frame_bgr), predictor.transfer
    node_frame(predictor, msg, outputs)  # buffers for this shape
    before, allocations = CopyCounter(transfer.counter), transfer.buffers.allocations
    frame, prediction, messages = node_frame(predictor, msg, outputs)
    counter = CopyCounter({kind: transfer.counter[kind] - before[kind] for kind in KINDS})
    steps = {"decode": _copied(frame.pixels, data_bytes(msg.data)), "predictor": counter["host"],
             "channel order": _channel_pass(predictor, frame),
             "messages": sum(_copied(data_bytes(m.data), getattr(prediction, name)) for name, m in messages.items())}
    counter["host"] = sum(steps.values())
    return counter, transfer.buffers.allocations - allocations, steps


def _channel_pass(predictor: Predictor, frame: DecodedFrame) -> int:
    """On the CPU the device is the host: a conversion to RGB that copies the frame counts."""
    if predictor.device.type != "cpu":
        return 0
    pixels = wrap_frame(frame.pixels)
    swapped = to_rgb(pixels, frame.channels)
    same = swapped.untyped_storage().data_ptr() == pixels.untyped_storage().data_ptr()
    return 0 if same else swapped.numel() * swapped.element_size()


def measure_host_copies(predictor: Predictor, frame_bgr: np.ndarray, outputs: Sequence[str] = OUTPUTS) -> dict:
    """Both paths on ``frame_bgr`` (H, W, 3 uint8 in BGR order): a JSON-ready dict."""
    counter, allocations = previous_path(predictor, frame_bgr, outputs)
    rows = {"before": {**{kind: int(counter[kind]) for kind in KINDS}, "pinned_allocations": allocations}}
    counter, allocations, steps = current_path(predictor, frame_bgr, outputs)
    rows["after"] = {**{kind: int(counter[kind]) for kind in KINDS}, "pinned_allocations": allocations,
                     "host_by_step": {step: int(steps[step]) for step in STEPS}}
    return {"resolution": f"{frame_bgr.shape[1]}x{frame_bgr.shape[0]}", "device": str(predictor.device),
            "backend": predictor.backend, "outputs": list(outputs), **rows}


def format_host_copies(measured: dict) -> str:
    lines = [f"Host copies per frame at {measured['resolution']} on {measured['device']} "
             f"({', '.join(measured['outputs'])}; MB = 10^6 bytes)",
             f"{'path':<7} {'host MB':>8} {'to device MB':>13} {'to host MB':>11} {'pinned allocs':>14}", "-" * 57]
    for name in ("before", "after"):
        row = measured[name]
        lines.append(f"{name:<7} {row['host'] / 1e6:8.1f} {row['to_device'] / 1e6:13.1f} {row['to_host'] / 1e6:11.1f} "
                     f"{row['pinned_allocations']:14d}")
    steps = measured["after"]["host_by_step"]
    lines.append("after, host MB by step: " + ", ".join(f"{step} {steps[step] / 1e6:.1f}" for step in STEPS))
    return "\n".join(lines)
