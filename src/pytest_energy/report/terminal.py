"""The terminal summary: rendered to a string, never printed.

The plugin writes the string through pytest's terminal reporter
(``write_sep`` / ``write_line``), so ``-q``, ``--color`` and capture keep
working. The rendering ignores the environment (``COLUMNS``, ``NO_COLOR``,
``FORCE_COLOR``): width and colour are arguments, and the same rows always
give the same text.

Three layouts, by width:

- :data:`NARROW_BELOW` columns and more: a rich table with every column, where
  they all fit unwrapped; else the folded table of the next item (rich would
  otherwise cut the last columns mid-text).
- From :data:`COMPACT_BELOW` up to :data:`NARROW_BELOW`: the same table with
  model and strategy folded under the test name, without token counts.
- Below :data:`COMPACT_BELOW` (pytest's 80 columns in most CI logs): the
  compact layout, laid out here rather than by rich, so that no line is wider
  than ``width`` and only a word wider than its column is split (80 columns)::

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
  and the first item of its change against the baseline. The line under it
  names model and strategy, and the meter where it is not the one the header
  line names. A test id too wide for its column is shortened by :func:`shorten`:
  whole words around an ellipsis, the parameter part (``[vote:k=5]``, which
  tells parametrized tests apart) and the last word kept first.

  The change column ("vs base") lists failed comparisons first, then the
  J/token headline, one item a line: the first on the test's line, the rest on
  continuation lines under the column. The column is made wide enough for the
  metric changes up to 19 cells (``J/question +40.5% !``) while the test column
  keeps 14; a longer item wraps at spaces under the column with a two-space
  indent, and prose (``estimated, not compared``, ``too noisy to compare (CV
  31%)``) without one, rather than being abbreviated. Where even the minimums do not fit
  (under about 65 columns), the changes go on lines of their own after model
  and strategy. Model and strategy wrap at spaces, then after ``,``, ``+`` or
  ``/``.

  The header line, the caption and the failure lines under the table wrap at
  spaces with a two-space indent. Failure lines carry the full test id, one line
  for a test's budget breaches and one for its regressions; one too long breaks
  before the checks.

Estimated joules are prefixed ``~`` in every layout.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
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
    strategy_label,
)

_VERDICT_STYLES = {"pass": "green", "fail": "bold red", "accepted": "yellow"}
# Below this width the eleven columns wrap into unreadable slivers.
NARROW_BELOW = 160
# Below this width even the folded table wraps its rows over many lines.
COMPACT_BELOW = 120
# The compact layout: spaces between columns, and the widths the test and
# change columns keep before the other gives way (16 fits ``J/token +31.0% !``,
# 19 ``J/question +40.5% !``; a longer change wraps).
_GAP = 2
_TEST_MIN = 14
_CHANGE_MIN = 16
_CHANGE_MAX = 19
_CHANGE_FLOOR = 8
# Where a test id may be shortened: between the words of its name and its path.
_SEPARATORS = re.compile(r"([\s_/.:\[\],-]+)")
_ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"
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


def _change_items(outcome: Outcome) -> list[tuple[str, str]]:
    """The "vs base" column of ``outcome``: ``(text, style)`` items, most important first."""
    if outcome.baseline != "compared":
        return [(clean(baseline_state_text(outcome)), "")]
    # The headline metric always; any other only when it failed (the full list,
    # improvements included, is in the markdown report and the JSON). Failures first.
    checks = [
        c
        for c in outcome.checks
        if c.kind == "baseline" and (c.metric == "j_per_token" or not c.passed)
    ]
    checks.sort(key=lambda c: c.passed)
    items = [
        (
            clean(describe_check(c)) + (" !" if not c.passed else ""),
            "red" if not c.passed else "green" if c.improved else "",
        )
        for c in checks
    ]
    return items or [("within tolerance", "")]


def _change(outcome: Outcome) -> Text:
    text = Text()
    for item, style in _change_items(outcome):
        if text:
            text.append("\n")
        text.append(item, style)
    return text


def render_terminal(
    rows: Sequence[Row], *, width: int, color: bool, header: HeaderInfo | None = None
) -> str:
    """The energy table of ``rows`` as text ``width`` columns wide (ANSI colour if ``color``).

    Columns: test, model, strategy, questions, accuracy with its 95% interval,
    input/output tokens, J/token, J/question, meter, change against the baseline
    and the verdict; below :data:`NARROW_BELOW` columns, or where those columns
    do not fit, model and strategy go under the test name and token counts and
    the meter column are left out; below :data:`COMPACT_BELOW`, the compact
    layout of the module docstring, no line wider than ``width``. Estimated
    joules and their meter are prefixed ``~``. Failed checks follow the table
    with the full test id: one line each, or in the compact layout one line for
    a test's budget breaches and one for its regressions.
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
        return _tidy(buffer.getvalue())
    if compact:
        for text in _compact(ordered, width, header.meter if header else None):
            console.print(text, soft_wrap=True)
    else:
        table = _table(ordered, narrow=width < NARROW_BELOW)
        if width >= NARROW_BELOW and _natural_width(console, table) > width:
            # Long names or models: rich would cut the last columns mid-text.
            table = _table(ordered, narrow=True)
        console.print(table)
    for result, outcome in ordered:
        if compact:
            for part in _failures(result.test_id, outcome, width):
                console.print(Text(part, "red"), soft_wrap=True)
            continue
        for check in outcome.budget_breaches + outcome.regressions:
            what = "over budget" if check.kind == "budget" else "regression"
            line = f"{what}: {clean(result.test_id)}: {clean(describe_check(check))}"
            console.print(Text(line, "red"), soft_wrap=True)
    return _tidy(buffer.getvalue())


