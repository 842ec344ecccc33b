"""Optional PNG plots beside the markdown report (needs the ``plots`` extra: matplotlib).

Two pictures of a run: energy per question against accuracy, one point per
model and strategy, with the Pareto front (no other point is both cheaper and
more accurate) drawn and labelled; and J/token per model and strategy as bars.
Without matplotlib :func:`write_plots` returns ``[]`` and the report simply has
no images.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_energy.report import Row, pareto_front, sorted_rows, strategy_label

PARETO_PNG = "energy-accuracy.png"
J_PER_TOKEN_PNG = "j-per-token.png"


def plots_available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def write_plots(rows: Sequence[Row], folder: Path, *, prefix: str = "") -> list[str]:
    """Write the PNGs into ``folder``; return their file names (empty without matplotlib).

    ``prefix`` goes in front of each file name (the report's stem, so two
    reports in one folder keep their own pictures). Rows without energy per
    question are left out of the scatter plot; no rows, no files.
    """
    ordered = [row for row in sorted_rows(rows) if row[0].j_per_question is not None]
    if not ordered or not plots_available():
        return []
    # Figure objects, not pyplot: no backend switch, no window, no global state
    # left behind in the user's test process.
    from matplotlib.figure import Figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [prefix + PARETO_PNG, prefix + J_PER_TOKEN_PNG]
    with warnings.catch_warnings():
        # A glyph missing from the font must not fail a suite run with -W error.
        warnings.simplefilter("ignore")
        _scatter(Figure(figsize=(7, 4.5), dpi=100), ordered, folder / names[0])
        bars = sum(r.j_per_token is not None for r, _ in ordered)
        _bars(Figure(figsize=(7, 0.5 * bars + 1.5), dpi=100), ordered, folder / names[1])
    return names


def _plain(text: str) -> str:
    """Text that matplotlib draws as is (a ``$`` would start mathtext)."""
    return text.replace("$", r"\$")


def _scatter(fig: Any, rows: Sequence[Row], path: Path) -> None:
    results = [r for r, _ in rows]
    energy = [float(r.j_per_question or 0.0) for r in results]
    accuracy = [r.accuracy * 100 for r in results]
    optimal = pareto_front(list(zip(energy, accuracy, strict=True)))
    ax = fig.subplots()
    for r, x, y, best in zip(results, energy, accuracy, optimal, strict=True):
        ax.scatter(
            [x],
            [y],
            marker="*" if best else "o",
            s=140 if best else 50,
            color="tab:green" if best else "tab:gray",
            edgecolors="black" if r.estimated else "none",
        )
        ax.annotate(
            _plain(strategy_label(r)) + (" (est.)" if r.estimated else ""),
            (x, y),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
        )
    front = sorted((x, y) for x, y, best in zip(energy, accuracy, optimal, strict=True) if best)
    if len(front) > 1:
        ax.plot(
            [p[0] for p in front],
            [p[1] for p in front],
            "--",
            color="tab:green",
            label="Pareto front",
        )
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("energy per question (J)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Energy vs accuracy (stars: Pareto-optimal)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})


def _bars(fig: Any, rows: Sequence[Row], path: Path) -> None:
    results = [r for r, _ in rows if r.j_per_token is not None]
    labels = [_plain(strategy_label(r)) + (" ~" if r.estimated else "") for r in results]
    values = [float(r.j_per_token or 0.0) for r in results]
    ax = fig.subplots()
    ax.barh(
        range(len(values)),
        values,
        color=["tab:orange" if r.estimated else "tab:blue" for r in results],
    )
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("energy per token (J); ~ estimated")
    ax.set_title("J/token per model and strategy")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
