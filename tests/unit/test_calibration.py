"""Calibration prompts: exact lengths, and no two sharing a prefix a server could reuse."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_energy.calibration import Prompts


class CharTokenizer:
    """One token per character."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids: list[int]) -> str:
        return "".join(map(chr, ids))


class Engine:
    tokenizer = CharTokenizer()


def prompts(text: str) -> Prompts:
    engine: Any = Engine()
    return Prompts(engine, text)


def test_each_prompt_starts_one_token_further_on_and_has_the_length_asked_for() -> None:
    cut = prompts("abcdefgh")
    taken = [cut.take(3), cut.take(3), cut.take(5)]
    assert taken == ["abc", "bcd", "cdefg"]
    # Servers reuse a common prefix (llama.cpp) or common leading blocks (vLLM):
    # consecutive prompts differ in their first token.
    assert len({p[0] for p in taken}) == len(taken)


def test_the_text_wraps_around_and_repeats_when_shorter_than_the_prompt() -> None:
    cut = prompts("abcd")
    assert [cut.take(2) for _ in range(5)] == ["ab", "bc", "cd", "da", "ab"]
    assert cut.take(10) == "bcdabcdabc"


def test_no_text_is_refused() -> None:
    with pytest.raises(ValueError, match="no text"):
        prompts("")
