"""Moving frames to the model's device and outputs back, with as few host copies as
the device allows, and a count of the bytes moved.

* On the CPU nothing is copied: the frame is wrapped as it is (read-only message
  buffers included; nothing writes to it) and the outputs are the result tensors'
  own memory. Only a batch of several frames is stacked, in one copy.
* On CUDA the frame (or each frame of a batch, into its slot) is copied once into a
  pinned staging buffer and uploaded asynchronously from there (an upload from
  pageable memory stages through a driver buffer anyway, synchronously), into the
  backend's own input buffer when it has one; each output is copied back, non-blocking,
  into a pinned buffer, with one synchronisation for all of them, and returned as a
  numpy view of that buffer.

Pinned buffers are kept per name and reused for the next frame of the same shape,
but only once every array handed out over a buffer has been released: a caller that
keeps a frame's outputs (an evaluation waiting for ground truth, a queue) keeps them
intact, and the next frame gets a new buffer. A caller that drops them, as the node
does after publishing, gets the same buffers back every frame.
"""
from __future__ import annotations

import warnings
import weakref
from collections import Counter
from typing import Mapping, Sequence

import numpy as np
import torch


_read_only_warned = False


def wrap_frame(frame: np.ndarray) -> torch.Tensor:
    """A CPU tensor over ``frame``'s memory, read-only arrays included. torch warns once
    per process that it could write to a read-only array; frames are only ever read
    here, so that one warning is silenced (warning filters are process-wide and not
    thread-safe to change, hence only until it has fired)."""
    global _read_only_warned
    if frame.flags.writeable or _read_only_warned:
        return torch.from_numpy(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(frame)
    _read_only_warned = True
    return tensor


class CopyCounter(Counter):
    """Bytes moved per kind: ``host`` (memcpy on the host), ``to_device`` and ``to_host``
    (transfers between host and device memory). The benchmark reads it per frame."""

    def add(self, kind: str, nbytes: int) -> None:
        self[kind] += nbytes


class HostBuffers:
    """Host buffers by name, pinned for CUDA, reused while nobody outside holds them."""

    def __init__(self, pin: bool) -> None:
        self.pin = pin
        self.allocations = 0
        self._buffers: dict[str, torch.Tensor] = {}
        self._lent: dict[str, weakref.ref] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A buffer of this shape and dtype that no array handed out earlier still uses."""
        buffer = self._buffers.get(name)
        lent = self._lent.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype or (lent is not None and lent() is not None):
            buffer = self._buffers[name] = torch.empty(shape, dtype=dtype, pin_memory=self.pin)
            self._lent.pop(name, None)
            self.allocations += 1
        return buffer

    def lend(self, name: str) -> np.ndarray:
        """The named buffer as a numpy array; the buffer is not reused while the array
        or any view of it is alive (numpy views keep the array's base alive)."""
        array = self._buffers[name].numpy()
        self._lent[name] = weakref.ref(array.base)
        return array


class Transfer:
    """The predictor's host <-> device copies for one device. ``staged`` (default: on
    CUDA) moves frames and outputs through the reused host buffers; on the CPU it only
    serves to test that path where no GPU is."""

    def __init__(self, device: torch.device, staged: bool | None = None) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.staged = self.cuda if staged is None else staged
        self.buffers = HostBuffers(pin=self.cuda)
        self.counter = CopyCounter()

    def upload(self, frames: Sequence[np.ndarray], into: torch.Tensor | None = None) -> torch.Tensor:
        """Same-shape (H, W, C) uint8 frames -> one (N, H, W, C) tensor on the device.

        Staged (CUDA), each frame is copied once, straight into its slot of a reused
        staging buffer (one per batch size: a node whose batches vary between one and
        three cameras keeps three), and the batch goes up in one transfer, into ``into``
        when given (a backend's own input buffer of that shape). Unstaged, one frame is
        wrapped as it is and several are stacked: the one host copy a batch on the CPU
        cannot avoid."""
        shape = batch_shape(frames)
        if not self.staged:
            return self._wrap(frames)
        name = "frame" if len(frames) == 1 else f"frames[{len(frames)}]"
        staging = self.buffers.get(name, shape, torch.uint8)
        for slot, frame in zip(staging.numpy(), frames):
            np.copyto(slot, frame)      # strided, flipped or padded frames included
        nbytes = staging.numel()
        self.counter.add("host", nbytes)
        target = into if into is not None else torch.empty(staging.shape, dtype=torch.uint8, device=self.device)
        # the staging buffer is rewritten by the next frames only after these frames'
        # outputs were synchronised in ``download``, which orders after this copy
        target.copy_(staging, non_blocking=True)
        self.counter.add("to_device", nbytes)
        return target

    def _wrap(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        if len(frames) > 1:
            stacked = np.stack(frames)
            self.counter.add("host", stacked.nbytes)
            return torch.from_numpy(stacked)
        frame = frames[0]
        if frame.strides and min(frame.strides) < 0:  # e.g. image[:, :, ::-1]: torch needs positive strides
            frame = np.ascontiguousarray(frame)
            self.counter.add("host", frame.nbytes)
        return wrap_frame(frame)[None]

    def download(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Device tensors -> numpy arrays (views of reused pinned buffers on CUDA)."""
        if not self.staged:
            return {name: tensor.numpy() for name, tensor in tensors.items()}
        for name, tensor in tensors.items():
            self.buffers.get(name, tuple(tensor.shape), tensor.dtype).copy_(tensor, non_blocking=True)
            self.counter.add("to_host", tensor.numel() * tensor.element_size())
        if tensors and self.cuda:
            torch.cuda.current_stream(self.device).synchronize()
        return {name: self.buffers.lend(name) for name in tensors}


def batch_shape(frames: Sequence[np.ndarray]) -> tuple[int, ...]:
    """(N, H, W, C) of same-shape frames; a ValueError naming the shapes when they differ."""
    if not frames:
        raise ValueError("no frames to upload")
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise ValueError(f"frames of different shapes cannot run as one batch: {sorted(shapes)}")
    return (len(frames), *frames[0].shape)
