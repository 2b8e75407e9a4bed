"""hydranet_bench --cameras N: one batched network against N separate ones, on the CPU at a
CI size. A measurement, not a timing assertion: the run completes and reports both setups."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hydranet_ros.tools.bench import main
from hydranet_ros.tools.bench.cameras import CameraResult, format_cameras


def test_cpu_run_reports_batched_and_separate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cameras.json"
    # both setups in their own processes (--isolate, the CPU's default), as the README's figures are taken
    assert main(["--device", "cpu", "--cameras", "3", "--resolution", "64x48", "--iters", "2", "--warmup", "1",
                 "--backend", "eager", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["cameras"]
    assert [(r["setup"], r["cameras"], r["models"]) for r in rows] == [("batched", 3, 1), ("separate", 3, 3)]
    for row in rows:
        assert (row["width"], row["height"], row["backend"]) == (64, 48, "eager")
        assert row["fps"] > 0 and row["round_p50_ms"] > 0 and row["peak_mem_mib"] is not None
    printed = capsys.readouterr().out
    assert "batched/separate at 64x48:" in printed and "the throughput" in printed
    assert json.loads(out.read_text())["results"] == []        # --cameras replaces the variants


def test_the_table_says_batched_over_separate() -> None:
    rows = [CameraResult("batched", 2, 1, 64, 48, "fp32", "eager", fps=20.0, round_p50_ms=100.0, round_p99_ms=110.0,
                         peak_mem_mib=30.0),
            CameraResult("separate", 2, 2, 64, 48, "fp32", "eager", fps=10.0, round_p50_ms=200.0, round_p99_ms=210.0,
                         peak_mem_mib=60.0)]
    table = format_cameras(rows)
    assert "2.00x the throughput, 0.50x the peak memory" in table
    assert format_cameras(rows[:1]).count("\n") == 2 and format_cameras([]) == ""


def test_cameras_must_be_positive(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--cameras", "0"])
    assert "--cameras" in capsys.readouterr().err
