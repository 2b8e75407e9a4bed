"""The benchmark: runs on the CPU at a tiny size, counts MACs right, is fair to its baseline."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import make_card, make_model
from torch import nn

from hydranet_ros.inference import backends
from hydranet_ros.inference.predictor import Predictor
from hydranet_ros.inference.transfer import Transfer
from hydranet_ros.messages import image as image_msgs
from hydranet_ros.tools.bench import main
from hydranet_ros.tools.bench.backend_choice import compare_backends, faster_than, format_comparison
from hydranet_ros.tools.bench.run import strip_options
from hydranet_ros.tools.bench.host_copies import measure_host_copies
from hydranet_ros.tools.bench.measure import count_macs, count_params
from hydranet_ros.tools.bench.report import format_scaling, scaling
from hydranet_ros.tools.bench.run import MODES, Result
from hydranet_ros.tools.bench.variants import NaivePipeline, single_task


def test_macs_of_a_hand_computed_conv_and_linear() -> None:
    conv = nn.Conv2d(4, 8, kernel_size=3, padding=1, groups=2)
    # output 8 x 10 x 12 elements, each (4 / 2) x 3 x 3 multiply-accumulates
    assert count_macs(conv, (1, 4, 10, 12)) == 8 * 10 * 12 * 2 * 3 * 3
    net = nn.Sequential(nn.Conv2d(3, 2, kernel_size=1, stride=2), nn.Flatten(), nn.Linear(2 * 4 * 4, 5))
    assert count_macs(net, (1, 3, 8, 8)) == 2 * 4 * 4 * 3 + 5 * 32


def test_single_task_variants_keep_one_head_and_fewer_parameters() -> None:
    model = make_model(make_card())
    segm, depth = single_task(model, "segm"), single_task(model, "depth")
    assert list(segm.heads) == ["segm"] and list(depth.heads) == ["depth"]
    assert list(model.heads) == ["segm", "depth"]  # the original is untouched
    assert count_params([segm]) < count_params([model]) and count_params([depth]) < count_params([model])
    assert count_params([segm, depth]) > count_params([model])  # stacked: two encoders and decoders
    with torch.no_grad():
        assert set(segm(torch.zeros(1, 3, 32, 32))) == {"segm"}
    with pytest.raises(ValueError, match="unknown task"):
        single_task(model, "normals")


def test_naive_baseline_computes_what_the_predictor_computes() -> None:
    card = make_card()
    model = make_model(card, seed=4)
    image = np.random.default_rng(0).integers(0, 256, size=(45, 70, 3), dtype=np.uint8)
    depth, labels, overlay = NaivePipeline(model, card, torch.device("cpu"))(image)
    fast = Predictor(make_model(card, seed=4), card, device="cpu").predict(image)
    np.testing.assert_allclose(depth, fast.depth, rtol=1e-3, atol=1e-5)
    assert (labels == fast.labels).mean() > 0.99
    assert overlay.shape == fast.overlay.shape and overlay.dtype == np.uint8


def test_cpu_run_writes_every_variant_and_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    assert main(["--device", "cpu", "--resolution", "64x48", "--iters", "2", "--warmup", "1",
                 "--threads", "1", "--no-isolate", "--json", str(out), "--chart", str(chart)]) == 0
    printed = capsys.readouterr().out
    assert "hydranet_vs_stacked_fps" in printed
    assert "HydraNet cost vs pixel count" not in printed  # one resolution, one batch: no scaling to show
    report = json.loads(out.read_text())
    rows = {(r["variant"], r["mode"]): r for r in report["results"]}
    expected = {(v, m) for v in ("segm", "depth", "stacked", "hydranet") for m in MODES} | {("naive", "naive")}
    assert set(rows) == expected
    for row in rows.values():
        assert row["fps"] > 0 and row["p50_ms"] <= row["p99_ms"] and row["gmacs"] > 0 and row["params"] > 0
        assert row["peak_mem_mib"] is None or row["peak_mem_mib"] >= 0
        assert (row["width"], row["height"], row["batch"]) == (64, 48, 1)
    assert rows[("stacked", "model")]["params"] == rows[("segm", "model")]["params"] + rows[("depth", "model")]["params"]
    assert rows[("stacked", "e2e")]["gmacs"] > rows[("hydranet", "e2e")]["gmacs"]
    auto_cpu = "onnxruntime" if backends.onnxruntime_providers() is not None else "compile"
    assert rows[("hydranet", "e2e")]["backend"] == auto_cpu and rows[("naive", "naive")]["precision"] == "fp32"
    meta = report["meta"]
    for key in ("device_name", "torch", "date", "precisions", "batches", "backend_requested", "backends_used",
                "memory_method"):
        assert meta[key]
    assert {"hydranet_vs_stacked_fps", "fast_vs_naive_fps"} <= set(report["comparisons"][-1])
    image = cv2.imread(str(chart))
    assert image is not None and image.shape[0] > 100


def _run(width: int, height: int, batch: int, mean_ms: float, variant: str = "hydranet", mode: str = "model") -> Result:
    return Result(width, height, "fp32", batch, variant, mode, "eager", fps=batch * 1000.0 / mean_ms, mean_ms=mean_ms,
                  p50_ms=mean_ms, p99_ms=mean_ms, peak_mem_mib=None, params=1, gmacs=1.0)


def test_pixel_scaling_is_per_megapixel_and_relative_to_the_largest_frame() -> None:
    rows = scaling([
        _run(2000, 1000, 1, 25.0),           # 2 Mpix: 12500 us/Mpix, the reference
        _run(1000, 500, 1, 10.0),            # 0.5 Mpix: 20000 us/Mpix, 1.6x the reference
        _run(1000, 500, 1, 99.0, "stacked"),  # other variants do not count
        _run(1000, 500, 1, 99.0, "naive", "naive"),
        _run(1000, 500, 1, 99.0, mode="e2e"),  # e2e at one resolution only: nothing to compare
    ])
    assert rows == [
        {"kind": "pixels", "precision": "fp32", "mode": "model", "backend": "eager", "batch": 1,
         "resolution": "1000x500", "mpix": 0.5, "ms_per_frame": 10.0, "us_per_mpix": 20000.0,
         "relative": pytest.approx(1.6)},
        {"kind": "pixels", "precision": "fp32", "mode": "model", "backend": "eager", "batch": 1,
         "resolution": "2000x1000", "mpix": 2.0, "ms_per_frame": 25.0, "us_per_mpix": 12500.0, "relative": 1.0},
    ]
    assert "1000x500" in format_scaling(rows) and "batch size" not in format_scaling(rows)


def test_batch_scaling_is_relative_to_the_smallest_batch() -> None:
    # One resolution: no pixel rows. Batch 2 per frame in 12.5 / 2 ms, batch 4 in 20 / 4 ms.
    rows = scaling([_run(1000, 500, 4, 20.0), _run(1000, 500, 1, 10.0), _run(1000, 500, 2, 12.5)])
    assert [row["kind"] for row in rows] == ["batch"] * 3
    assert [(row["batch"], row["fps"], row["speedup"], row["efficiency"]) for row in rows] == [
        (1, 100.0, 1.0, 1.0), (2, 160.0, pytest.approx(1.6), pytest.approx(0.8)), (4, 200.0, 2.0, 0.5)]
    assert rows[0] == {"kind": "batch", "precision": "fp32", "mode": "model", "backend": "eager",
                       "resolution": "1000x500", "batch": 1, "fps": 100.0, "speedup": 1.0, "efficiency": 1.0}


def test_one_measurement_has_no_scaling() -> None:
    assert scaling([_run(1000, 500, 1, 10.0), _run(2000, 1000, 2, 10.0, "stacked")]) == []
    assert format_scaling([]) == ""


def test_cpu_run_reports_pixel_and_batch_scaling(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    assert main(["--device", "cpu", "--resolution", "64x48", "--resolution", "96x64", "--batch", "1", "--batch", "2",
                 "--variants", "hydranet", "--modes", "model", "--iters", "2", "--warmup", "1", "--threads", "1",
                 "--no-isolate", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "HydraNet cost vs pixel count" in printed and "HydraNet throughput vs batch size" in printed
    rows = json.loads(out.read_text())["scaling"]
    configs = [(batch, resolution) for batch in (1, 2) for resolution in ("64x48", "96x64")]
    assert [(r["batch"], r["resolution"]) for r in rows if r["kind"] == "pixels"] == configs
    by_resolution = sorted(configs, key=lambda config: config[::-1])
    assert [(r["batch"], r["resolution"]) for r in rows if r["kind"] == "batch"] == by_resolution
    for row in rows:
        assert (row["precision"], row["mode"]) == ("fp32", "model")
        numbers = [value for key, value in row.items() if key not in ("kind", "precision", "mode", "backend", "resolution")]
        assert all(math.isfinite(value) and value > 0 for value in numbers)
    assert all(r["relative"] == 1.0 for r in rows if r.get("resolution") == "96x64" and r["kind"] == "pixels")
    assert all(r["speedup"] == r["efficiency"] == 1.0 for r in rows if r["kind"] == "batch" and r["batch"] == 1)


@pytest.mark.parametrize("argv, message", [
    (["--resolution", "64by48"], "WIDTHxHEIGHT"),
    (["--precision", "fp16", "--device", "cpu"], "not supported on the CPU"),
    (["--iters", "0"], "must be >= 1"),
    (["--iters", "many"], "expected an integer, got 'many'"),
    (["--min-run-time", "nan"], "must be a positive finite number"),
    (["--backend", "tpu"], "invalid choice"),
    (["--weights", "/nonexistent.safetensors"], "weights file not found"),
])
def test_bad_flags_give_clear_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cpu", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_corrupted_weights_file_is_refused_before_any_process_starts(weights_file: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    data = bytearray(weights_file.read_bytes())
    data[-1001] ^= 0x10
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cpu", "--weights", str(bad), "--isolate", "--iters", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "flipped.safetensors" in err and "corrupted" in err


def test_isolated_children_get_the_common_flags() -> None:
    argv = ["--device", "cpu", "--variants", "segm", "depth", "--json", "x.json", "--iters=3", "--isolate",
            "--chart=c.png", "--resolution", "64x48"]
    assert strip_options(argv, ("--variants", "--json", "--chart"), ("--isolate", "--no-isolate", "--quiet")) == \
        ["--device", "cpu", "--iters=3", "--resolution", "64x48"]


def test_macs_are_torch_flop_counts_halved_and_match_the_hand_count_on_hydranet() -> None:
    """FlopCounterMode counts 2 FLOPs per multiply-accumulate of every convolution; the
    HydraNet at 640x480 has 4.436 GMAC, as the hand-written counter this replaced found."""
    assert count_macs(make_model(make_card()), (1, 3, 480, 640)) == 4_436_236_800


def test_backends_side_by_side_in_one_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    assert main(["--device", "cpu", "--resolution", "64x48", "--backend", "eager", "--backend", "onnxruntime",
                 "--variants", "hydranet", "stacked", "--modes", "e2e", "--iters", "2", "--warmup", "1",
                 "--threads", "1", "--no-isolate", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    ran = {(r["variant"], r["backend"]) for r in report["results"]}
    installed = backends.onnxruntime_providers() is not None
    assert ran == {(v, b) for v in ("hydranet", "stacked") for b in ("eager", "onnxruntime" if installed else "eager")}
    assert {c["backend"] for c in report["comparisons"]} == {b for _, b in ran}
    assert report["meta"]["backend_requested"] == ["eager", "onnxruntime"]


def test_faster_than_applies_the_margin() -> None:
    medians = {"eager": 0.100, "compile": 0.030, "onnxruntime": 0.033}
    assert faster_than(medians, "onnxruntime", 1.25) == []          # 10 % slower than compile: within the margin
    assert faster_than(medians, "eager", 1.25) == ["compile", "onnxruntime"]
    assert faster_than({"eager": 0.1}, "onnxruntime", 1.25) == ["eager"]  # auto's pick not measured: not vindicated


def test_auto_on_the_cpu_picks_no_backend_the_benchmark_finds_slower() -> None:
    """The choice of ``auto`` is measured, not assumed: on a CI-sized frame every
    installed CPU backend runs the node's per-frame job side by side, and auto's pick
    must not be slower than any of them by more than the margin (medians of
    interleaved rounds, so a busy shared machine slows all of them alike). A wrong
    order in backends.AUTO, or a slow path becoming the default, fails here."""
    card = make_card()
    frame = np.random.default_rng(5).integers(0, 256, size=(75, 101, 3), dtype=np.uint8)  # test_backends' size
    comparison = compare_backends(make_model(card, seed=5), card, torch.device("cpu"), frame, rounds=5,
                                  min_run_time=0.2, warmup=2)
    measured = [row["backend"] for row in comparison["rows"] if row["median_ms"] is not None]
    assert "eager" in measured and comparison["auto"] in measured, format_comparison(comparison)
    assert comparison["faster_than_auto"] == [], format_comparison(comparison)


def test_host_copies_before_and_after_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU there is no bus: before, the decoder's BGR->RGB pass and two message
    copies per output; after, the node's own path: the bgr8 message read in place, the
    channel swap in the network's preprocessing (on the device, which is the host here)
    and one message copy per output."""
    card = make_card()
    p = Predictor(make_model(card), card, device="cpu", backend="eager")
    frame = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    measured = measure_host_copies(p, frame)
    pixels = 48 * 64
    outputs = pixels * (4 + 1 + 3)  # depth float32, labels, overlay RGB
    assert measured["before"] == {"host": pixels * 3 + 2 * outputs, "to_device": 0, "to_host": 0,
                                  "pinned_allocations": 0}
    steps = {"decode": 0, "predictor": 0, "channel order": pixels * 3, "messages": outputs}
    assert measured["after"] == {"host": pixels * 3 + outputs, "to_device": 0, "to_host": 0, "pinned_allocations": 0,
                                 "host_by_step": steps}
    p.transfer = Transfer(torch.device("cpu"), staged=True)   # the CUDA path's host side: one staging copy
    staged = measure_host_copies(p, frame)["after"]
    assert (staged["host_by_step"]["predictor"], staged["to_device"], staged["to_host"]) == (pixels * 3, pixels * 3,
                                                                                           outputs)
    assert staged["pinned_allocations"] == 0                   # the buffers of the first frame are reused
    # the figures come from the real path: a decoder that converted bgr8 on the host shows up
    monkeypatch.setattr(image_msgs, "AS_ARRIVED", {})
    assert measure_host_copies(p, frame)["after"]["host_by_step"] == {**steps, "decode": pixels * 3,
                                                                      "predictor": pixels * 3, "channel order": 0}
    assert main(["--device", "cpu", "--host-copies", "--resolution", "64x48", "--backend", "eager", "--quiet"]) == 0
