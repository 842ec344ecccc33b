"""The session's measured repeat: a whole run in one window, extended when too short."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.engine import Ledger
from pytest_energy.errors import WindowTooShort
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.metrics import QuestionRecord
from pytest_energy.mmlu import Question
from pytest_energy.session import EnergySession
from pytest_energy.settings import Settings
from pytest_energy.testing import FakeMeter

QUESTION = Question("anatomy", "Which?", ("a", "b", "c", "d"), "A", "x.csv:1")


class FakeEngine:
    sync = None


class FakeRunner:
    """Each run costs 1 J on the meter and ``seconds`` of time, half prefill, half decode."""

    def __init__(self, meter: EnergyMeter, seconds: float) -> None:
        self.meter = meter
        self.seconds = seconds
        self.runs = 0

    def run(
        self, engine: Any, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        self.runs += 1
        for phase in ("prefill", "decode"):
            with self.meter.window(strict=False) as w:
                time.sleep(self.seconds / 2)
                assert isinstance(self.meter.meter, FakeMeter)
                self.meter.meter.advance(0.5)
            ledger.add(phase, w)
        return [QuestionRecord("anatomy", "A", "A", 10, 2)]


def session_with(meter: EnergyMeter, tmp_path: Path) -> EnergySession:
    session = EnergySession(
        Settings(enabled=True, rootdir=tmp_path, baseline_path=tmp_path / "b.json"),
        writes_files=False,
    )
    session._meter = meter
    return session


def test_a_run_too_short_for_the_counter_is_repeated_inside_one_window(tmp_path: Path) -> None:
    meter = EnergyMeter(FakeMeter(), min_window_s=0.05)
    runner = FakeRunner(meter, seconds=0.02)
    session = session_with(meter, tmp_path)
    _, sample, details = session._measure(runner, FakeEngine(), [QUESTION], seed=0)  # type: ignore[arg-type]
    assert details["runs_per_window"] == 4
    assert sample.energy_j == pytest.approx(1.0)  # per run, not the window's 4 J
    assert details["phase_split"] == "by-duration"  # phase windows alone were too short
    assert sample.prefill_j + sample.decode_j == pytest.approx(1.0)


def test_a_long_enough_run_is_measured_once_with_its_phases(tmp_path: Path) -> None:
    meter = EnergyMeter(FakeMeter(), min_window_s=0.01)
    runner = FakeRunner(meter, seconds=0.06)
    session = session_with(meter, tmp_path)
    _, sample, details = session._measure(runner, FakeEngine(), [QUESTION], seed=0)  # type: ignore[arg-type]
    assert runner.runs == 1
    assert "runs_per_window" not in details
    assert details["phase_split"] == "measured"
    assert (sample.prefill_j, sample.decode_j) == (pytest.approx(0.5), pytest.approx(0.5))


def test_a_workload_too_small_even_when_repeated_is_refused(tmp_path: Path) -> None:
    meter = EnergyMeter(FakeMeter(), min_window_s=60.0)
    runner = FakeRunner(meter, seconds=0.0)
    session = session_with(meter, tmp_path)
    with pytest.raises(WindowTooShort, match="shorter than"):
        session._measure(runner, FakeEngine(), [QUESTION], seed=0)  # type: ignore[arg-type]
