"""MMLU prompts in the evaluation-harness convention.

``The following are multiple choice questions (with answers) about <subject>.``,
the question, ``A. ...`` to ``D. ...`` lines, then ``Answer:``. With a chat
model the question block is the user turn and the cue opens the assistant turn.
"""

from __future__ import annotations

from pytest_energy.metrics import LETTERS
from pytest_energy.mmlu import Question

ANSWER_CUE = "Answer:"
COT_INSTRUCTION = (
    'Think step by step, then finish with "The answer is (X)" where X is A, B, C or D.'
)
FORCED_ANSWER_CUE = "\nThe answer is ("


def subject_header(subject: str) -> str:
    return (
        "The following are multiple choice questions (with answers) about "
        f"{subject.replace('_', ' ')}.\n\n"
    )


def question_block(q: Question) -> str:
    lines = [q.question.strip()]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, q.choices, strict=True)]
    return "\n".join(lines)


def direct_user(q: Question) -> str:
    return subject_header(q.subject) + question_block(q)


def cot_user(q: Question) -> str:
    return subject_header(q.subject) + question_block(q) + "\n\n" + COT_INSTRUCTION
