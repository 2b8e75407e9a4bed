"""The one place that turns a camera frame into depth, labels and overlays.

The node, the replay tool and the benchmark all call ``Predictor``. The frame goes
to the model's device as it is, in its own channel order (RGB, BGR, RGBA, BGRA or
mono); every step after the upload (channel order, normalise, model, upsample,
argmax, palette, blend, depth colouring) runs there, and each requested output is
copied back once (``transfer.py``).

How the network itself runs is the ``backend`` option (``backends.py``): eager
PyTorch, torch.compile, CUDA graphs, ONNX Runtime or TensorRT, or ``auto`` (the
default: the fastest the device offers, CUDA graphs on a GPU, ONNX Runtime on the
CPU); an unavailable one falls back, with a warning, and ``Predictor.backend`` names
the one that actually runs. Fixed-shape backends compile or capture on the first
frame of each size, so call ``warmup(height, width)`` before the first real frame,
in the thread that will run the frames (torch.compile keeps its CUDA graphs per thread).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..common.pinhole import PinholeK
from ..model import HydraNet
from .backends import build_runner
from .colour import CHANNEL_ORDERS, blend, colorize_depth, colormap_lut, palette_lut, to_rgb

from .device import PRECISIONS, choose_precision, resolve_device
from .frame_network import FrameNetwork
from .onnxruntime_runner import OnnxSource
from .points import (
    PointsOptions,
    frame_points,
    host_points,
    intrinsics_tensor,
    point_grid,
)
from .transfer import Transfer, batch_shape
from .weights import ModelCard, load_weights

log = logging.getLogger(__name__)

OUTPUTS = ("depth", "labels", "overlay", "depth_colour", "segm_colour")
DEFAULT_OUTPUTS = ("depth", "labels", "overlay")
# the labelled point cloud (``points.py``): it needs the camera's intrinsics, so it is not in OUTPUTS
POINTS = "points"


@dataclass
class Prediction:
    """Outputs at the input resolution; those not requested are ``None``.

    On CUDA the arrays are views of pinned buffers that the predictor reuses for a
    later frame once they are released; keeping them (or views of them) is safe, it
    only makes the next frame take new buffers."""

    depth: np.ndarray | None = None         # (H, W) float32, metres
    labels: np.ndarray | None = None        # (H, W) uint8 class ids
    overlay: np.ndarray | None = None       # (H, W, 3) uint8 RGB, image blended with class colours
    depth_colour: np.ndarray | None = None  # (H, W, 3) uint8 RGB
    segm_colour: np.ndarray | None = None   # (H, W, 3) uint8 RGB, class colours alone
    # structured x, y, z, rgb, label (``points.point_dtype``): (h, w) strided grid if organized, else (P,)
    points: np.ndarray | None = None


def apply_depth_activation(depth: torch.Tensor, activation: str) -> torch.Tensor:
    """The model card's ``depth_activation`` on raw depth; the loss and the benchmark's
    baseline call this too, so all of them see what the predictor outputs."""
    if activation == "abs":
        return depth.abs()
    if activation == "relu":
        return depth.clamp_min(0.0)
    if activation == "none":
        return depth
    raise ValueError(f"unknown depth activation {activation!r}")


def check_image(image: np.ndarray, channels: str = "rgb") -> np.ndarray:
    """``image`` as an (H, W, C) uint8 array for ``channels`` (a view), or a ValueError
    that says what was expected."""
    if channels not in CHANNEL_ORDERS:
        raise ValueError(f"channels must be one of {', '.join(CHANNEL_ORDERS)}, got {channels!r}")
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    count = CHANNEL_ORDERS[channels]
    if channels == "mono" and image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] != count:
        layout = "(H, W) or (H, W, 1)" if channels == "mono" else f"(H, W, {count})"
        raise ValueError(f"expected an {layout} {channels} image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {image.shape}")
    return image


def _wanted(outputs: Iterable[str]) -> set[str]:
    wanted = set(outputs)
    unknown = wanted - set(OUTPUTS) - {POINTS}
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {', '.join(OUTPUTS)}, {POINTS}")
    return wanted


class Predictor:
    def __init__(self, model: HydraNet | None, card: ModelCard, device: str | torch.device = "auto",
                 precision: str = "fp32", overlay_alpha: float = 0.5, depth_colormap: str = "turbo",
                 depth_range: tuple[float, float] | None = None, backend: str = "auto",
                 onnx_model: OnnxSource | None = None) -> None:
        """``model`` may be None when ``onnx_model`` (an exported graph, path or bytes)
        is given for the ONNX backends; they export ``model`` themselves otherwise.
        ``precision`` and ``backend`` may be ``auto``; one the device cannot run falls
        back to the next best with a warning, and the attributes of the same names
        say what runs."""
        self.device = resolve_device(device)
        self.requested_precision = precision
        self.precision = choose_precision(precision, self.device, backend)
        self.dtype = PRECISIONS[self.precision]
        self.card = card
        self.set_display(overlay_alpha, depth_colormap, depth_range)
        memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        self.module = None if model is None else \
            model.eval().to(device=self.device, dtype=self.dtype, memory_format=memory_format)
        self.network = FrameNetwork(self.module, card.mean, card.std, self.dtype, memory_format, self.device)
        self.requested_backend = backend
        self._runner = build_runner(backend, self.network, self.device, self.precision, onnx_model)
        # on the device once, not uploaded with every frame
        self._palette = torch.from_numpy(palette_lut(card.palette)).to(self.device)
        self.transfer = Transfer(self.device)

    def set_display(self, overlay_alpha: float = 0.5, depth_colormap: str = "turbo",
                    depth_range: tuple[float, float] | None = None) -> None:
        """Set the display options (the node changes them while frames run); ``depth_range``
        None = the card's. A bad value raises a ValueError and changes nothing."""
        if not 0.0 <= overlay_alpha <= 1.0:
            raise ValueError(f"overlay_alpha must be in [0, 1], got {overlay_alpha}")
        span = tuple(depth_range) if depth_range is not None else tuple(self.card.depth_range)
        if not 0.0 <= span[0] < span[1]:
            raise ValueError(f"depth_range must satisfy 0 <= min < max, got {span}")
        lut = torch.from_numpy(colormap_lut(depth_colormap)).to(self.device)
        self.overlay_alpha, self.depth_range, self.depth_colormap, self._depth_lut = \
            overlay_alpha, span, depth_colormap, lut

    @property
    def class_names(self) -> list[str]:
        return list(self.card.class_names)

    @property
    def backend(self) -> str:
        """The backend that actually runs (after any fallback), for logs and reports."""
        return self._runner.name

    def run_model(self, images: torch.Tensor, channels: str = "rgb") -> dict[str, torch.Tensor]:
        """Raw head outputs of the backend for (N, H, W, C) uint8 frames on the device
        (the backends take normalisation with them). With CUDA graphs they are buffers
        that the next call overwrites."""
        return self._runner(images, channels)

    @torch.inference_mode()
    def predict_batch(self, images: torch.Tensor, outputs: Iterable[str] = DEFAULT_OUTPUTS,
                      channels: str = "rgb", camera: PinholeK | Sequence[PinholeK] | None = None,
                      points: PointsOptions | None = None) -> dict[str, torch.Tensor]:
        """(N, H, W, C) uint8 tensor in ``channels`` order (``colour.CHANNEL_ORDERS``)
        -> requested outputs as device tensors at input resolution. ``points`` is the
        (N, h, w, 5) strided grid of ``points.point_grid``, for ``camera`` (one for every
        frame or one per frame): ``points.frame_points`` takes one frame's cloud from it."""
        wanted = _wanted(outputs)
        cloud = self._points_request(wanted, camera, points, images.shape)
        images = images.to(self.device, non_blocking=True)
        raw = self._runner(images, channels)
        return self._postprocess(raw, images, channels, wanted, cloud)

    def _points_request(self, wanted: set[str], camera: PinholeK | Sequence[PinholeK] | None,
                        options: PointsOptions | None,
                        shape: Sequence[int]) -> tuple[torch.Tensor, PointsOptions] | None:
        """The checked intrinsics on the device, and the options, when the points are wanted."""
        if POINTS not in wanted:
            return None
        return intrinsics_tensor(camera, shape[0], shape[1], shape[2], self.device), options or PointsOptions()

    def _postprocess(self, raw: dict[str, torch.Tensor], images: torch.Tensor, channels: str,
                     wanted: set[str], cloud: tuple[torch.Tensor, PointsOptions] | None = None
                     ) -> dict[str, torch.Tensor]:
        size = images.shape[1:3]
        result: dict[str, torch.Tensor] = {}
        # a BGR frame's channel swap is a pass over the frame: at most once, and only when used
        rgb = to_rgb(images, channels) if wanted & {"overlay", POINTS} else None
        if wanted & {"depth", "depth_colour", POINTS}:
            depth = F.interpolate(raw["depth"].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
            depth = apply_depth_activation(depth, self.card.depth_activation)
            if "depth" in wanted:
                result["depth"] = depth
            if "depth_colour" in wanted:
                result["depth_colour"] = colorize_depth(depth, self._depth_lut, self.depth_range)
        if wanted & {"labels", "overlay", "segm_colour", POINTS}:
            logits = F.interpolate(raw["segm"], size=size, mode="bilinear", align_corners=False)
            labels = logits.argmax(dim=1).to(torch.uint8)
            if "labels" in wanted:
                result["labels"] = labels
            if wanted & {"overlay", "segm_colour"}:   # a full-size gather: not for labels or points alone
                colours = self._palette[labels.long()]
                if "segm_colour" in wanted:
                    result["segm_colour"] = colours
                if "overlay" in wanted:
                    result["overlay"] = blend(rgb, colours, self.overlay_alpha)
        if cloud is not None:
            result[POINTS] = point_grid(depth, labels, rgb, *cloud, palette=self._palette)
        return result

    @torch.inference_mode()
    def predict(self, image: np.ndarray, outputs: Iterable[str] = DEFAULT_OUTPUTS, channels: str = "rgb",
                camera: PinholeK | None = None, points: PointsOptions | None = None) -> Prediction:
        """One uint8 frame -> ``Prediction`` with the requested outputs. ``channels`` is
        the frame's channel order: ``rgb`` (H, W, 3), ``bgr`` (what OpenCV and most
        cameras give), ``rgba``/``bgra`` (H, W, 4) or ``mono`` (H, W); the conversion
        to RGB happens on the device, after the upload. The ``points`` output (a labelled
        cloud, ``points.py``) needs ``camera``, the frame's intrinsics; ``points`` are its
        options (default ``PointsOptions()``). A camera that does not fit the frame raises
        ``CameraError`` before anything runs."""
        image = check_image(image, channels)
        wanted = _wanted(outputs)
        shape = (1, *image.shape)
        cloud = self._points_request(wanted, camera, points, shape)
        images = self.upload([image], channels)
        tensors = self._postprocess(self._runner(images, channels), images, channels, wanted, cloud)
        frame = {name: t[0] for name, t in tensors.items()}
        if cloud is not None:  # only the kept points (dense) or the strided grid (organized) go to the host
            frame[POINTS] = frame_points(frame[POINTS], cloud[1].organized)
        host = self.transfer.download(frame)
        if cloud is not None:
            host[POINTS] = host_points(host[POINTS], self.card.model.num_classes)
        return Prediction(**host)

    @torch.inference_mode()  # a CUDA graph's input is an inference tensor: written only in this mode
    def upload(self, frames: Sequence[np.ndarray], channels: str = "rgb") -> torch.Tensor:
        """Same-shape frames, checked (``check_image``) -> one (N, H, W, C) uint8 batch on
        the device, for ``predict_batch``: a backend with its own input buffer (a CUDA
        graph) gets them uploaded straight into it, with no further copy."""
        shape = batch_shape(frames)
        return self.transfer.upload(frames, self._runner.input_buffer(shape, channels, self.device))

    def to_host(self, tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Device tensors (e.g. from ``predict_batch``) -> numpy arrays, through the same
        reused buffers as ``predict``."""
        return self.transfer.download(tensors)

    def warmup(self, height: int = 480, width: int = 640, iterations: int = 2, channels: str = "rgb") -> None:
        """Run dummy frames so that lazy initialisation (cuDNN autotuning, allocator, and for
        the compile and cudagraph backends compilation or capture of this size) happens now.
        Give the channel order the camera sends: CUDA graphs are captured per order."""
        dummy = np.zeros((height, width, CHANNEL_ORDERS[channels]), dtype=np.uint8)
        for _ in range(iterations):
            self.predict(dummy, OUTPUTS, channels)


def load_predictor(path: str | Path, device: str = "auto", precision: str = "fp32", **options) -> Predictor:
    """Load a weights file (or an exported ``.onnx`` graph, which runs on the
    onnxruntime backend for ``backend="auto"``, or on ``"tensorrt"``) and return a ready
    ``Predictor``; ``options`` go to ``Predictor``."""
    if Path(path).suffix == ".onnx":
        from .onnx import read_onnx_card  # local: only ONNX users need onnxruntime

        if options.get("backend", "auto") == "auto":
            options["backend"] = "onnxruntime"
        return Predictor(None, read_onnx_card(path), device=device, precision=precision,
                         onnx_model=Path(path), **options)
    model, card = load_weights(path)
    return Predictor(model, card, device=device, precision=precision, **options)
