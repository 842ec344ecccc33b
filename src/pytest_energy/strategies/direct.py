"""``direct``: the likelihood of the four answer letters after the harness prompt."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_energy.engine import Engine, Ledger
from pytest_energy.metrics import LETTERS, QuestionRecord
from pytest_energy.mmlu import Question
from pytest_energy.strategies.prompts import ANSWER_CUE, direct_user
from pytest_energy.strategies.spec import StrategySpec

# After "Answer:" the letter follows a space, as in the harness.
LETTER_CANDIDATES = tuple(" " + letter for letter in LETTERS)


def direct_prompt(engine: Engine, question: Question) -> str:
    return engine.prompt(direct_user(question), ANSWER_CUE)


class Direct:
    """One forward pass per question; the scored letter counts as the one output token."""

    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec

    def prepare(self, engine: Engine, questions: Sequence[Question], *, seed: int) -> None:
        pass

    def run(
        self, engine: Engine, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        prompts = [direct_prompt(engine, q) for q in questions]
        scored = engine.score(prompts, LETTER_CANDIDATES, ledger)
        return [
            QuestionRecord(
                subject=q.subject,
                gold=q.answer,
                predicted=LETTERS[max(range(4), key=lambda i: s.logprobs[i])],
                input_tokens=s.input_tokens,
                output_tokens=1,
            )
            for q, s in zip(questions, scored, strict=True)
        ]