def _failures(test_id: str, outcome: Outcome, width: int) -> list[str]:
    """The compact layout's lines under the table: one for the budget breaches of a
    test and one for its regressions, each broken before the checks when too long."""
    lines = []
    for what, checks in (
        ("over budget", outcome.budget_breaches),
        ("regression", outcome.regressions),
    ):
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


def _compact(rows: Sequence[Row], width: int, meter: str | None) -> list[Text]:
    """The compact layout of the module docstring: header, rule, two or more lines a test.

    ``meter`` is the one the header line names (``None``: none named). Where
    even the test and change columns' minimums do not fit (under about 65
    columns), the changes go on lines of their own under model and strategy.
    """
    names = [clean(n) for n in short_names([r.test_id for r, _ in rows])]
    verdicts = [outcome.status.upper() for _, outcome in rows]
    numbers = [
        (
            format_percent(result.accuracy),
            *(
                ("~" if result.estimated else "") + format_j(v) if v is not None else "-"
                for v in (result.j_per_token, result.j_per_question)
            ),
        )
        for result, _ in rows
    ]
    changes = [_change_items(outcome) for _, outcome in rows]
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
            what += f", meter {'~' if result.estimated else ''}{clean(result.meter)}"
        # Model and strategy may run under the change column where it is empty.
        lefts = wrap_words(
            what, width - indent if len(right) <= 1 else left, indent=0, breaks=",+/"
        )
        first = Text()
        first.append(verdict, _VERDICT_STYLES[outcome.status])
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
        caption = "~ estimated: joules from a model of power, not a sensor"
        lines += [Text(part, "table.caption") for part in wrap_words(caption, width)]
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


def shorten(name: str, width: int) -> str:
    """``name`` in at most ``width`` cells: whole words around an ellipsis.

    Words are what separators (``_ / . : [ ] , -`` and spaces) delimit, and are
    kept or dropped whole. A parametrized name keeps its whole parameter part,
    which is what tells its tests apart, and as much of the function name around
    an ellipsis as fits (``test_…point[vote:k=5]``, ``…point[vote:k=5]``); when
    the parameter part alone is too wide, it keeps that part's first and last
    words (``…[route:…calibration=16]``), or else as many of its last words as
    fit. Any other name keeps its last word and the most letters of the rest
    (``…reasoning_tokens``; a leading ``test`` counts for none). Only a last word
    wider than ``width`` is cut, keeping its end.
    """
    if cell_len(name) <= width:
        return name
    if width <= 1:
        return _ELLIPSIS[:width]
    cut = name.find("[", 1)
    if name.endswith("]") and cut > 0:
        head, inner = name[:cut], name[cut + 1 : -1]
        kept = _elide(head, width - cell_len(inner) - 2, keep_last=False, keep_first=False)
        if kept is not None:
            return f"{kept}[{inner}]"
        kept = _elide(inner, width - 3, keep_last=True, keep_first=True)
        if kept is not None:
            return f"{_ELLIPSIS}[{kept}]"
    kept = _elide(name, width, keep_last=True, keep_first=False, suffix=cut > 0)
    if kept is not None:
        return kept
    tail = name
    while cell_len(tail) > width - 1:
        tail = tail[1:]
    return _ELLIPSIS + tail


def _elide(
    text: str, width: int, *, keep_last: bool, keep_first: bool, suffix: bool = False
) -> str | None:
    """``text`` with words from its middle (or, ``suffix``, its start) replaced by an
    ellipsis, at most ``width`` cells, keeping the most letters, then the most of
    the start; None if none fits."""
    tokens = _SEPARATORS.split(text)  # word, separator, word, ..., word (words may be "")
    words = tokens[::2]
    count = len(words)
    last = max((k for k, word in enumerate(words) if word), default=count - 1)
    best, best_score = None, (-1, -1)
    for start in range(1 if keep_first else 0, 1 if suffix else count):
        head = "".join(tokens[: 2 * start])
        skip = 4 if start and words[0].lower() == "test" else 0
        for end in range(count - start):
            first_kept = count - end
            if keep_last and first_kept > last:
                continue
            tail = "".join(tokens[2 * first_kept - 1 :]) if end else ""
            candidate = head + _ELLIPSIS + tail.lstrip(" _/.:,-")
            if cell_len(candidate) > width:
                break
            score = (sum(map(len, words[:start] + words[first_kept:])) - skip, start)
            if score > best_score:
                best, best_score = candidate, score
    return best


def wrap_words(text: str, width: int, *, indent: int = 2, breaks: str = "") -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` cells, the later lines
    indented by ``indent``; a word wider than a line is split after one of ``breaks``
    where it has one, else where it must."""
    width = max(width, indent + 1)
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if line and cell_len(line) + 1 + cell_len(word) <= width:
            line += " " + word
            continue
        if line:
            lines.append(line)
        line = " " * indent + word if lines else word
        while cell_len(line) > width:
            head = _cut(line, width)
            at = max(head.rfind(ch) for ch in breaks) if breaks else -1
            if at >= len(head) - len(head.lstrip(" ")):
                head = head[: at + 1]
            lines.append(head)
            line = " " * indent + line[len(head) :]
    lines.append(line)
    return lines


def _cut(text: str, width: int) -> str:
    """The longest start of ``text`` at most ``width`` cells wide (one character at least)."""
    used = 0
    for i, ch in enumerate(text):
        used += cell_len(ch)
        if used > width:
            return text[: max(i, 1)]
    return text


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


def _natural_width(console: Console, table: Table) -> int:
    """The width ``table`` takes when nothing in it has to wrap."""
    options = console.options.update_width(100_000)
    return Measurement.get(console, options, table).maximum


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
