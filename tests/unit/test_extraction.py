"""The answer-letter chain on outputs written the way a small chat model writes them.

The chain (first rule that matches wins), as documented in extraction.py:
1. "The answer is (X)" / "answer is X", last occurrence, any case of the phrase;
2. the last parenthesised capital letter "(X)";
3. the choice whose text is mentioned last (whole words, any case);
4. "Answer: X", last occurrence;
5. a lone letter opening the output (" B", "C.") as direct:generate writes it.
Letters are capitals only, so English words ("a bond") never name an option.
"""

from __future__ import annotations

import pytest

from pytest_energy.strategies.extraction import extract_answer

CAPITALS = ("Paris", "London", "Berlin", "Madrid")
BONDS = ("ionic", "covalent", "metallic", "hydrogen bonding")
NUMBERS = ("2", "4", "6", "8")  # one-character choices are never matched as text

CASES: list[tuple[str, str, tuple[str, ...], str | None]] = [
    # id, output, choices, expected
    ("answer-is-paren", "The answer is (B).", CAPITALS, "B"),
    ("answer-is-bare", "answer is C", CAPITALS, "C"),
    ("answer-is-colon", "Therefore, the final answer is: (D)", CAPITALS, "D"),
    ("answer-is-upper", "THE ANSWER IS A", CAPITALS, "A"),
    ("correct-answer-is", "The correct answer is B, because 2 + 2 = 4.", NUMBERS, "B"),
    ("answer-is-newline", "So the answer is\n(C)", CAPITALS, "C"),
    (
        "answer-is-after-steps",
        "Step 1: Photosynthesis happens in chloroplasts.\n"
        "Step 2: Mitochondria make ATP.\n"
        "So the answer is (C).",
        CAPITALS,
        "C",
    ),
    ("last-answer-is-wins", "The answer is (A). Wait, no. The answer is (D).", CAPITALS, "D"),
    (
        "answer-is-beats-later-paren",
        "The answer is (B). Option (C) is a distractor because it confuses the terms.",
        CAPITALS,
        "B",
    ),
    (
        "answer-is-beats-choice-text",
        "London is big, but the capital of France is Paris. The answer is (A).",
        CAPITALS,
        "A",
    ),
    ("last-paren", "(A) is wrong because the sign flips, so (D) must be right.", NUMBERS, "D"),
    ("single-paren", "Let's eliminate options. Only (B) fits the definition.", NUMBERS, "B"),
    (
        "paren-beats-choice-text",
        "Berlin is in Germany. I pick (B) since it is in England, not Berlin.",
        CAPITALS,
        "B",
    ),
    ("choice-text", "The capital of France is Paris.", CAPITALS, "A"),
    (
        "choice-text-last-mentioned",
        "It is not Paris; the capital of Spain is Madrid.",
        CAPITALS,
        "D",
    ),
    ("choice-text-any-case", "sodium chloride has IONIC bonds", BONDS, "A"),
    ("choice-text-multiword", "Water molecules attract by hydrogen bonding.", BONDS, "D"),
    (
        "choice-text-beats-answer-colon",
        "Madrid is the capital of Spain.\nAnswer: B",
        CAPITALS,
        "D",
    ),
    ("choice-text-whole-words-only", "Parisian cafes and Londoners", CAPITALS, None),
    ("answer-colon", "Answer: B", NUMBERS, "B"),
    ("answer-colon-no-space", "answer:C", NUMBERS, "C"),
    ("answer-colon-last", "Answer: A\nActually, let me recheck.\nAnswer: C", NUMBERS, "C"),
    ("leading-letter-space", " C", NUMBERS, "C"),
    ("leading-letter-dot", " C.", NUMBERS, "C"),
    ("leading-letter-paren", "B) 4", NUMBERS, "B"),
    ("leading-letter-newline", "\nD\n", NUMBERS, "D"),
    ("leading-letter-with-choice", " A. 2", NUMBERS, "A"),
    ("lower-case-article-is-no-letter", "the answer is a bond between two atoms", BONDS, None),
    ("lower-case-letters-are-no-answer", "i think the answer is b", NUMBERS, None),
    ("lower-case-paren-is-no-answer", "(a) and (b) are both plausible", NUMBERS, None),
    ("word-starting-with-a-letter", "Because the enzyme is denatured, it stops.", NUMBERS, None),
    ("letter-outside-abcd", "The answer is (E).", NUMBERS, None),
    ("echoed-template", 'Finish with "The answer is (X)" where X is a letter.', NUMBERS, None),
    ("nothing", "I am not sure about this question.", CAPITALS, None),
    ("empty", "", CAPITALS, None),
    # A sentence that opens with the article "A" names no option: a chain of
    # thought cut off by max_tokens must count as invalid, not as answer A.
    ("leading-article-a", "A molecule of water has two hydrogen atoms and one", NUMBERS, None),
]


@pytest.mark.parametrize(
    ("text", "choices", "expected"),
    [
        pytest.param(text, choices, expected, id=case_id)
        for case_id, text, choices, expected in CASES
    ],
)
def test_extracts_the_letter_a_small_model_meant(
    text: str, choices: tuple[str, ...], expected: str | None
) -> None:
    assert extract_answer(text, choices) == expected


def test_the_table_covers_enough_real_outputs() -> None:
    assert len(CASES) >= 25
    assert len({case_id for case_id, *_ in CASES}) == len(CASES)


def test_without_choices_only_the_letter_patterns_apply() -> None:
    assert extract_answer("The capital of France is Paris.") is None
    assert extract_answer("so (C)") == "C"


def test_one_character_choices_are_not_matched_as_text() -> None:
    # "4" appears in the reasoning, but a single character is too common to mean choice B.
    assert extract_answer("2 + 2 = 4, obviously", NUMBERS) is None
