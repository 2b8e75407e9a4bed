"""ONNX export: checked against PyTorch, card in the file, loadable by path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_card, make_model

from hydranet_ros import load_predictor
from hydranet_ros.common.sizes import parse_size
from hydranet_ros.inference.onnx import compare_with_torch, export_onnx, read_onnx_card, within_tolerance
from hydranet_ros.inference.weights import WeightsError
from hydranet_ros.tools.export import main


@pytest.fixture(scope="module", autouse=True)
def onnx_installed() -> None:
    """Every test here needs the optional [onnx] extra. Skipped test by test, not with a
    module-level importorskip: under ROS 2's launch_testing pytest plugin (colcon test)
    that would skip the whole session."""
    for module in ("onnx", "onnxruntime"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[onnx]')")


@pytest.fixture(scope="module")
def model():
    return make_model(make_card(), seed=11)


@pytest.fixture(scope="module")
def graph(model) -> bytes:
    """Dynamic batch, height and width; no card."""
    return export_onnx(model)


def test_dynamic_export_matches_pytorch_at_odd_sizes_and_batches(model, graph: bytes) -> None:
    rows = compare_with_torch(model, graph, [(75, 101), (33, 47)], batch=2)
    assert {row["output"] for row in rows} == {"segm", "depth"}
    for row in rows:
        assert within_tolerance(row, 1e-4), row


def test_fixed_size_export_has_a_static_input(model) -> None:
    import onnxruntime as ort

    graph = export_onnx(model, fixed_size=(48, 64), batch=1)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 48, 64]
    assert all(within_tolerance(row, 1e-4) for row in compare_with_torch(model, graph, [(48, 64)]))


def test_cli_writes_a_graph_the_predictor_loads_by_path(weights_file: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "model.onnx"
    assert main([str(weights_file), "-o", str(out), "--check-size", "101x75"]) == 0
    printed = capsys.readouterr().out
    assert "101x75 segm" in printed and "ok" in printed and "wrote" in printed
    card = read_onnx_card(out)
    assert card.class_names == make_card().class_names
    onnx = load_predictor(out, device="cpu")
    assert onnx.backend == "onnxruntime" and onnx.module is None
    image = np.random.default_rng(2).integers(0, 256, size=(75, 101, 3), dtype=np.uint8)
    eager = load_predictor(weights_file, device="cpu").predict(image)
    result = onnx.predict(image)
    np.testing.assert_allclose(result.depth, eager.depth, rtol=1e-4, atol=1e-6)
    assert (result.labels == eager.labels).mean() > 0.999


def test_bad_inputs_give_clear_errors(weights_file: Path, tmp_path: Path, model, graph: bytes,
                                      capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_size("640by480")
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export_onnx(model, opset=13)
    for argv, message in [([str(tmp_path / "missing.safetensors")], "weights file not found"),
                          ([str(weights_file), "--fixed-size", "64x"], "WIDTHxHEIGHT")]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(graph)
    with pytest.raises(WeightsError, match="no HydraNet model card"):
        read_onnx_card(bare)


def test_a_graph_that_disagrees_is_not_written(weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    from hydranet_ros.tools import export

    monkeypatch.setattr(export, "compare_with_torch", lambda *a, **k: [
        {"width": 101, "height": 75, "output": "depth", "max_abs_diff": 0.5, "scale": 1.0}])
    out = tmp_path / "bad.onnx"
    assert main([str(weights_file), "-o", str(out)]) == 1
    assert not out.exists() and "not written" in capsys.readouterr().err
