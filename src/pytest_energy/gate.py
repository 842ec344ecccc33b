"""The regression gate: budgets (absolute) and baseline comparison (relative).

A metric regresses only when all three hold, in its bad direction (energy and
tokens up, accuracy down):

1. the relative change exceeds the tolerance (``--energy-tolerance``, 10% by
   default): the change matters. With enough repeats the change is the
   Hodges-Lehmann estimate (the median of all pairwise head/base ratios), which
   uses every repeat rather than one per side; otherwise the ratio of medians;
2. the absolute change exceeds the tolerance's absolute floor;
3. the evidence says it is not noise. Energy metrics with at least ``MIN_SAMPLES``
   repeats per side: a one-sided exact Mann-Whitney U test (mid-ranks for ties,
   exact permutation distribution; normal approximation beyond ``EXACT_LIMIT``
   values) rejects "same distribution" at ``ALPHA`` = 0.05, after setting aside
   outlying repeats on each side (modified z-score above 3.5, Iglewicz-Hoaglin,
   keeping at least ``MIN_SAMPLES``).

Why: the medians' change is the estimate a reader sees and the tolerance says how
much change matters; the rank test removes false alarms where noisy repeats push
the medians apart, and is distribution-free. Without the outlier screen one
disturbed baseline repeat above every head repeat hides a 30% regression from a
5-vs-5 test. A stricter rule (lower confidence bound beyond 1 + tolerance) finds
a 20% regression with 5 repeats far less than 95% of the time. Drift between
sessions (another day, another GPU of the same model) moves all repeats alike, so
no within-session test sees it: the tolerance must cover it.
``benchmarks/gate_quality.py`` measures these rules on simulated meter noise.
With fewer than ``MIN_SAMPLES`` repeats on a side the tolerance alone decides and
the check's ``statistic`` says so.

Accuracy on the same questions with greedy decoding is deterministic: the counts
are compared against the tolerance exactly. With sampling (``vote``, or a
``temperature``) an exact McNemar test (same questions) or a one-sided Fisher
exact test (different questions) must agree. Mean output tokens per question
follow the same rule, with a z-test on the per-question spread when sampled.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_energy.baseline_entry import BaselineEntry
from pytest_energy.budget_checks import sig
from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Check
from pytest_energy.settings import Tolerance
from pytest_energy.stats import (
    MIN_SAMPLES,
    binomial_upper,
    fisher_less,
    hodges_lehmann_ratio,
    mann_whitney_greater,
    screen_outliers,
    z_upper,
)

__all__ = [
    "ALPHA",
    "Evidence",
    "compare",
    "compare_values",
    "comparison_notes",
    "repeat_evidence",
]

ALPHA = 0.05
ENERGY_METRICS = ("j_per_token", "j_per_output_token", "j_per_question", "energy_j")
UPDATE_HINT = "record it with --energy-update-baseline"


@dataclass(frozen=True)
class Evidence:
    """What a noise test concluded, and a one-line description of it.

    ``p_up`` is the one-sided p-value of "head is larger than base", ``p_down`` of
    "head is smaller"; None means no noise estimate (the tolerance alone decides).
    """

    p_up: float | None
    p_down: float | None
    text: str
    # Hodges-Lehmann estimate of head/base - 1 (median of all pairwise ratios of the
    # screened repeats); None: use the ratio of medians.
    shift: float | None = None


# -- comparison ----------------------------------------------------------------


def repeat_evidence(base: Sequence[float], head: Sequence[float]) -> Evidence:
    """Mann-Whitney on per-repeat samples, or a note that there are too few."""
    n_base, n_head = len(base), len(head)
    if n_base == 1 and n_head == 1:
        return Evidence(None, None, "1 sample per side: no noise estimate")
    if min(n_base, n_head) < MIN_SAMPLES:
        too_few = f"{n_base} vs {n_head} repeats: too few for a noise estimate"
        return Evidence(None, None, f"{too_few} (need {MIN_SAMPLES} per side)")
    kept_base, kept_head = screen_outliers(base), screen_outliers(head)
    p_up = mann_whitney_greater(kept_head, kept_base)
    p_down = mann_whitney_greater(kept_base, kept_head)
    shown = p_up if statistics.median(head) >= statistics.median(base) else p_down
    dropped = n_base + n_head - len(kept_base) - len(kept_head)
    aside = f" ({dropped} outlier{'s' if dropped > 1 else ''} set aside)" if dropped else ""
    text = f"Mann-Whitney {_p(shown)}, {n_base} vs {n_head} repeats{aside}"
    return Evidence(p_up, p_down, text, hodges_lehmann_ratio(kept_base, kept_head))


def compare_values(
    metric: str,
    base: float,
    head: float,
    tolerance: Tolerance,
    evidence: Evidence,
    *,
    higher_is_worse: bool = True,
    alpha: float = ALPHA,
    shown: tuple[str, str] | None = None,
) -> Check:
    """The verdict for one metric, given its medians and the noise evidence.

    The change tested against the tolerance is the evidence's Hodges-Lehmann
    shift when there is one (enough repeats), else the ratio of the medians.
    """
    change = evidence.shift if evidence.shift is not None else _relative(base, head)
    worse_change = change if higher_is_worse else -change
    big = abs(head - base) > tolerance.abs
    p_worse, p_better = (
        (evidence.p_up, evidence.p_down) if higher_is_worse else (evidence.p_down, evidence.p_up)
    )
    regressed = worse_change > tolerance.rel and big and _significant(p_worse, alpha)
    improved = -worse_change > tolerance.rel and big and _significant(p_better, alpha)
    base_text, head_text = shown or (_value(metric, base), _value(metric, head))
    tol = _tolerance_text(metric, tolerance)
    detail = f"(base {base_text}, head {head_text}, tolerance {tol}, {evidence.text})"
    pct = f"{change * 100:+.1f}%"
    if regressed:
        message = f"{metric} regressed {pct} {detail}"
    elif improved:
        message = f"{metric} improved {pct} {detail}; {UPDATE_HINT}"
    elif worse_change > tolerance.rel and big:
        message = f"{metric} {pct} is beyond the tolerance but within noise {detail}"
    else:
        message = f"{metric} {pct} within tolerance {detail}"
    return Check(
        "baseline",
        metric,
        head,
        base,
        not regressed,
        message,
        change,
        tolerance.rel,
        evidence.text,
        improved,
    )


def compare(
    result: EvalResult,
    base: BaselineEntry,
    tolerance: Tolerance,
    *,
    alpha: float = ALPHA,
    energy: bool = True,
) -> tuple[Check, ...]:
    """Compare ``result`` with its baseline entry: one Check per gated metric.

    Call only when :func:`~pytest_energy.baseline.baseline_mismatch` found no
    mismatch (estimates are never compared with measurements). Without
    ``energy`` only accuracy and output tokens are compared.
    """
    same_questions = same_question_set(result, base)
    # An entry recorded before "sampled" was stored counts as the head does.
    sampled = result.sampled or bool(base.sampled)
    checks: list[Check] = []
    for metric in ENERGY_METRICS if energy else ():
        if metric == "energy_j" and not same_questions:
            continue  # total joules of different question sets say nothing
        head, old = result.samples(metric), base.samples.get(metric, ())
        if head and old:
            medians = statistics.median(old), statistics.median(head)
            evidence = repeat_evidence(old, head)
            checks.append(compare_values(metric, *medians, tolerance, evidence, alpha=alpha))
    if result.questions and base.questions:
        if not energy and same_questions:
            # Energy too noisy to compare: the prompt's length on the same questions is
            # exact, and stands in for the prefill it costs (a prompt change shows here).
            checks.extend(_input_tokens(result, base, tolerance, alpha))
        checks.append(_output_tokens(result, base, tolerance, same_questions, sampled, alpha))
        checks.append(_accuracy(result, base, tolerance, same_questions, sampled, alpha))
    return tuple(checks)


def comparison_notes(result: EvalResult, base: BaselineEntry) -> tuple[str, ...]:
    """Facts a reader of a comparison should know (changed model, strategy, questions;
    why ``--energy-repeats auto`` stopped where it did)."""
    notes = []
    if result.model != base.model:
        notes.append(f"model changed since the baseline: {base.model} -> {result.model}")
    if result.strategy != base.strategy:
        notes.append(f"strategy changed since the baseline: {base.strategy} -> {result.strategy}")
    if not same_question_set(result, base):
        notes.append(
            f"question set differs from the baseline ({base.questions} vs {result.questions} "
            "questions): accuracy compared as independent samples, energy_j not compared"
        )
    stop = result.details.get("repeats_stop")
    if stop:
        notes.append(f"--energy-repeats auto stopped: {stop} repeats")
    return tuple(notes)


def same_question_set(result: EvalResult, base: BaselineEntry) -> bool:
    """Whether ``result`` asked the baseline's questions, in order (unknown: no)."""
    return bool(result.question_set) and result.question_set == base.question_set


