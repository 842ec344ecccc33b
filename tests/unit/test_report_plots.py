"""Optional PNG plots: written with matplotlib, skipped cleanly without it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_energy.metrics import EvalResult, QuestionRecord, RepeatSample
from pytest_energy.outcome import Outcome
from pytest_energy.report import Row
from pytest_energy.report.plots import J_PER_TOKEN_PNG, PARETO_PNG, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(strategy: str, energy_j: float, correct: int, *, estimated: bool = False) -> Row:
    records = tuple(QuestionRecord("a", "A", "A" if i < correct else "B", 50, 9) for i in range(4))
    result = EvalResult(
        model="m$x$",
        strategy=strategy,
        meter="nvml",
        estimated=estimated,
        records=records,
        repeats=(RepeatSample(energy_j, 1.0, 1.0, 1.0),),
        test_id=f"t::{strategy}",
    )
    return result, Outcome()


ROWS = [row("direct", 1.0, 2), row("cot", 9.0, 4), row("vote:k=5", 30.0, 3, estimated=True)]


def test_plots_are_png_files_beside_the_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plots extra (matplotlib) is not installed")
    names = write_plots(ROWS, tmp_path / "out", prefix="energy-report-")
    assert names == ["energy-report-" + PARETO_PNG, "energy-report-" + J_PER_TOKEN_PNG]
    for name in names:
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 5000


def test_plotting_leaves_the_pyplot_backend_alone(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib", reason="the plots extra is not installed")
    before = matplotlib.rcParams["backend"]
    write_plots(ROWS, tmp_path)
    assert matplotlib.rcParams["backend"] == before


def test_without_matplotlib_no_plot_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry makes the import system treat the package as not installed.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert write_plots(ROWS, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_no_energy_figures_means_no_plots(tmp_path: Path) -> None:
    empty = EvalResult(
        model="m", strategy="s", meter="nvml", estimated=False, records=(), repeats=()
    )
    assert write_plots([(empty, Outcome())], tmp_path) == []
