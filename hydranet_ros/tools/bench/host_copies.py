"""What a frame costs the host in copies: the predictor's path now, against the path
before it (the version of c3c272f), measured on the same frame and outputs.

Both paths run for real on the device in use and every copy is counted by the bytes
it moves: ``host`` (a memcpy in host memory), ``to_device`` and ``to_host`` (transfers
over the bus), and the pinned buffers allocated per frame. The before path, step by
step as it was: the decoder turned BGR into RGB on the host; the frame was uploaded
from pageable memory (which the driver stages through its own buffer: one more host
copy); each output was copied back into a newly allocated pinned buffer; and the
message builders copied each output twice (``tobytes()``, then ``array.array``).
Now: the frame goes as it is (``channels="bgr"``) through one reused pinned staging
buffer straight into the backend's input, the outputs come back into reused pinned
buffers, and the message builders copy each output once (``messages.builders``).
On the CPU there is no bus: both paths use the result tensors' memory in place, and
the channel swap, now part of the network's preprocessing on the device, is still a
pass over the frame in host memory there; it is counted as such.
"""
from __future__ import annotations

import array
from typing import Sequence

import numpy as np
import torch

from ...inference.colour import to_rgb
from ...inference.predictor import Predictor
from ...inference.transfer import CopyCounter, wrap_frame
from ...messages.builders import byte_array

OUTPUTS = ("depth", "labels", "overlay")
KINDS = ("host", "to_device", "to_host")


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


def current_path(predictor: Predictor, frame_bgr: np.ndarray, outputs: Sequence[str]) -> tuple[CopyCounter, int]:
    """This version's host side of one frame (after a first frame has set up the buffers)."""
    transfer = predictor.transfer
    predictor.predict(frame_bgr, outputs, channels="bgr")  # buffers for this shape
    before, allocations = CopyCounter(transfer.counter), transfer.buffers.allocations
    prediction = predictor.predict(frame_bgr, outputs, channels="bgr")
    counter = CopyCounter({kind: transfer.counter[kind] - before[kind] for kind in KINDS})
    if predictor.device.type == "cpu":  # the device is the host: a channel swap that copies counts
        frame = wrap_frame(frame_bgr)
        swapped = to_rgb(frame, "bgr")
        if swapped.untyped_storage().data_ptr() != frame.untyped_storage().data_ptr():
            counter.add("host", swapped.numel() * swapped.element_size())
    for name in outputs:
        counter.add("host", len(byte_array(np.ascontiguousarray(getattr(prediction, name)))))  # the message's data
    return counter, transfer.buffers.allocations - allocations


def measure_host_copies(predictor: Predictor, frame_bgr: np.ndarray, outputs: Sequence[str] = OUTPUTS) -> dict:
    """Both paths on ``frame_bgr`` (H, W, 3 uint8 in BGR order): a JSON-ready dict."""
    rows = {}
    for name, path in (("before", previous_path), ("after", current_path)):
        counter, allocations = path(predictor, frame_bgr, outputs)
        rows[name] = {**{kind: int(counter[kind]) for kind in KINDS}, "pinned_allocations": allocations}
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
    return "\n".join(lines)
