"""What the checks concluded about one evaluation: budgets, baseline, verdict.

An :class:`Outcome` travels with its :class:`~pytest_energy.metrics.EvalResult`
into the reports and the results JSON; it is the single place a reader learns
why a test passed, failed or was accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Status = Literal["pass", "fail", "accepted"]
# The start of the note of an evaluation whose entry --energy-update-baseline writes.
UPDATE_NOTE = "baseline entry will be "

BaselineState = Literal[
    "compared", "missing", "mismatch", "estimated", "noisy", "shared", "updated", "off"
]


@dataclass(frozen=True)
class Check:
    """One comparison: a budget (absolute) or a baseline (relative).

    ``kind`` is ``budget`` or ``baseline``; ``passed`` is false for a breach or
    a regression. ``limit`` is the budget, or the base value for a baseline.
    ``change`` is the relative change against base (0.12 = +12%); ``statistic``
    names the evidence (e.g. "median of 5, p=0.004 Mann-Whitney").
    """

    kind: Literal["budget", "baseline"]
    metric: str
    value: float
    limit: float
    passed: bool
    message: str
    change: float | None = None
    tolerance: float | None = None
    statistic: str | None = None
    improved: bool = False


@dataclass(frozen=True)
class Outcome:
    """The verdict of one evaluation and the checks behind it.

    ``baseline`` says what the comparison did: ``mismatch`` (a hard fingerprint
    field differs) and ``noisy`` are comparisons not made; ``noise`` says why
    (``CV 31%``: the repeats vary more than the tolerance; ``other load 1.9
    cores``: other processes shared the CPU a CPU meter measures); ``shared``:
    a served model's server also served other clients during this run's window
    or the baseline's, so energy was not compared (accuracy and tokens were).
    ``attribution`` lists the software versions that changed since the baseline
    (``transformers 5.24.0 -> 5.25.0``), to read next to the changes.
    ``prompt_change``: the prompt fields that changed since the baseline and
    the input tokens per question before and after (None: the same prompt, or
    one the baseline did not record). ``test_failed``: the test failed or
    errored for any reason (its own assertion included); such a row is shown
    failed and never recorded.
    """

    status: Status = "pass"
    checks: tuple[Check, ...] = ()
    baseline: BaselineState = "off"
    notes: tuple[str, ...] = ()
    accepted_reason: str | None = None
    attribution: tuple[str, ...] = ()
    noise: str | None = None
    test_failed: bool = False
    # What changed in the prompt since the baseline ("shots 0 -> 5; input tokens per
    # question 148 -> 612"), or None (unchanged, or not recorded in the baseline).
    prompt_change: str | None = None

    def of_failed_test(self) -> Outcome:
        """This outcome for a test that failed (after its evaluation, or because of it).

        A failed test is no reference: with ``--energy-update-baseline`` its entry is
        not written, so the note that promised one goes."""
        notes = tuple(n for n in self.notes if not n.startswith(UPDATE_NOTE))
        if self.status == "fail":
            return replace(self, test_failed=True, notes=notes)
        note = "the test failed after its evaluation; not recorded in the baseline"
        return replace(
            self, status="fail", test_failed=True, notes=(*notes, note), accepted_reason=None
        )

    @property
    def budget_breaches(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.kind == "budget" and not c.passed)

    @property
    def regressions(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.kind == "baseline" and not c.passed)

    @property
    def improvements(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.improved)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "baseline": self.baseline,
            "notes": list(self.notes),
            "accepted_reason": self.accepted_reason,
            "checks": [asdict(c) for c in self.checks],
            "attribution": list(self.attribution),
            "noise": self.noise,
            "test_failed": self.test_failed,
            "prompt_change": self.prompt_change,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(
            status=data.get("status", "pass"),
            checks=tuple(Check(**c) for c in data.get("checks", [])),
            baseline=data.get("baseline", "off"),
            notes=tuple(data.get("notes", [])),
            accepted_reason=data.get("accepted_reason"),
            attribution=tuple(data.get("attribution", [])),
            noise=data.get("noise"),
            test_failed=bool(data.get("test_failed", False)),
            prompt_change=data.get("prompt_change"),
        )


def failed_test_outcome(data: Mapping[str, Any]) -> dict[str, Any]:
    """A serialised outcome (as a test report carries it) for a test that failed."""
    return Outcome.from_dict(data).of_failed_test().to_dict()
