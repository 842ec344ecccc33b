"""``direct`` (letter likelihood) and ``direct:generate`` (a short generated answer)."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_energy.engine import Engine, Ledger
from pytest_energy.metrics import LETTERS, QuestionRecord
from pytest_energy.mmlu import Question
from pytest_energy.strategies.extraction import extract_answer
from pytest_energy.strategies.prompts import ANSWER_CUE, direct_user
from pytest_energy.strategies.spec import StrategySpec

# After "Answer:" the letter follows a space, as in the harness.
LETTER_CANDIDATES = tuple(" " + letter for letter in LETTERS)


class Direct:
    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec

    def prepare(self, engine: Engine, questions: Sequence[Question], *, seed: int) -> None:
        pass

    def run(
        self, engine: Engine, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        prompts = [engine.prompt(direct_user(q), ANSWER_CUE) for q in questions]
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


class DirectGenerate:
    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec

    def prepare(self, engine: Engine, questions: Sequence[Question], *, seed: int) -> None:
        pass

    def run(
        self, engine: Engine, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        prompts = [engine.prompt(direct_user(q), ANSWER_CUE) for q in questions]
        generated = engine.generate(prompts, ledger, max_new_tokens=self.spec["max_tokens"])
        return [
            QuestionRecord(
                subject=q.subject,
                gold=q.answer,
                predicted=extract_answer(g.samples[0].text, q.choices),
                input_tokens=g.input_tokens,
                output_tokens=g.samples[0].output_tokens,
            )
            for q, g in zip(questions, generated, strict=True)
        ]
