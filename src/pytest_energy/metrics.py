"""Evaluation results and the metrics derived from them, with units in every name.

Energy per token is a ratio of sums (total joules / total tokens), never a mean
of per-question ratios. With ``--energy-repeats`` an evaluation is measured
several times; the energy figures are the median repeat, and every repeat is
kept in ``energy_samples_j`` for the gate's statistics.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_energy.stats import coefficient_of_variation

LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class QuestionRecord:
    """What happened to one question: the answer and the tokens it cost."""

    subject: str
    gold: str
    predicted: str | None
    input_tokens: int
    output_tokens: int
    # Prompt tokens the model actually computed for this question (a prefix shared
    # with other questions is computed once, counted at the first); None: all of them.
    computed_input_tokens: int | None = None

    @property
    def correct(self) -> bool:
        return self.predicted == self.gold

    @property
    def valid(self) -> bool:
        return self.predicted is not None


@dataclass(frozen=True)
class RepeatSample:
    """One measured repeat of an evaluation."""

    energy_j: float
    prefill_j: float
    decode_j: float
    duration_s: float
    # Cores other processes kept busy on average during the repeat (None: unknown).
    other_load: float | None = None
    # A served model: whether its server served only us during the repeat, and the
    # tokens it served beyond ours (None: unknown, or not served; backends.traffic).
    exclusive: bool | None = None
    other_tokens: int | None = None


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (well-behaved at 0 and n)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    # At 0/n and n/n the bound is exactly the observed proportion; rounding must
    # not put the observation outside its own interval.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class EvalResult:
    """The outcome of one ``energy_eval`` call.

    Energy values are joules from ``meter``; ``estimated`` says whether they come
    from a power sensor (false) or a model of power (true). ``prefill_j`` and
    ``decode_j`` are measured in separate windows, not apportioned.
    """

    model: str
    strategy: str
    meter: str
    estimated: bool
    records: tuple[QuestionRecord, ...]
    repeats: tuple[RepeatSample, ...]
    fingerprint: Mapping[str, str] = field(default_factory=dict)
    test_id: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    # The identity of the questions asked (mmlu.question_set_id); "" when unknown.
    question_set: str = ""
    # Whether the strategy samples (random answers), decided when it was parsed.
    sampled: bool = False
    # The prompt: {"name", "fingerprint", "fields"} (pytest_energy.prompts); {}: unknown.
    prompt: Mapping[str, Any] = field(default_factory=dict)

    # -- counts ------------------------------------------------------------
    @property
    def questions(self) -> int:
        return len(self.records)

    @property
    def correct(self) -> int:
        return sum(r.correct for r in self.records)

    @property
    def invalid(self) -> int:
        return sum(not r.valid for r in self.records)

    @property
    def input_tokens(self) -> int:
        return sum(r.input_tokens for r in self.records)

    @property
    def computed_input_tokens(self) -> int:
        """Input tokens the model computed: shared prompt prefixes count once."""
        return sum(
            r.input_tokens if r.computed_input_tokens is None else r.computed_input_tokens
            for r in self.records
        )

    @property
    def output_tokens(self) -> int:
        return sum(r.output_tokens for r in self.records)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.questions else 0.0

    @property
    def accuracy_ci(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.questions)

    # -- energy ------------------------------------------------------------
    def _median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.repeats) if self.repeats else 0.0

    @property
    def energy_j(self) -> float:
        return self._median("energy_j")

    @property
    def prefill_j(self) -> float:
        return self._median("prefill_j")

    @property
    def decode_j(self) -> float:
        return self._median("decode_j")

    @property
    def duration_s(self) -> float:
        return self._median("duration_s")

    @property
    def energy_samples_j(self) -> tuple[float, ...]:
        return tuple(s.energy_j for s in self.repeats)

    @property
    def energy_cv(self) -> float | None:
        """How much the repeats disagree: their coefficient of variation, outliers
        set aside (None with fewer than two repeats)."""
        return coefficient_of_variation(self.energy_samples_j)

    @property
    def other_load(self) -> float | None:
        """Median cores other processes kept busy during the repeats (None: unknown)."""
        loads = [s.other_load for s in self.repeats if s.other_load is not None]
        return statistics.median(loads) if loads else None

    @property
    def exclusive(self) -> bool | None:
        """Whether the server served only us in every repeat: false when another client
        shared any repeat's window (then the result is ``shared``), None when unknown."""
        known = [s.exclusive for s in self.repeats]
        if False in known:
            return False
        return True if known and None not in known else None

    @property
    def other_tokens(self) -> int | None:
        """The most tokens the server served others in one repeat's window (None: unknown)."""
        counts = [s.other_tokens for s in self.repeats if s.other_tokens is not None]
        return max(counts) if counts else None

    @property
    def j_per_token(self) -> float | None:
        return _ratio(self.energy_j, self.total_tokens)

    @property
    def j_per_output_token(self) -> float | None:
        return _ratio(self.energy_j, self.output_tokens)

    @property
    def j_per_question(self) -> float | None:
        return _ratio(self.energy_j, self.questions)

    @property
    def j_per_correct(self) -> float | None:
        return _ratio(self.energy_j, self.correct)

    @property
    def output_tokens_per_question(self) -> float | None:
        return _ratio(self.output_tokens, self.questions)

    def metric(self, name: str) -> float | None:
        """A metric by its public name (``j_per_token``, ``accuracy``...)."""
        value = getattr(self, name)
        return None if value is None else float(value)

    def samples(self, name: str) -> tuple[float, ...]:
        """Per-repeat values of a metric; token counts and answers are the same each repeat."""
        if name in _ENERGY_METRICS:
            field_name, divisor = _ENERGY_METRICS[name]
            den = divisor(self)
            return tuple(getattr(s, field_name) / den for s in self.repeats) if den else ()
        value = self.metric(name)
        return () if value is None else (value,)

    def subject_accuracy(self) -> dict[str, tuple[int, int]]:
        """Per subject: (correct, questions)."""
        out: dict[str, tuple[int, int]] = {}
        for r in self.records:
            c, n = out.get(r.subject, (0, 0))
            out[r.subject] = (c + r.correct, n + 1)
        return dict(sorted(out.items()))

    # -- serialisation -----------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Every derived metric, as plain values (for JSON, reports and baselines)."""
        low, high = self.accuracy_ci
        return {
            "questions": self.questions,
            "correct": self.correct,
            "invalid": self.invalid,
            "accuracy": self.accuracy,
            "accuracy_ci95": [low, high],
            "input_tokens": self.input_tokens,
            "computed_input_tokens": self.computed_input_tokens,
            "output_tokens": self.output_tokens,
            "energy_j": self.energy_j,
            "prefill_j": self.prefill_j,
            "decode_j": self.decode_j,
            "duration_s": self.duration_s,
            "j_per_token": self.j_per_token,
            "j_per_output_token": self.j_per_output_token,
            "j_per_question": self.j_per_question,
            "j_per_correct": self.j_per_correct,
            "output_tokens_per_question": self.output_tokens_per_question,
            "energy_cv": self.energy_cv,
            "other_load": self.other_load,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_id": self.test_id,
            "model": self.model,
            "strategy": self.strategy,
            "meter": self.meter,
            "estimated": self.estimated,
            "exclusive": self.exclusive,
            "fingerprint": {str(k): str(v) for k, v in self.fingerprint.items()},
            "summary": self.summary(),
            "repeats": [asdict(s) for s in self.repeats],
            "records": [asdict(r) for r in self.records],
            "details": dict(self.details),
            "question_set": self.question_set,
            "sampled": self.sampled,
            "prompt": dict(self.prompt),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        return cls(
            model=str(data["model"]),
            strategy=str(data["strategy"]),
            meter=str(data["meter"]),
            estimated=bool(data["estimated"]),
            records=tuple(QuestionRecord(**r) for r in data.get("records", [])),
            repeats=tuple(RepeatSample(**s) for s in data.get("repeats", [])),
            fingerprint={str(k): str(v) for k, v in data.get("fingerprint", {}).items()},
            test_id=str(data.get("test_id", "")),
            details=dict(data.get("details", {})),
            # Files written before the field existed kept it in the details.
            question_set=str(
                data.get("question_set") or data.get("details", {}).get("question_set", "")
            ),
            sampled=bool(data.get("sampled", False)),
            prompt=dict(data.get("prompt") or {}),
        )


_ENERGY_METRICS: dict[str, tuple[str, Callable[[EvalResult], int]]] = {
    "energy_j": ("energy_j", lambda r: 1),
    "prefill_j": ("prefill_j", lambda r: 1),
    "decode_j": ("decode_j", lambda r: 1),
    "duration_s": ("duration_s", lambda r: 1),
    "j_per_token": ("energy_j", lambda r: r.total_tokens),
    "j_per_output_token": ("energy_j", lambda r: r.output_tokens),
    "j_per_question": ("energy_j", lambda r: r.questions),
    "j_per_correct": ("energy_j", lambda r: r.correct),
}
