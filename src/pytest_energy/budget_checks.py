"""Checking a result against its budgets: one :class:`Check` per budget that is set."""

from __future__ import annotations

import math
from collections.abc import Callable

from pytest_energy.budgets import Budgets
from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Check


def check_budgets(result: EvalResult, budgets: Budgets) -> tuple[Check, ...]:
    """One Check per budget that is set (passed or breached), with one-line messages."""
    where = f"({result.strategy}, {result.model}, meter={result.meter}" + (
        ", estimated)" if result.estimated else ")"
    )

    def joules(x: float) -> str:
        return f"{sig(x)} J"

    def count(x: float) -> str:
        return f"{x:.1f}"

    ceilings: tuple[tuple[str, str, float | None, float | None, Callable[[float], str]], ...] = (
        ("j_per_token", "energy per token", result.j_per_token, budgets.max_j_per_token, joules),
        (
            "j_per_question",
            "energy per question",
            result.j_per_question,
            budgets.max_j_per_question,
            joules,
        ),
        (
            "output_tokens_per_question",
            "mean output tokens per question",
            result.output_tokens_per_question,
            budgets.max_output_tokens,
            count,
        ),
    )
    checks: list[Check] = []
    for metric, label, value, limit, shown in ceilings:
        if limit is None or value is None:
            continue
        breached = value > limit
        verb = "exceeds" if breached else "is within"
        text = f"{label} {shown(value)} {verb} budget {shown(limit)} {where}"
        checks.append(Check("budget", metric, value, limit, not breached, text))
    if budgets.min_accuracy is not None and result.questions:
        limit = budgets.min_accuracy
        breached = result.accuracy < limit
        low, high = result.accuracy_ci
        verb = "is below" if breached else "meets"
        text = (
            f"accuracy {result.accuracy:.1%} ({result.correct}/{result.questions}, "
            f"95% CI {low:.1%}-{high:.1%}) {verb} budget {limit:.1%}"
        )
        checks.append(
            Check("budget", "accuracy", result.accuracy, limit, not breached, f"{text} {where}")
        )
    return tuple(checks)


def sig(x: float) -> str:
    """Three significant digits (``0.0120``, ``0.840``, ``40.0``), whole numbers from 100."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if abs(x) >= 100:  # "103", not the "103." of '#.3g'
        return f"{x:.0f}"
    return f"{x:#.3g}"
