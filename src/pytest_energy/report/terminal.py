"""The terminal summary: rendered to a string, never printed.

The plugin writes the string through pytest's terminal reporter
(``write_sep`` / ``write_line``), so ``-q``, ``--color`` and capture keep
working. The rendering ignores the environment (``COLUMNS``, ``NO_COLOR``,
``FORCE_COLOR``): width and colour are arguments, and the same rows always
give the same text.

This module picks the layout and writes the header line above it. Three
layouts, by width:

- :data:`NARROW_BELOW` columns and more: a rich table with every column
  (:mod:`pytest_energy.report.terminal_table`), where they all fit unwrapped;
  else the folded table of the next item (rich would otherwise cut the last
  columns mid-text).
- From :data:`COMPACT_BELOW` up to :data:`NARROW_BELOW`: the same table with
  model and strategy folded under the test name, without token counts.
- Below :data:`COMPACT_BELOW` (pytest's 80 columns in most CI logs): the
  compact layout of :mod:`pytest_energy.report.terminal_compact`, no line
  wider than the terminal.

Estimated joules are prefixed ``~`` in every layout.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.text import Text

from pytest_energy.report import Row, sorted_rows
from pytest_energy.report.terminal_compact import render_compact
from pytest_energy.report.terminal_table import energy_table, failure_lines, natural_width
from pytest_energy.report.terminal_text import clean, wrap_words

# Below this width the eleven columns wrap into unreadable slivers.
NARROW_BELOW = 160
# Below this width even the folded table wraps its rows over many lines.
COMPACT_BELOW = 120


@dataclass(frozen=True)
class HeaderInfo:
    """What the session measures with, shown above the table and at session start."""

    meter: str
    device: str
    baseline_path: Path | str | None
    estimated: bool


def render_header(
    meter: str, device: str, baseline_path: Path | str | None, estimated: bool
) -> str:
    """One line for the session start: ``energy: meter nvml (measured) on H200, baseline X``."""
    kind = "estimated" if estimated else "measured"
    baseline = f"baseline {baseline_path}" if baseline_path else "no baseline"
    return clean(f"energy: meter {meter} ({kind}) on {device}, {baseline}")


def render_terminal(
    rows: Sequence[Row], *, width: int, color: bool, header: HeaderInfo | None = None
) -> str:
    """The energy table of ``rows`` as text ``width`` columns wide (ANSI colour if ``color``).

    Columns: test, model, strategy, questions, accuracy with its 95% interval,
    input/output tokens, J/token, J/question, meter, change against the baseline
    and the verdict; below :data:`NARROW_BELOW` columns, or where those columns
    do not fit, model and strategy go under the test name and token counts and
    the meter column are left out; below :data:`COMPACT_BELOW`, the compact
    layout of :mod:`pytest_energy.report.terminal_compact`, no line wider than
    ``width``. Estimated joules and their meter are prefixed ``~``. Failed
    checks follow the table with the full test id: one line each, or in the
    compact layout one line for a test's budget breaches and one for its
    regressions.
    """
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
        markup=False,
        legacy_windows=False,
        _environ={},
    )
    compact = width < COMPACT_BELOW
    if header is not None:
        line = render_header(header.meter, header.device, header.baseline_path, header.estimated)
        for part in wrap_words(line, width) if compact else [line]:
            console.print(Text(part), soft_wrap=True)
    ordered = sorted_rows(rows)
    if not ordered:
        console.print(Text("no energy evaluations ran"))
    elif compact:
        for text in render_compact(ordered, width, header.meter if header else None):
            console.print(text, soft_wrap=True)
    else:
        table = energy_table(ordered, narrow=width < NARROW_BELOW)
        if width >= NARROW_BELOW and natural_width(console, table) > width:
            # Long names or models: rich would cut the last columns mid-text.
            table = energy_table(ordered, narrow=True)
        console.print(table)
        for line in failure_lines(ordered):
            console.print(Text(line, "red"), soft_wrap=True)
    return _tidy(buffer.getvalue())


def _tidy(text: str) -> str:
    """Without the spaces rich pads each line with (they only make diffs noisy)."""
    return "\n".join(line.rstrip(" ") for line in text.splitlines()) + "\n"
