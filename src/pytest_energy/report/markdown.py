"""The markdown report: a pull-request comment (``--energy-report PATH``).

The first line is the hidden marker :data:`MARKER`, so a CI job can find and
update one sticky comment instead of adding a new one per push. Then come the
verdict, the main table, footnotes (estimated energy, fingerprint drift,
missing baselines), the energy-accuracy picture with its Pareto front,
per-subject and per-question details in a collapsed ``<details>`` block, and a
provenance line. The output is a pure function of its arguments.

Every text that comes from outside (test ids, model names, subjects, model
answers, the accept reason) goes through :func:`escape_md`, so it cannot
break the table, start a link or an image, inject HTML, or mention a user.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from pytest_energy import __version__
from pytest_energy.fingerprint import differing_fields
from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Outcome
from pytest_energy.report import (
    DASH,
    Row,
    comparison_summary,
    device_label,
    format_accuracy,
    format_j,
    format_percent,
    pareto_front,
    sorted_rows,
    strategy_text,
    tests_ran,
)
from pytest_energy.report.escape import escape_md
from pytest_energy.report.markdown_cells import (
    ICONS,
    budget_cell,
    change_from_base,
    change_from_outcome,
    shared_footnote,
)

MARKER = "<!-- pytest-energy-report -->"
GITHUB_COMMENT_LIMIT = 65000
_MAX_REASON_CHARS = 500


def _energy(result: EvalResult, value: float | None) -> str:
    text = format_j(value)
    return f"~{text}" if result.estimated and value is not None else text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines.extend("| " + " | ".join(cell or DASH for cell in row) + " |" for row in rows)
    return lines


# -- sections -------------------------------------------------------------------


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _all_compared(outcomes: Sequence[Outcome]) -> bool:
    """No evaluation skipped a baseline comparison it could have had."""
    return not any(
        o.baseline in ("mismatch", "noisy", "shared", "estimated", "missing") for o in outcomes
    )


def _verdict(rows: Sequence[Row], accepted_reason: str | None, interrupted: int | None) -> str:
    if not rows:
        return "No energy evaluations ran."
    outcomes = [outcome for _, outcome in rows]
    regressions = sum(len(o.regressions) for o in outcomes)
    breaches = sum(len(o.budget_breaches) for o in outcomes)
    failed = sum(o.status == "fail" for o in outcomes)
    accepted = sum(o.status == "accepted" for o in outcomes)
    improvements = sum(len(o.improvements) for o in outcomes)
    tests = _plural(len(rows), "test")
    reason = accepted_reason or next(
        (o.accepted_reason for o in outcomes if o.accepted_reason), None
    )
    if interrupted is not None:
        ran = tests_ran(rows)
        line = f"{ICONS['accepted']} **Interrupted**: {ran} of {interrupted} energy tests ran"
        line += f"; {failed} failed" if failed else ""
    elif failed:
        found = [_plural(regressions, "regression")] if regressions else []
        found += [_plural(breaches, "budget breach", "budget breaches")] if breaches else []
        line = f"{ICONS['fail']} **{', '.join(found) or 'failed'}** in {failed} of {tests}"
    elif accepted:
        line = (
            f"{ICONS['accepted']} **Accepted**: {_plural(regressions, 'regression')} "
            f"in {accepted} of {tests} reported without failing"
        )
    else:
        within = "budgets and baseline tolerance" if _all_compared(outcomes) else "budgets"
        line = f"{ICONS['pass']} **Pass**: {tests} within {within}"
    if failed and accepted and interrupted is None:
        line += f"; {accepted} accepted"
    if improvements:
        line += f"; {_plural(improvements, 'improvement')}"
    if reason and (accepted or failed):
        if len(reason) > _MAX_REASON_CHARS:
            reason = reason[:_MAX_REASON_CHARS] + "\N{HORIZONTAL ELLIPSIS}"
        line += f". Reason: {escape_md(reason)}"
    counts = comparison_summary(outcomes)
    return line + (f". Baseline: {counts}." if counts else "")


def _main_table(rows: Sequence[Row], base: dict[str, EvalResult] | None) -> list[str]:
    header = [
        "",
        "test",
        "model",
        "strategy",
        "accuracy",
        "J/token",
        "J/question",
        "output tokens/question",
        "change vs base",
        "budget",
    ]
    cells = []
    for result, outcome in rows:
        per_question = result.output_tokens_per_question
        change = (
            change_from_outcome(outcome, result)
            if base is None
            else change_from_base(result, base.get(result.test_id))
        )
        cells.append(
            [
                ICONS[outcome.status],
                escape_md(result.test_id),
                escape_md(result.model),
                escape_md(strategy_text(result)),
                format_accuracy(result),
                _energy(result, result.j_per_token),
                _energy(result, result.j_per_question),
                DASH if per_question is None else f"{per_question:.1f}",
                change,
                budget_cell(outcome),
            ]
        )
    return _table(
        header, cells, [":-:", "---", "---", "---", "--:", "--:", "--:", "--:", "---", "---"]
    )


def _footnotes(rows: Sequence[Row], base: dict[str, EvalResult] | None) -> list[str]:
    notes = []
    meters = sorted({r.meter for r, _ in rows if r.estimated})
    if meters:
        notes.append(
            f"~ Estimated energy (meter {escape_md(', '.join(meters))}): joules come from a "
            "model of power, not a sensor, and are never compared with measured baselines."
        )
    for result, outcome in rows:
        if outcome.baseline == "mismatch":
            detail = "; ".join(escape_md(n) for n in outcome.notes)
            notes.append(
                f"\N{DOUBLE DAGGER} {escape_md(result.test_id)}: hardware fingerprint "
                f"differs from the baseline{': ' + detail if detail else ''}."
            )
        if result.exclusive is False or outcome.baseline == "shared":
            notes.append(shared_footnote(result, outcome))
        before = base.get(result.test_id) if base else None
        if before is not None and (
            keys := differing_fields(before.fingerprint, result.fingerprint)
        ):
            notes.append(
                f"\N{DOUBLE DAGGER} {escape_md(result.test_id)}: fingerprint differs "
                f"from base in {escape_md(', '.join(keys))}."
            )
    missing = [r.test_id for r, o in rows if o.baseline == "missing"]
    if missing and base is None:
        notes.append(
            f"No baseline yet for {_plural(len(missing), 'test')} "
            f"({', '.join(escape_md(t) for t in missing)}); record one with "
            "`pytest --energy-budget --energy-update-baseline` and commit the baseline file."
        )
    if base is not None:
        head_ids = {r.test_id for r, _ in rows}
        removed = sorted(set(base) - head_ids)
        if removed:
            notes.append(
                "Not run here but in the base: " + ", ".join(escape_md(t) for t in removed) + "."
            )
    return [f"- {note}" for note in notes]


def _pareto(rows: Sequence[Row], plots: Sequence[str]) -> list[str]:
    points = [(r, r.j_per_question) for r, _ in rows if r.j_per_question is not None]
    if len(points) < 2 and not plots:
        return []
    points.sort(key=lambda p: (p[1], -p[0].accuracy, p[0].model, p[0].strategy, p[0].test_id))
    optimal = pareto_front([(energy, r.accuracy) for r, energy in points])
    lines = ["#### Energy and accuracy", ""]
    lines += _table(
        ["model", "strategy", "accuracy", "J/question", "Pareto-optimal"],
        [
            [
                escape_md(r.model),
                escape_md(strategy_text(r)),
                format_percent(r.accuracy),
                _energy(r, energy),
                "\N{BLACK STAR} yes" if best else "no",
            ]
            for (r, energy), best in zip(points, optimal, strict=True)
        ],
        ["---", "---", "--:", "--:", ":-:"],
    )
    for name in plots:
        lines += ["", f"![energy plot]({quote(name, safe='/._-')})"]
    return lines


def _details(rows: Sequence[Row]) -> list[str]:
    lines = ["<details>", "<summary>Per-subject accuracy and tokens per question</summary>", ""]
    for result, _ in rows:
        lines += [f"**{escape_md(result.test_id) or DASH}**", ""]
        lines += _table(
            ["subject", "correct", "questions", "accuracy"],
            [
                [escape_md(subject), str(correct), str(total), format_percent(correct / total)]
                for subject, (correct, total) in result.subject_accuracy().items()
            ],
            ["---", "--:", "--:", "--:"],
        )
        lines.append("")
        lines += _table(
            ["#", "subject", "gold", "predicted", "input tokens", "output tokens"],
            [
                [
                    str(i),
                    escape_md(q.subject),
                    escape_md(q.gold),
                    "invalid" if q.predicted is None else escape_md(q.predicted),
                    str(q.input_tokens),
                    str(q.output_tokens),
                ]
                for i, q in enumerate(result.records, start=1)
            ],
            ["--:", "---", ":-:", ":-:", "--:", "--:"],
        )
        lines.append("")
    lines.append("</details>")
    return lines


def _provenance(rows: Sequence[Row], plugin_version: str) -> str:
    sources = sorted(
        {
            f"meter {r.meter} ({'estimated' if r.estimated else 'measured'}) "
            f"on {device_label(r.fingerprint)}"
            for r, _ in rows
        }
    )
    where = "; ".join(escape_md(s) for s in sources) or "no measurements"
    return f"<sub>{where} \N{MIDDLE DOT} pytest-energy {escape_md(plugin_version)}</sub>"


# -- assembly -------------------------------------------------------------------


def render_markdown(
    rows: Sequence[Row],
    *,
    base_rows: Sequence[Row] | None = None,
    accepted_reason: str | None = None,
    plots: Sequence[str] = (),
    max_chars: int = GITHUB_COMMENT_LIMIT,
    plugin_version: str | None = None,
    interrupted: int | None = None,
) -> str:
    """The markdown report of ``rows``, at most ``max_chars`` characters.

    ``interrupted`` is the number of energy tests selected in a run that was
    interrupted: the verdict then says how many ran instead of ``Pass``.

    With ``base_rows`` (the results of the base branch) the change column
    compares with them instead of the run's baseline checks. ``plots`` are
    image paths to link. When the report is too long, the per-question details
    go first, then the energy-accuracy table, then the footnotes, then rows of
    the main table; a note says what was left out.
    """
    ordered = sorted_rows(rows)
    base = None if base_rows is None else {r.test_id: r for r, _ in base_rows}
    head = [MARKER, "### pytest-energy report", "", _verdict(ordered, accepted_reason, interrupted)]
    table = _main_table(ordered, base) if ordered else []
    optional = {
        "footnotes": _footnotes(ordered, base),
        "energy-accuracy table": _pareto(ordered, plots),
        "per-question details": _details(ordered) if ordered else [],
    }
    provenance = _provenance(ordered, plugin_version or __version__)
    dropped: list[str] = []
    omitted_rows = 0

    def assemble() -> str:
        blocks = ["\n".join(head)]
        if table:
            kept = table[: len(table) - omitted_rows]
            blocks.append("\n".join(kept))
        blocks += ["\n".join(v) for k, v in optional.items() if v and k not in dropped]
        if dropped or omitted_rows:
            what = list(reversed(dropped))
            if omitted_rows:
                what.append(f"{_plural(omitted_rows, 'row')} of the main table")
            blocks.append(
                f"> **Truncated** to {max_chars} characters: left out "
                f"{', '.join(what)}. The results JSON has everything."
            )
        blocks.append(provenance)
        return "\n\n".join(blocks) + "\n"

    text = assemble()
    for name in reversed(optional):
        if len(text) <= max_chars:
            return text
        if optional[name]:
            dropped.append(name)
            text = assemble()
    while len(text) > max_chars and omitted_rows < len(table) - 2:
        omitted_rows += 1
        text = assemble()
    return text if len(text) <= max_chars else text[: max_chars - 1] + "\n"