def _input_tokens(
    result: EvalResult, base: BaselineEntry, tol: Tolerance, alpha: float
) -> tuple[Check, ...]:
    before = base.summary.get("input_tokens")
    if not isinstance(before, (int, float)):
        return ()  # an entry recorded without its token counts
    evidence = Evidence(None, None, f"exact: same {result.questions} questions")
    return (
        compare_values(
            "input_tokens_per_question",
            before / base.questions,
            result.input_tokens / result.questions,
            tol,
            evidence,
            alpha=alpha,
        ),
    )


def _output_tokens(
    result: EvalResult, base: BaselineEntry, tol: Tolerance, same: bool, sampled: bool, alpha: float
) -> Check:
    base_mean = base.samples.get("output_tokens", (0.0,))[0] / base.questions
    head_mean = result.output_tokens / result.questions
    if same and not sampled:
        evidence = Evidence(None, None, _deterministic(result.questions))
    else:
        tokens = [r.output_tokens for r in result.records]
        head_sd = statistics.stdev(tokens) if len(tokens) > 1 else 0.0
        se = math.sqrt(base.output_tokens_sd**2 / base.questions + head_sd**2 / result.questions)
        if se == 0:
            evidence = Evidence(None, None, "no spread in output tokens: tolerance alone")
        else:
            z = (head_mean - base_mean) / se
            p_up, p_down = z_upper(z), z_upper(-z)
            evidence = Evidence(
                p_up,
                p_down,
                f"z-test {_p(p_up if z >= 0 else p_down)}, "
                f"{base.questions} vs {result.questions} questions",
            )
    return compare_values(
        "output_tokens_per_question", base_mean, head_mean, tol, evidence, alpha=alpha
    )


