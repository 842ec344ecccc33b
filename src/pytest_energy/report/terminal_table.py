"""The rich energy table of the wide terminal layouts, and the failure lines under it.

With every column (test, model, strategy, questions, accuracy with its 95%
interval, input/output tokens, J/token, J/question, the meter where rows use
several, change against the baseline, verdict first), or ``narrow``: model and
strategy folded under the test name, without token counts or the meter column.
Which one, and at what width, :func:`pytest_energy.report.terminal.render_terminal`
decides.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Outcome
from pytest_energy.report import (
    Row,
    describe_check,
    format_accuracy,
    format_count,
    format_percent,
)
from pytest_energy.report.terminal_cells import (
    ESTIMATED_CAPTION,
    VERDICT_STYLES,
    change_items,
    energy_cells,
    failed_checks,
    meter_label,
)
from pytest_energy.report.terminal_text import clean, short_names


def energy_table(rows: Sequence[Row], *, narrow: bool) -> Table:
    """All columns; or, ``narrow``, model, strategy and meter folded under the test name."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    names = short_names([r.test_id for r, _ in rows])
    # The test name is what a reader scans for: rich gives fold columns what is
    # left over, so reserve it a readable width. One meter for all rows is
    # already named in the header line, so its column only appears for several.
    longest = max(len(name) for name in names)
    # The verdict comes first so a tight terminal can never push it out of view.
    table.add_column("verdict", no_wrap=True, min_width=7)
    table.add_column("test", overflow="fold", min_width=min(longest, 22 if narrow else 30))
    show_meter = not narrow and len({r.meter for r, _ in rows}) > 1
    if not narrow:
        table.add_column("model", overflow="fold")
        table.add_column("strategy", overflow="fold")
        table.add_column("n", justify="right", no_wrap=True)
    table.add_column("accuracy" if narrow else "accuracy [95% CI]", justify="right", no_wrap=True)
    if not narrow:
        table.add_column("tokens in/out", justify="right", no_wrap=True)
    table.add_column("J/token", justify="right", no_wrap=True)
    table.add_column("J/question", justify="right", no_wrap=True)
    if show_meter:
        table.add_column("meter", overflow="fold")
    table.add_column("vs base" if narrow else "change vs base", overflow="fold", min_width=15)
    for (result, outcome), name in zip(rows, names, strict=True):
        energy = energy_cells(result)
        verdict = Text(outcome.status.upper(), VERDICT_STYLES[outcome.status])
        if narrow:
            what = clean(f"{result.model} {result.strategy}")
            test = Text(clean(name) + "\n" + what)
            accuracy = format_percent(result.accuracy)
            table.add_row(verdict, test, accuracy, *energy, _change(outcome, result))
            continue
        table.add_row(
            verdict,
            Text(clean(name)),
            Text(clean(result.model)),
            Text(clean(result.strategy)),
            str(result.questions),
            format_accuracy(result),
            f"{format_count(result.input_tokens)}/{format_count(result.output_tokens)}",
            *energy,
            *([Text(meter_label(result))] if show_meter else []),
            _change(outcome, result),
        )
    if any(r.estimated for r, _ in rows):
        table.caption = ESTIMATED_CAPTION
        table.caption_justify = "left"
    return table


def natural_width(console: Console, table: Table) -> int:
    """The width ``table`` takes when nothing in it has to wrap."""
    options = console.options.update_width(100_000)
    return Measurement.get(console, options, table).maximum


def failure_lines(rows: Sequence[Row]) -> list[str]:
    """One line for each failed check of ``rows``, with the full test id."""
    return [
        f"{what}: {clean(result.test_id)}: {clean(describe_check(check))}"
        for result, outcome in rows
        for what, checks in failed_checks(outcome)
        for check in checks
    ]


def _change(outcome: Outcome, result: EvalResult) -> Text:
    text = Text()
    for item, style in change_items(outcome, result):
        if text:
            text.append("\n")
        text.append(item, style)
    return text
