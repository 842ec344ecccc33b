"""The nvml meter against a real GPU under load."""

from __future__ import annotations

import time

from pytest_energy.meters.nvml import NvmlMeter


def _busy(seconds: float) -> None:
    import torch

    a = torch.randn(4096, 4096, device="cuda:0", dtype=torch.bfloat16)
    out = torch.empty_like(a)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        torch.matmul(a, a, out=out)
        torch.cuda.synchronize()


def test_counter_and_polled_power_agree_over_a_busy_window() -> None:
    counter = NvmlMeter([0])
    polled = NvmlMeter([0], source="polled", poll_interval_s=0.02)
    try:
        _busy(1.0)  # clocks settle
        counter_start, polled_start = counter.read(), polled.read()
        _busy(5.0)
        counter_j = counter.read() - counter_start
        polled_j = polled.read() - polled_start
    finally:
        polled.close()
        counter.close()
    assert counter_j > 5 * 20, f"a busy GPU draws more than 20 W; counter saw {counter_j:.1f} J"
    assert abs(polled_j - counter_j) / counter_j < 0.15, (counter_j, polled_j)


def test_fingerprint_names_the_gpu_and_its_power_limit() -> None:
    meter = NvmlMeter([0])
    try:
        fingerprint = meter.fingerprint()
    finally:
        meter.close()
    assert fingerprint.get("gpu"), fingerprint
    assert fingerprint["power_limit_w"] != "n/a", fingerprint
    assert meter.update_period_s > 0
