"""The compact terminal layout, below 120 columns (pytest's 80 in most CI logs).

Laid out here rather than by rich, so that no line is wider than the terminal
and only a word wider than its column is split (80 columns)::

              test               accuracy   J/token  J/question  vs base
    ────────────────────────────────────────────────────────────────────────────────
    ACCEPTED  …reasoning_tokens     70.0%   0.02750       4.400  J/token +18.0% !
              Qwen/Qwen2.5-0.5B-Instruct / budget:max_tokens=64
    PASS      …runs_without_gpu     50.0%   ~0.3485      ~47.40  estimated, not
              smollm2-135m / cot, meter ~cpu-estimate            compared
    FAIL      …point[vote:k=5]      40.0%   0.03369       20.25  J/token +31.2% !
              smollm2-135m / vote:k=5                            J/question +40.5% !
                                                                 accuracy -20.0% !
    regression: tests/test_mmlu_energy.py::test_strategy_operating_point[vote:k=5]:
      J/token +31.2%, J/question +40.5%, accuracy -20.0%

A test takes one line: verdict, short test id, accuracy, J/token, J/question
and the first item of its change against the baseline. The line under it names
model and strategy, and the meter where it is not the one the header line
names. A test id too wide for its column is shortened by
:func:`~pytest_energy.report.terminal_text.shorten`: whole words around an
ellipsis, the parameter part (``[vote:k=5]``, which tells parametrized tests
apart) and the last word kept first.

The change column ("vs base") lists failed comparisons first, then the J/token
headline, one item a line: the first on the test's line, the rest on
continuation lines under the column. The column is made wide enough for the
metric changes up to 19 cells (``J/question +40.5% !``) while the test column
keeps 14; a longer item wraps at spaces under the column with a two-space
indent, and prose (``estimated, not compared``, ``too noisy to compare (CV
31%)``) without one, rather than being abbreviated. Where even the minimums do
not fit (under about 65 columns), the changes go on lines of their own after
model and strategy. Model and strategy wrap at spaces, then after ``,``, ``+``
or ``/``.

The caption and the failure lines under the table wrap at spaces with a
two-space indent (as does the header line above it). Failure lines carry the
full test id, one line for a test's budget breaches and one for its
regressions; one too long breaks before the checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text

from pytest_energy.outcome import Outcome
from pytest_energy.report import Row, describe_check, format_percent, strategy_label
from pytest_energy.report.terminal_cells import (
    ESTIMATED_CAPTION,
    VERDICT_STYLES,
    change_items,
    energy_cells,
    failed_checks,
    meter_label,
)
from pytest_energy.report.terminal_text import clean, short_names, shorten, wrap_words

# Spaces between columns, and the widths the test and change columns keep
# before the other gives way (16 fits ``J/token +31.0% !``, 19
# ``J/question +40.5% !``; a longer change wraps).
_GAP = 2
_TEST_MIN = 14
_CHANGE_MIN = 16
_CHANGE_MAX = 19
_CHANGE_FLOOR = 8


def render_compact(rows: Sequence[Row], width: int, meter: str | None) -> list[Text]:
    """The lines of the compact layout of ``rows`` (sorted), no wider than ``width``:
    header, rule, two or more lines a test, caption, then the failure lines in red.

    ``meter`` is the one the header line names (``None``: none named).
    """
    lines = _table(rows, width, meter)
    for result, outcome in rows:
        lines += [Text(part, "red") for part in _failures(result.test_id, outcome, width)]
    return lines


def _failures(test_id: str, outcome: Outcome, width: int) -> list[str]:
    """The lines under the table: one for the budget breaches of a test and one for
    its regressions, each broken before the checks when too long."""
    lines = []
    for what, checks in failed_checks(outcome):
        if not checks:
            continue
        head = f"{what}: {clean(test_id)}:"
        items = [clean(describe_check(c)) for c in checks]
        line = f"{head} {', '.join(items)}"
        if cell_len(line) <= width:
            lines.append(line)
            continue
        lines += wrap_words(head, width)
        # The checks on lines of their own, indented, as many a line as fit whole.
        row = ""
        for item in items:
            if row and cell_len(row) + 3 + cell_len(item) <= width - 2:
                row += f", {item}"
                continue
            if row:
                lines += ["  " + part for part in wrap_words(row + ",", width - 2, indent=0)]
            row = item
        lines += ["  " + part for part in wrap_words(row, width - 2, indent=0)]
    return lines


def _table(rows: Sequence[Row], width: int, meter: str | None) -> list[Text]:
    """Header, rule, two or more lines a test, and the caption.

    Where even the test and change columns' minimums do not fit (under about 65
    columns), the changes go on lines of their own under model and strategy.
    """
    names = [clean(n) for n in short_names([r.test_id for r, _ in rows])]
    verdicts = [outcome.status.upper() for _, outcome in rows]
    numbers = [(format_percent(result.accuracy), *energy_cells(result)) for result, _ in rows]
    changes = [change_items(outcome, result) for result, outcome in rows]
    heads = ("accuracy", "J/token", "J/question")
    vw = max(cell_len(v) for v in verdicts)
    nw = [max(cell_len(h), *(cell_len(n[i]) for n in numbers)) for i, h in enumerate(heads)]
    room = width - vw - sum(nw) - 5 * _GAP  # for the test and change columns together
    longest = max(cell_len("test"), *(cell_len(n) for n in names))
    natural = max(cell_len("vs base"), *(cell_len(text) for items in changes for text, _ in items))
    checks = [
        cell_len(text)
        for (_, outcome), items in zip(rows, changes, strict=True)
        if outcome.baseline == "compared"
        for text, _ in items
    ]
    stacked = room < min(_TEST_MIN, longest) + min(_CHANGE_MIN, natural)
    if stacked:
        tw, cw = max(min(room + _GAP, longest), 1), 0
    else:
        tw, cw = _split(room, longest, max(checks, default=0), natural)
    indent = vw + _GAP
    # What the lines under the first may use before the change column.
    left = width - indent if stacked else tw + sum(nw) + 3 * _GAP

    header = Text(" " * indent)
    header.append(_pad("test", tw), "table.header")
    for head, w in zip(heads, nw, strict=True):
        header.append(" " * (_GAP + w - len(head)))
        header.append(head, "table.header")
    if not stacked:
        header.append(" " * _GAP)
        header.append("vs base", "table.header")
    body: list[Text] = []
    # The header line names the session's meter: name any other where it is used.
    meters = {r.meter for r, _ in rows}
    for (result, outcome), verdict, name, nums, items in zip(
        rows, verdicts, names, numbers, changes, strict=True
    ):
        # A wrapped metric change is indented to set it off from the next; prose
        # (one item, the baseline state) is not, to spare the narrow column.
        hang = 2 if outcome.baseline == "compared" else 0
        right = [
            (part, style)
            for item, style in ([] if stacked else items)
            for part in wrap_words(item, cw, indent=hang)
        ]
        what = clean(strategy_label(result))
        if len(meters) > 1 and result.meter != meter:
            what += f", meter {meter_label(result)}"
        # Model and strategy may run under the change column where it is empty.
        lefts = wrap_words(
            what, width - indent if len(right) <= 1 else left, indent=0, breaks=",+/"
        )
        first = Text()
        first.append(verdict, VERDICT_STYLES[outcome.status])
        first.append(" " * (indent - cell_len(verdict)))
        first.append(_pad(shorten(name, tw), tw))
        for number, w in zip(nums, nw, strict=True):
            first.append(" " * (_GAP + w - cell_len(number)) + number)
        if not stacked:
            first.append(" " * _GAP)
            first.append(*right[0])
        body.append(first)
        for i in range(1, max(len(lefts) + 1, len(right))):
            line = Text(" " * indent)
            line.append(lefts[i - 1] if i - 1 < len(lefts) else "")
            if i < len(right):
                line.append(" " * (indent + left + _GAP - line.cell_len))
                line.append(*right[i])
            body.append(line)
        if stacked:
            label = "vs base: "
            for n, (item, style) in enumerate(items):
                parts = wrap_words(item, width - indent - len(label), indent=0)
                for k, part in enumerate(parts):
                    line = Text(" " * indent + (label if not n and not k else " " * len(label)))
                    line.append(part, style)
                    body.append(line)
    for line in [header, *body]:
        line.rstrip()
    rule = max(line.cell_len for line in [header, *body])
    lines = [header, Text("\N{BOX DRAWINGS LIGHT HORIZONTAL}" * min(rule, width)), *body]
    if any(r.estimated for r, _ in rows):
        lines += [Text(part, "table.caption") for part in wrap_words(ESTIMATED_CAPTION, width)]
    return [part for line in lines for part in _fold(line, width)]


def _split(room: int, longest_name: int, checks: int, natural: int) -> tuple[int, int]:
    """Widths of the test and change columns, which share ``room`` cells.

    ``checks`` is the widest metric change (``J/question +40.5% !``), kept whole
    while the test column keeps :data:`_TEST_MIN`; ``natural`` the widest item,
    prose included (``estimated, not compared``), which wraps at spaces instead.
    """
    change = min(natural, max(min(checks, _CHANGE_MAX), _CHANGE_MIN))
    change = min(natural, max(change, room - longest_name))
    test = min(room - change, longest_name)
    least = min(_TEST_MIN, longest_name)
    if test < least:
        test = least
        change = max(room - test, _CHANGE_FLOOR)
        test = room - change
    return max(test, 1), max(change, 1)


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - cell_len(text), 0)


def _fold(line: Text, width: int) -> list[Text]:
    """``line`` cut every ``width`` cells: only for widths the layout cannot fit."""
    if cell_len(line.plain) <= width:
        return [line]
    offsets, used = [], 0
    for i, ch in enumerate(line.plain):
        if used and used + cell_len(ch) > width:
            offsets.append(i)
            used = 0
        used += cell_len(ch)
    return list(line.divide(offsets))
