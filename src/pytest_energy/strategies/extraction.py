"""Finding the final answer letter in a model's free-text output.

The chain, first match wins:

1. ``The answer is (X)`` / ``the answer is X`` (last occurrence, any case);
2. the last parenthesised letter ``(X)``;
3. the choice whose text is mentioned last (choices of at least two
   characters, matched as whole words, any case);
4. ``Answer: X`` (last occurrence);
5. a lone letter opening the output (``" B"``, ``"C."``), as ``direct:generate``
   continues right after ``Answer:``.

No match is an invalid answer: it counts as wrong and is counted as invalid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pytest_energy.metrics import LETTERS

# Letters are matched in upper case only: "the answer is a bond" names no option.
_ANSWER_IS = re.compile(r"(?i:answer\s+is)\s*:?\s*\(?\s*([ABCD])\b")
_PAREN = re.compile(r"\(([ABCD])\)")
_ANSWER_COLON = re.compile(r"(?i:answer)\s*:\s*\(?([ABCD])\b")
# A lone letter, not the first word of a sentence ("A molecule of water...").
_LEADING = re.compile(r"^\s*\(?([ABCD])(?=[).:,]|\s*$|\s*\n|\s+[^a-z\s])")


def extract_answer(text: str, choices: Sequence[str] = ()) -> str | None:
    """The answer letter in ``text``, or None when none of the documented patterns match."""
    for pattern in (_ANSWER_IS, _PAREN):
        matches = pattern.findall(text)
        if matches:
            return str(matches[-1])
    by_choice = _by_choice_text(text, choices)
    if by_choice is not None:
        return by_choice
    matches = _ANSWER_COLON.findall(text)
    if matches:
        return str(matches[-1])
    lead = _LEADING.match(text)
    return lead.group(1) if lead else None


def _by_choice_text(text: str, choices: Sequence[str]) -> str | None:
    lowered = text.lower()
    best: tuple[int, str] | None = None
    for letter, choice in zip(LETTERS, choices, strict=False):
        needle = choice.strip().lower()
        if len(needle) < 2:
            continue
        pattern = r"(?<!\w)" + re.escape(needle) + r"(?!\w)"
        ends = [m.end() for m in re.finditer(pattern, lowered)]
        if ends and (best is None or ends[-1] > best[0]):
            best = (ends[-1], letter)
    return best[1] if best else None
