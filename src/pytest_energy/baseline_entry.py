"""One baseline entry: the reference result of one test, as the baseline file stores it.

An entry keeps the hardware fingerprint, the meter and whether the energy is
estimated, the per-repeat samples the gate's statistics need, the question set,
the prompt, a summary for humans, and for a served model whether its server
served only us (``exclusive``, written only when known). Floats are rounded to six significant
digits so that a refreshed baseline shows a small diff.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.errors import BaselineError
from pytest_energy.metrics import EvalResult

SIGNIFICANT_DIGITS = 6
# Measured per repeat; the rest are counts that are the same in every repeat.
REPEAT_METRICS = (
    "energy_j",
    "prefill_j",
    "decode_j",
    "j_per_token",
    "j_per_output_token",
    "j_per_question",
)
COUNT_METRICS = ("output_tokens", "accuracy", "questions")


@dataclass(frozen=True)
class BaselineEntry:
    """The reference result of one test.

    ``samples`` maps a metric to its per-repeat values (count metrics have one
    value). ``question_set`` identifies the questions asked (same id = same
    questions in the same order); ``correct_vector`` has one ``1``/``0`` per
    question; ``output_tokens_sd`` is the spread of output tokens per question.
    """

    model: str
    strategy: str
    meter: str
    estimated: bool
    fingerprint: Mapping[str, str]
    samples: Mapping[str, tuple[float, ...]]
    questions: int
    correct: int
    question_set: str
    correct_vector: str = ""
    output_tokens_sd: float = 0.0
    summary: Mapping[str, Any] = field(default_factory=dict)
    # Whether the strategy sampled (None: recorded before this was stored).
    sampled: bool | None = None
    # The prompt: {"name", "fingerprint", "fields"}; {}: recorded before prompts were.
    prompt: Mapping[str, Any] = field(default_factory=dict)
    # A served model: whether its server served only us while this was recorded
    # (false: shared with other clients; None: unknown, stored only when known).
    exclusive: bool | None = None

    def median(self, metric: str) -> float | None:
        values = self.samples.get(metric, ())
        return statistics.median(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        known = {} if self.exclusive is None else {"exclusive": self.exclusive}
        return {
            **known,
            "model": self.model,
            "strategy": self.strategy,
            "meter": self.meter,
            "estimated": self.estimated,
            "fingerprint": dict(self.fingerprint),
            "samples": {k: [_round(v) for v in vs] for k, vs in self.samples.items()},
            "questions": {
                "count": self.questions,
                "correct": self.correct,
                "set": self.question_set,
                "correct_vector": self.correct_vector,
                "output_tokens_sd": _round(self.output_tokens_sd),
            },
            "summary": _rounded(dict(self.summary)),
            "sampled": self.sampled,
            "prompt": dict(self.prompt),
        }

    @classmethod
    def from_dict(cls, data: Any) -> BaselineEntry:
        """Validate one stored entry; a problem is a ``ValueError`` describing it."""
        if not isinstance(data, Mapping):
            raise ValueError(f"must be an object, got {type(data).__name__}")
        _require(
            data, ("model", "strategy", "meter", "estimated", "fingerprint", "samples", "questions")
        )
        for key in ("model", "strategy", "meter"):
            if not isinstance(data[key], str):
                raise ValueError(f"'{key}' must be a string")
        if not isinstance(data["estimated"], bool):
            raise ValueError("'estimated' must be true or false")
        fingerprint = data["fingerprint"]
        if not isinstance(fingerprint, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in fingerprint.items()
        ):
            raise ValueError("'fingerprint' must map names to strings")
        samples = _samples(data["samples"])
        questions = data["questions"]
        if not isinstance(questions, Mapping):
            raise ValueError("'questions' must be an object")
        _require(questions, ("count", "correct", "set"), "questions.")
        if not isinstance(questions["set"], str):
            raise ValueError("'questions.set' must be a string")
        count, correct = questions["count"], questions["correct"]
        if not _is_int(count) or not _is_int(correct) or not 0 <= correct <= count:
            raise ValueError("'questions.count' and 'questions.correct' must be counts")
        vector = questions.get("correct_vector", "")
        if (
            not isinstance(vector, str)
            or (vector and len(vector) != count)
            or set(vector) - {"0", "1"}
        ):
            raise ValueError("'questions.correct_vector' must be one 0/1 per question")
        sd = questions.get("output_tokens_sd", 0.0)
        if not _is_number(sd) or sd < 0:
            raise ValueError("'questions.output_tokens_sd' must be a non-negative number")
        summary = data.get("summary", {})
        if not isinstance(summary, Mapping):
            raise ValueError("'summary' must be an object")
        sampled, prompt = data.get("sampled"), data.get("prompt") or {}
        if sampled is not None and not isinstance(sampled, bool):
            raise ValueError("'sampled' must be true, false or null")
        if not isinstance(prompt, Mapping) or not isinstance(prompt.get("fingerprint", ""), str):
            raise ValueError("'prompt' must be an object with a string 'fingerprint'")
        exclusive = data.get("exclusive")
        if exclusive is not None and not isinstance(exclusive, bool):
            raise ValueError("'exclusive' must be true, false or null")
        return cls(
            model=data["model"],
            strategy=data["strategy"],
            meter=data["meter"],
            estimated=data["estimated"],
            fingerprint=dict(fingerprint),
            samples=samples,
            questions=int(count),
            correct=int(correct),
            question_set=questions["set"],
            correct_vector=vector,
            output_tokens_sd=float(sd),
            summary=dict(summary),
            sampled=sampled,
            prompt=dict(prompt),
            exclusive=exclusive,
        )


def entry_from_result(result: EvalResult) -> BaselineEntry:
    """The baseline entry that records ``result`` (floats already rounded for storage).

    Raises :class:`BaselineError` for a result without finite measured repeats,
    which could not be read back.
    """
    samples: dict[str, tuple[float, ...]] = {}
    for metric in REPEAT_METRICS:
        values = result.samples(metric)
        if values:
            samples[metric] = tuple(_round(v) for v in values)
    if not samples.get("energy_j") or not all(map(_is_number, samples["energy_j"])):
        raise BaselineError(
            f"{result.test_id or result.model}: no finite measured repeats to record "
            f"(energy samples {list(result.energy_samples_j)}); fix the measurement first"
        )
    samples["output_tokens"] = (float(result.output_tokens),)
    samples["accuracy"] = (_round(result.accuracy),)
    samples["questions"] = (float(result.questions),)
    tokens = [r.output_tokens for r in result.records]
    return BaselineEntry(
        model=result.model,
        strategy=result.strategy,
        meter=result.meter,
        estimated=result.estimated,
        fingerprint=dict(result.fingerprint),
        samples=samples,
        questions=result.questions,
        correct=result.correct,
        question_set=result.question_set,
        correct_vector="".join("1" if r.correct else "0" for r in result.records),
        output_tokens_sd=_round(statistics.stdev(tokens)) if len(tokens) > 1 else 0.0,
        summary=_rounded(result.summary()),
        sampled=result.sampled,
        prompt=dict(result.prompt),
        exclusive=result.exclusive,
    )


def _round(value: float) -> float:
    if not math.isfinite(value) or value == 0:
        return float(value)
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return _round(value)
    if isinstance(value, Mapping):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(data: Mapping[str, Any], keys: Iterable[str], prefix: str = "") -> None:
    missing = [f"'{prefix}{k}'" for k in keys if k not in data]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")


def _samples(raw: Any) -> dict[str, tuple[float, ...]]:
    if not isinstance(raw, Mapping):
        raise ValueError("'samples' must map metric names to lists of numbers")
    out: dict[str, tuple[float, ...]] = {}
    for metric, values in raw.items():
        if not isinstance(values, list) or not values or not all(map(_is_number, values)):
            raise ValueError(f"'samples.{metric}' must be a non-empty list of finite numbers")
        out[str(metric)] = tuple(float(v) for v in values)
    if "energy_j" not in out:
        raise ValueError("'samples.energy_j' is missing")
    return out
