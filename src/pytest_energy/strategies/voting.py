"""Majority vote over sampled answers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def majority(answers: Sequence[str | None]) -> str | None:
    """The most common valid answer; a tie goes to the answer that appeared first.

    Invalid answers (None) do not vote; all invalid gives None.
    """
    valid = [a for a in answers if a is not None]
    if not valid:
        return None
    counts = Counter(valid)
    top = max(counts.values())
    return next(a for a in valid if counts[a] == top)
