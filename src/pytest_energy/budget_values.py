"""Reading one budget value (joules, tokens, an accuracy, a tolerance) from a budgets
file or a marker, with a one-line error naming where it was, what is wrong and the fix."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_energy.errors import ConfigError
from pytest_energy.settings import Tolerance


@dataclass(frozen=True)
class Where:
    source: str

    def error(self, key_path: str, problem: str, fix: str) -> ConfigError:
        at = f"{self.source}: {key_path}" if key_path else self.source
        return ConfigError(f"{at}: {problem}; {fix}")


def _number(where: Where, key_path: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(key_path, f"must be a number, got {value!r}", f"give {what}")
    number = float(value)
    if not math.isfinite(number):
        raise where.error(key_path, f"must be a finite number, got {value!r}", f"give {what}")
    if number <= 0:
        raise where.error(
            key_path,
            f"must be positive, got {value!r} (no evaluation can stay within it)",
            f"give {what}",
        )
    return number


def _joules(where: Where, key_path: str, value: Any) -> float:
    return _number(where, key_path, value, "a positive number of joules, e.g. 0.05")


def _tokens(where: Where, key_path: str, value: Any) -> float:
    return _number(where, key_path, value, "the most mean output tokens per question, e.g. 256")


def _written_number(value: Any) -> float | None:
    """The number as written (``"40%"`` is 40, ``0.4`` is 0.4); None if not a number."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.endswith("%"):
        text = text[:-1]
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _accuracy(where: Where, key_path: str, value: Any) -> float:
    fix = "give a fraction between 0 and 1 (0.4 means 40%) or a percentage such as '40%'"
    written = _written_number(value)
    percent = isinstance(value, str) and value.strip().endswith("%")
    if written is None:
        reason = "not a number or a percentage"
    elif isinstance(value, str) and not percent:
        reason = "a quoted number: leave out the quotes for a fraction, or add '%'"
    else:
        number = written / 100 if percent else written
        if 0.0 <= number <= 1.0:
            return number
        if number < 0:
            reason = "negative: an accuracy is 0% or more"
        elif percent:
            reason = "above 100%"
        else:
            reason = f"above 1: a plain number is a fraction, so {value!r} means {number:.0%}"
    raise where.error(key_path, f"invalid accuracy {value!r} ({reason})", fix)


def _tolerance(where: Where, key_path: str, value: Any) -> Tolerance:
    fix = "give a percentage such as '10%' (a number below 1 is a fraction: 0.1 is 10%)"
    if not isinstance(value, bool) and isinstance(value, (str, int, float)):
        try:
            return Tolerance.parse(value)
        except ValueError:
            pass
    written = _written_number(value)
    if written is None:
        reason = "not a number or a percentage"
    elif written < 0:
        reason = "negative: a tolerance is the regression allowed over the baseline, 0% or more"
    else:
        reason = "too large: it must be below 1000%"
    raise where.error(key_path, f"invalid tolerance {value!r} ({reason})", fix)


VALIDATORS: dict[str, Callable[[Where, str, Any], Any]] = {
    "max_j_per_token": _joules,
    "max_j_per_question": _joules,
    "min_accuracy": _accuracy,
    "max_output_tokens": _tokens,
    "tolerance": _tolerance,
}


def kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"a {type(value).__name__}"