def _accuracy(
    result: EvalResult, base: BaselineEntry, tol: Tolerance, same: bool, sampled: bool, alpha: float
) -> Check:
    a, n1, c, n2 = base.correct, base.questions, result.correct, result.questions
    if same and not sampled:
        evidence = Evidence(None, None, _deterministic(n2))
    elif same and len(base.correct_vector) == n2:
        head_vector = ["1" if r.correct else "0" for r in result.records]
        pairs = list(zip(base.correct_vector, head_vector, strict=True))
        lost, gained = pairs.count(("1", "0")), pairs.count(("0", "1"))
        evidence = Evidence(
            binomial_upper(gained, lost + gained),
            binomial_upper(lost, lost + gained),
            f"McNemar exact {_p(binomial_upper(max(lost, gained), lost + gained))}, "
            f"{lost} lost vs {gained} gained of {n2} questions",
        )
    else:
        p_down, p_up = fisher_less(a, n1, c, n2), fisher_less(c, n2, a, n1)
        evidence = Evidence(
            p_up,
            p_down,
            f"Fisher exact {_p(p_down if c / n2 <= a / n1 else p_up)}, {n1} vs {n2} questions",
        )
    shown = (f"{a / n1:.1%} ({a}/{n1})", f"{c / n2:.1%} ({c}/{n2})")
    return compare_values(
        "accuracy", a / n1, c / n2, tol, evidence, higher_is_worse=False, alpha=alpha, shown=shown
    )


# -- formatting ------------------------------------------------------------------


def _relative(base: float, head: float) -> float:
    if base == 0:
        return 0.0 if head == 0 else math.copysign(math.inf, head)
    return (head - base) / abs(base)


def _significant(p: float | None, alpha: float) -> bool:
    return p is None or p <= alpha


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _deterministic(questions: int) -> str:
    return f"deterministic: same {questions} questions, greedy decoding"


def _value(metric: str, x: float) -> str:
    if metric.endswith("tokens_per_question"):
        return f"{x:.1f} tokens"
    if metric == "accuracy":
        return f"{x:.1%}"
    return f"{sig(x)} J"


def _tolerance_text(metric: str, tolerance: Tolerance) -> str:
    return str(tolerance) + (f" and {_value(metric, tolerance.abs)}" if tolerance.abs else "")
