import math

import numpy as np
import pytest

from hydranet_ros.common.timing import StageTimer, format_table, stage_stats


def test_stage_stats_percentiles_in_milliseconds():
    stats = stage_stats([i / 1000.0 for i in range(1, 101)])  # 1 .. 100 ms
    assert stats.count == 100
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p95_ms == pytest.approx(np.percentile(np.arange(1, 101), 95))
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.max_ms == pytest.approx(100.0)
    assert stats.total_s == pytest.approx(5.05)


def test_empty_stage_has_no_numbers():
    stats = stage_stats([])
    assert stats.count == 0 and math.isnan(stats.p50_ms)


def test_timer_keeps_declared_order_and_records_stages():
    timer = StageTimer(("decode", "predict"))
    timer.record("write", 0.002)
    with timer.stage("predict"):
        pass
    timer.record("decode", 0.001)
    stats = timer.stats()
    assert list(stats) == ["decode", "predict", "write"]
    assert stats["decode"].p50_ms == pytest.approx(1.0)
    assert stats["predict"].count == 1 and stats["predict"].max_ms >= 0
    assert timer.samples("write") == [0.002]


def test_stage_records_even_when_the_body_raises():
    timer = StageTimer()
    with pytest.raises(RuntimeError):
        with timer.stage("predict"):
            raise RuntimeError("boom")
    assert timer.stats()["predict"].count == 1


def test_table_lists_every_stage_and_percentile():
    timer = StageTimer(("decode", "predict"))
    timer.record("decode", 0.0015)
    table = format_table(timer.stats())
    lines = table.splitlines()
    assert lines[0].split() == ["stage", "count", "mean", "p50", "p95", "p99", "max"]
    assert lines[2].split()[:3] == ["decode", "1", "1.50"]
    assert lines[3].split()[:2] == ["predict", "0"]
