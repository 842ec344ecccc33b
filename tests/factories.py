"""Builders of results, checks, outcomes and report rows for the unit tests.

One place with documented defaults, so a test states only what it is about:
``make_result(correct=2)``, ``baseline_check(change=0.3)``. The defaults
describe a small, plausible run: 10 anatomy questions, 5 right, 80 prompt and
20 output tokens each, three repeats near 120 J measured by ``nvml`` on an A100.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_energy.meters.base import Phase
from pytest_energy.metrics import EvalResult, QuestionRecord, RepeatSample
from pytest_energy.outcome import BaselineState, Check, Outcome, Status
from pytest_energy.report import Row

FINGERPRINT: Mapping[str, str] = {
    "gpu": "A100",
    "driver": "550.54",
    "meter": "nvml",
    "dtype": "bfloat16",
}
ENERGY_J = (120.0, 121.0, 119.0)


def make_records(
    questions: int = 10,
    correct: int | Sequence[bool] = 5,
    *,
    subject: str = "anatomy",
    input_tokens: int = 80,
    output_tokens: int = 20,
) -> tuple[QuestionRecord, ...]:
    """Questions with gold ``A``; the first ``correct`` answered ``A``, the rest ``B``
    (or one flag per question)."""
    flags = [i < correct for i in range(questions)] if isinstance(correct, int) else correct
    return tuple(
        QuestionRecord(subject, "A", "A" if ok else "B", input_tokens, output_tokens)
        for ok in flags
    )


def records_id(records: Sequence[QuestionRecord]) -> str:
    """A question-set id for fake records: equal subjects and gold letters, equal ids."""
    text = "\n".join(f"{r.subject}\t{r.gold}" for r in records)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_result(
    energy_j: float | Sequence[float] = ENERGY_J,
    *,
    records: Sequence[QuestionRecord] | None = None,
    questions: int = 10,
    correct: int | Sequence[bool] = 5,
    subject: str = "anatomy",
    input_tokens: int = 80,
    output_tokens: int = 20,
    prefill_share: float = 0.25,
    duration_s: float = 1.0,
    model: str = "smollm2-135m",
    strategy: str = "cot",
    meter: str = "nvml",
    estimated: bool = False,
    fingerprint: Mapping[str, str] = FINGERPRINT,
    test_id: str = "tests/t.py::test_a",
    details: Mapping[str, Any] | None = None,
    question_set: str | None = None,
    other_load: float | Sequence[float] | None = None,
    sampled: bool = False,
    prompt: Mapping[str, Any] | None = None,
) -> EvalResult:
    """An :class:`EvalResult` with one repeat per value of ``energy_j``.

    ``records`` replaces the generated questions; ``question_set`` defaults to
    :func:`records_id` of the records; ``other_load`` is the other processes'
    busy cores during each repeat (one value for all).
    """
    if records is None:
        records = make_records(
            questions,
            correct,
            subject=subject,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
    values = (energy_j,) if isinstance(energy_j, (int, float)) else tuple(energy_j)
    loads = tuple(other_load) if isinstance(other_load, Sequence) else (other_load,) * len(values)
    return EvalResult(
        model=model,
        strategy=strategy,
        meter=meter,
        estimated=estimated,
        records=tuple(records),
        repeats=tuple(
            RepeatSample(e, e * prefill_share, e * (1 - prefill_share), duration_s, load)
            for e, load in zip(values, loads, strict=True)
        ),
        fingerprint=dict(fingerprint),
        test_id=test_id,
        details=dict(details or {}),
        question_set=records_id(records) if question_set is None else question_set,
        sampled=sampled,
        prompt=dict(prompt or {}),
    )


def baseline_check(
    metric: str = "j_per_token",
    change: float = 0.3,
    *,
    base: float = 1.0,
    tolerance: float = 0.1,
    statistic: str | None = None,
    message: str | None = None,
) -> Check:
    """A baseline comparison that moved by ``change``; it fails beyond ``tolerance``
    in the metric's bad direction and counts as an improvement beyond it the other way."""
    worse = -change if metric == "accuracy" else change
    return Check(
        kind="baseline",
        metric=metric,
        value=base * (1 + change),
        limit=base,
        passed=worse <= tolerance,
        message=message if message is not None else f"{metric} {change:+.1%} vs baseline",
        change=change,
        tolerance=tolerance,
        statistic=statistic,
        improved=-worse > tolerance,
    )


def budget_check(
    metric: str = "j_per_token", value: float = 1.0, limit: float = 0.5, *, message: str = ""
) -> Check:
    """A budget check; it passes when ``value`` is on the good side of ``limit``."""
    passed = value >= limit if metric == "accuracy" else value <= limit
    return Check("budget", metric, value, limit, passed, message)


def outcome(
    *checks: Check,
    status: Status | None = None,
    baseline: BaselineState = "compared",
    notes: Sequence[str] = (),
    accepted_reason: str | None = None,
) -> Outcome:
    """An outcome of ``checks``; the status follows them unless given."""
    if status is None:
        status = "fail" if any(not c.passed for c in checks) else "pass"
    return Outcome(status, checks, baseline, tuple(notes), accepted_reason)


def make_row(
    energy_j: float | Sequence[float] = ENERGY_J, *, outcome: Outcome | None = None, **result: Any
) -> Row:
    """A report row: ``make_result(energy_j, **result)`` and its ``outcome`` (default: passed)."""
    return make_result(energy_j, **result), outcome or Outcome()


class TokenMeter:
    """A token-accounting meter that records what each window accounted."""

    name = "tokens"
    estimated = True

    def __init__(self) -> None:
        self.accounted: list[tuple[Phase, int, int]] = []

    def read(self) -> float:
        return float(len(self.accounted))

    def account(self, phase: Phase, input_tokens: int, output_tokens: int) -> None:
        self.accounted.append((phase, input_tokens, output_tokens))


def assert_same_letters(
    questions: Sequence[Any],
    other: Sequence[Any],
    reference: Sequence[Any],
    names: tuple[str, str],
    near_tie: float,
    max_near_ties: int,
) -> None:
    """Two backends' letter scores (``Scored`` rows) on ``questions`` pick the same
    letters, bar at most ``max_near_ties`` flips where the reference's best two
    letters are within ``near_tie`` nats; every flip names question and margin."""
    from pytest_energy.metrics import LETTERS

    def best(logprobs: Sequence[float]) -> str:
        return LETTERS[max(range(4), key=lambda i: logprobs[i])]

    flips: list[str] = []
    near_ties: list[str] = []
    for question, a, b in zip(questions, other, reference, strict=True):
        if best(a.logprobs) == best(b.logprobs):
            continue
        ranked = sorted(b.logprobs, reverse=True)
        margin = ranked[0] - ranked[1]
        line = (
            f"{question.subject}: {question.question[:60]!r} {names[0]} {best(a.logprobs)}, "
            f"{names[1]} {best(b.logprobs)} ({names[1]} margin {margin:.3f} nats)"
        )
        (near_ties if margin < near_tie else flips).append(line)
    assert not flips, "letters differ beyond a near tie:\n" + "\n".join(flips)
    assert len(near_ties) <= max_near_ties, "too many near ties:\n" + "\n".join(near_ties)


def run_calibrate(model: str, grid: str, mmlu: Path, out: Path, *extra: str) -> str:
    """``pytest-energy calibrate`` with the ``cpu-estimate`` meter, in a subprocess as a
    user runs it; asserts it succeeded and returns what it printed."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest_energy.cli", "calibrate", "--model", model),
            *("--meter", "cpu-estimate", "--grid", grid, "--mmlu", str(mmlu), "-o", str(out)),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
