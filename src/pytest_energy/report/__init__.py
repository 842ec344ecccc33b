"""Reports people read: the terminal table, the markdown PR comment, the results JSON, plots.

Every renderer is a pure function of rows, where one row is an
``(EvalResult, Outcome)`` pair: the same rows always give the same text. This
module holds what all of them share (row order, number formats, metric labels,
the Pareto front) and imports nothing heavier than the standard library, so the
plugin can import it at session end at no cost. The renderers live in
``report.terminal`` (rich), ``report.markdown``, ``report.results`` and
``report.plots`` (matplotlib, optional).

Number formats, fixed so reports diff cleanly:

- joules and joule ratios: 4 significant digits, never an exponent (``0.01235``),
  all integer digits of large values (``123456``);
- accuracy: a percentage with one decimal, with the 95% Wilson interval;
- relative change: signed percentage with one decimal (``+12.0%``);
- token counts: thousands separated by commas.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Check, Outcome

Row = tuple[EvalResult, Outcome]

DASH = "\N{EM DASH}"

METRIC_LABELS: dict[str, str] = {
    "accuracy": "accuracy",
    "energy_j": "energy",
    "prefill_j": "prefill energy",
    "decode_j": "decode energy",
    "duration_s": "duration",
    "j_per_token": "J/token",
    "j_per_output_token": "J/output token",
    "j_per_question": "J/question",
    "j_per_correct": "J/correct",
    "output_tokens_per_question": "output tokens/question",
    "input_tokens_per_question": "input tokens/question",
    "output_tokens": "output tokens",
}

# Fingerprint keys that name the device, most specific first.
DEVICE_KEYS = ("gpu_name", "gpu", "cpu", "device")


def sorted_rows(rows: Iterable[Row]) -> list[Row]:
    """Rows in report order: by test id, then model and strategy (deterministic)."""
    return sorted(rows, key=lambda row: (row[0].test_id, row[0].model, row[0].strategy))


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " "))


def format_sig(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits in positional notation (no exponent).

    Numbers with more integer digits than that keep them all (``123456``).
    """
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:.0f}"  # whole joules: rounding 123456 to 123500 would hide digits
    rounded = float(f"{value:.{digits - 1}e}")
    exponent = math.floor(math.log10(abs(rounded)))
    decimals = max(digits - 1 - exponent, 0)
    return f"{rounded:.{decimals}f}"


def format_j(value: float | None) -> str:
    """A joule figure (or a ratio of joules) with 4 significant digits; a dash when undefined."""
    return DASH if value is None else format_sig(value)


def format_percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def format_accuracy(result: EvalResult) -> str:
    """``45.0% [35.6-54.8]``: accuracy and its 95% interval, in percent."""
    low, high = result.accuracy_ci
    return f"{format_percent(result.accuracy)} [{low * 100:.1f}\N{EN DASH}{high * 100:.1f}]"


def format_change(change: float) -> str:
    """A relative change as a signed percentage: ``+12.0%``, ``-3.5%``."""
    return f"{change * 100:+.1f}%"


def format_count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def device_label(fingerprint: Mapping[str, str]) -> str:
    """The device a fingerprint describes (GPU name before CPU model, a CPU with its
    vector extension: ``AMD EPYC (avx2)``), or ``unknown``."""
    for key in DEVICE_KEYS:
        if fingerprint.get(key):
            isa = fingerprint.get("cpu_isa") if key == "cpu" else None
            return f"{fingerprint[key]} ({isa})" if isa else fingerprint[key]
    return "unknown"


def verdict(outcome: Outcome) -> str:
    """``pass``, ``accepted``, or ``fail`` with what failed (``fail: regression, budget``)."""
    if outcome.status != "fail":
        return outcome.status
    reasons = []
    if outcome.regressions:
        reasons.append("regression")
    if outcome.budget_breaches:
        reasons.append("budget")
    return "fail: " + ", ".join(reasons) if reasons else "fail"


def describe_check(check: Check) -> str:
    """One check in a few words: ``J/token +12.0%`` or ``J/token 0.84 > 0.5``."""
    label = metric_label(check.metric)
    if check.kind == "baseline" and check.change is not None:
        return f"{label} {format_change(check.change)}"
    relation = "<" if check.metric == "accuracy" else ">"
    if check.passed:
        relation = ">=" if relation == "<" else "<="
    value, limit = check.value, check.limit
    if check.metric == "accuracy":
        return f"{label} {format_percent(value)} {relation} {format_percent(limit)}"
    return f"{label} {format_sig(value)} {relation} {format_sig(limit)}"


def baseline_state_text(outcome: Outcome) -> str:
    """What the baseline comparison did, when it did not compare numbers."""
    if outcome.baseline == "noisy":
        return "too noisy to compare" + (f" ({outcome.noise})" if outcome.noise else "")
    if outcome.baseline == "updated" and outcome.test_failed:
        return "not recorded: test failed"  # a failed test is no reference
    return {
        "missing": "no baseline",
        "mismatch": "not compared",
        "estimated": "estimated, not compared",
        "shared": "shared, not compared",
        "updated": "baseline updated",
        "off": DASH,
        "compared": "",
    }[outcome.baseline]


def tests_ran(rows: Sequence[Row]) -> int:
    """How many tests produced ``rows`` (an id's ``#N`` marks a test's N-th evaluation)."""
    return len({result.test_id.partition("#")[0] for result, _ in rows})


def comparison_summary(outcomes: Sequence[Outcome]) -> str:
    """How many evaluations were compared with the baseline and how many not, and why:
    ``"3 compared, 2 not compared (other hardware or setup), 1 too noisy to compare"``."""
    counts: Counter[str] = Counter(outcome.baseline for outcome in outcomes)
    parts = [
        f"{counts[state]} {label}"
        for state, label in (
            ("compared", "compared"),
            ("mismatch", "not compared (other hardware or setup)"),
            ("noisy", "too noisy to compare"),
            ("shared", "not compared (server shared with other clients)"),
            ("estimated", "estimated, so not compared"),
            ("missing", "without an entry"),
        )
        if counts[state]
    ]
    return ", ".join(parts)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (energy, accuracy) points: which are Pareto-optimal (less energy, more accuracy).

    A point is optimal when no other point has at most its energy and at least
    its accuracy, with one of the two strictly better. Equal points are all optimal.
    """
    flags = []
    for i, (energy, accuracy) in enumerate(points):
        dominated = any(
            e <= energy and a >= accuracy and (e < energy or a > accuracy)
            for j, (e, a) in enumerate(points)
            if j != i
        )
        flags.append(not dominated)
    return flags


def strategy_text(result: EvalResult) -> str:
    """The strategy, with ``/ prompt NAME`` for a prompt other than the default."""
    name = result.prompt.get("name")
    return f"{result.strategy} / prompt {name}" if name and name != "default" else result.strategy


def strategy_label(result: EvalResult) -> str:
    """``model / strategy [/ prompt NAME]``: the point a Pareto picture shows."""
    return f"{result.model} / {strategy_text(result)}"
