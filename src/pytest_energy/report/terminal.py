"""The terminal summary: a rich table rendered to a string, never printed.

The plugin writes the string through pytest's terminal reporter
(``write_sep`` / ``write_line``), so ``-q``, ``--color`` and capture keep
working. The rendering ignores the environment (``COLUMNS``, ``NO_COLOR``,
``FORCE_COLOR``): width and colour are arguments, and the same rows always
give the same text.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pytest_energy.outcome import Outcome
from pytest_energy.report import (
    Row,
    baseline_state_text,
    describe_check,
    format_accuracy,
    format_count,
    format_j,
    format_percent,
    sorted_rows,
)

_VERDICT_STYLES = {"pass": "green", "fail": "bold red", "accepted": "yellow"}
# Below this width the eleven columns wrap into unreadable slivers.
NARROW_BELOW = 160
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True)
class HeaderInfo:
    """What the session measures with, shown above the table and at session start."""

    meter: str
    device: str
    baseline_path: Path | str | None
    estimated: bool


def clean(text: str) -> str:
    """``text`` without terminal control: control characters become visible escapes."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif category in ("Cc", "Zl", "Zp") or (category == "Cf" and ch not in "\u200d"):
            out.append(f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def render_header(
    meter: str, device: str, baseline_path: Path | str | None, estimated: bool
) -> str:
    """One line for the session start: ``energy: meter nvml (measured) on H200, baseline X``."""
    kind = "estimated" if estimated else "measured"
    baseline = f"baseline {baseline_path}" if baseline_path else "no baseline"
    return clean(f"energy: meter {meter} ({kind}) on {device}, {baseline}")


def _change(outcome: Outcome) -> Text:
    if outcome.baseline != "compared":
        return Text(baseline_state_text(outcome))
    # The headline metric always; any other only when it failed (the full list,
    # improvements included, is in the markdown report and the JSON).
    checks = [
        c
        for c in outcome.checks
        if c.kind == "baseline" and (c.metric == "j_per_token" or not c.passed)
    ]
    text = Text()
    for check in checks:
        if text:
            text.append("\n")
        style = "red" if not check.passed else "green" if check.improved else ""
        text.append(clean(describe_check(check)) + (" !" if not check.passed else ""), style)
    return text if text else Text("within tolerance")


def render_terminal(
    rows: Sequence[Row], *, width: int, color: bool, header: HeaderInfo | None = None
) -> str:
    """The energy table of ``rows`` as text ``width`` columns wide (ANSI colour if ``color``).

    Columns: test, model, strategy, questions, accuracy with its 95% interval,
    input/output tokens, J/token, J/question, meter, change against the baseline
    and the verdict; below :data:`NARROW_BELOW` columns, model, strategy and
    meter go under the test name and token counts are left out. Estimated joules
    and their meter are prefixed ``~``. Failed checks follow the table, one line
    each, with the full test id.
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
    if header is not None:
        console.print(
            Text(
                render_header(header.meter, header.device, header.baseline_path, header.estimated)
            ),
            soft_wrap=True,
        )
    ordered = sorted_rows(rows)
    if not ordered:
        console.print(Text("no energy evaluations ran"))
        return _tidy(buffer.getvalue())
    console.print(_table(ordered, narrow=width < NARROW_BELOW))
    for result, outcome in ordered:
        for check in outcome.budget_breaches + outcome.regressions:
            what = "over budget" if check.kind == "budget" else "regression"
            line = f"{what}: {clean(result.test_id)}: {clean(describe_check(check))}"
            console.print(Text(line, "red"), soft_wrap=True)
    return _tidy(buffer.getvalue())


def _table(rows: Sequence[Row], *, narrow: bool) -> Table:
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
        est = "~" if result.estimated else ""
        energy = [
            est + format_j(v) if v is not None else "-"
            for v in (result.j_per_token, result.j_per_question)
        ]
        verdict = Text(outcome.status.upper(), _VERDICT_STYLES[outcome.status])
        if narrow:
            what = clean(f"{result.model} {result.strategy}")
            test = Text(clean(name) + "\n" + what)
            accuracy = format_percent(result.accuracy)
            table.add_row(verdict, test, accuracy, *energy, _change(outcome))
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
            *([Text(est + clean(result.meter))] if show_meter else []),
            _change(outcome),
        )
    if any(r.estimated for r, _ in rows):
        table.caption = "~ estimated: joules from a model of power, not a sensor"
        table.caption_justify = "left"
    return table


def short_names(test_ids: Sequence[str]) -> list[str]:
    """Test ids without their ``path::`` part when the rest is still unique, else whole.

    The table is for reading at a glance; the lines under it, and pytest's own
    summary, carry the full ids.
    """
    short = [test_id.rpartition("::")[2] or test_id for test_id in test_ids]
    return short if len(set(short)) == len(set(test_ids)) else list(test_ids)


def _tidy(text: str) -> str:
    """Without the spaces rich pads each line with (they only make diffs noisy)."""
    return "\n".join(line.rstrip(" ") for line in text.splitlines()) + "\n"
