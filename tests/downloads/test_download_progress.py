"""Progress maths: the windowed rate, the ETA, percentages and per-file counters."""

from __future__ import annotations

import pytest

from mlx_manager.downloads.progress import (
    FileProgress,
    FileState,
    RateMeter,
    Transfer,
    eta_s,
    percent,
)


def test_rate_needs_half_a_second_of_samples() -> None:
    meter = RateMeter(window_s=5.0)
    assert meter.rate(0.0) is None
    meter.record(0.0, 0)
    meter.record(0.2, 1000)
    assert meter.rate(0.3) is None
    assert meter.rate(1.0) == pytest.approx(1000.0)


def test_rate_over_the_window_only() -> None:
    meter = RateMeter(window_s=2.0, min_gap_s=0.0)
    for second in range(11):  # 100 B/s for 10 s ...
        meter.record(float(second), 100 * second)
    assert meter.rate(10.0) == pytest.approx(100.0)
    for second in range(11, 14):  # ... then 1000 B/s: the window forgets the slow part
        meter.record(float(second), 1000 + 1000 * (second - 10))
    assert meter.rate(13.0) == pytest.approx(1000.0)


def test_rate_falls_while_stalled() -> None:
    meter = RateMeter(window_s=4.0, min_gap_s=0.0)
    meter.record(0.0, 0)
    meter.record(2.0, 2000)
    assert meter.rate(2.0) == pytest.approx(1000.0)
    assert meter.rate(4.0) == pytest.approx(500.0)  # no bytes for 2 s
    assert meter.rate(10.0) == pytest.approx(0.0)  # the window holds no progress


def test_close_samples_merge() -> None:
    meter = RateMeter(window_s=5.0, min_gap_s=0.1)
    meter.record(0.0, 0)
    for i in range(1, 100):
        meter.record(1.0 + i * 0.001, i * 10)
    assert len(meter._samples) == 2
    assert meter.rate(2.0) == pytest.approx(990 / 2.0)


def test_eta_and_percent() -> None:
    assert eta_s(1000, 250.0) == pytest.approx(4.0)
    assert eta_s(0, None) == 0.0
    assert eta_s(10, None) is None and eta_s(10, 0.0) is None
    assert percent(1, 3) == 33.3
    assert percent(5, 5) == 100.0 and percent(7, 5) == 100.0
    assert percent(0, 0) == 100.0


def test_transfer_counts_files_and_retries() -> None:
    files = [FileProgress("config.json", 10), FileProgress("model.safetensors", 100)]
    files[0].finish()  # found in the cache: done, but never part of the rate
    transfer = Transfer(files)
    assert transfer.done_bytes == 10 and transfer.total_bytes == 110
    transfer.add(1, 60, now=0.0)
    assert files[1].state is FileState.DOWNLOADING and files[1].done_bytes == 60
    transfer.add(1, -60, now=0.5)  # a retry that got the whole file again drops its bytes
    transfer.add(1, 120, now=1.0)  # the file was larger than listed: size grows with it
    assert files[1].size == 120 and transfer.done_bytes == 130
    assert transfer.transferred == 120
    files[1].finish()
    assert files[1].state is FileState.DONE and files[1].done_bytes == 120
