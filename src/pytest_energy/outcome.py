"""What the checks concluded about one evaluation: budgets, baseline, verdict.

An :class:`Outcome` travels with its :class:`~pytest_energy.metrics.EvalResult`
into the reports and the results JSON; it is the single place a reader learns
why a test passed, failed or was accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["pass", "fail", "accepted"]
BaselineState = Literal["compared", "missing", "mismatch", "estimated", "updated", "off"]


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
    status: Status = "pass"
    checks: tuple[Check, ...] = ()
    baseline: BaselineState = "off"
    notes: tuple[str, ...] = ()
    accepted_reason: str | None = None

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(
            status=data.get("status", "pass"),
            checks=tuple(Check(**c) for c in data.get("checks", [])),
            baseline=data.get("baseline", "off"),
            notes=tuple(data.get("notes", [])),
            accepted_reason=data.get("accepted_reason"),
        )
