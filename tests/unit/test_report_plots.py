"""Optional PNG plots: written with matplotlib, skipped cleanly without it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from factories import make_row
from pytest_energy.report import Row
from pytest_energy.report.plots import J_PER_TOKEN_PNG, PARETO_PNG, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(strategy: str, energy_j: float, correct: int, *, estimated: bool = False) -> Row:
    return make_row(
        energy_j,
        questions=4,
        correct=correct,
        model="m$x$",
        strategy=strategy,
        estimated=estimated,
        test_id=f"t::{strategy}",
    )


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
    assert write_plots([make_row((), records=())], tmp_path) == []
