"""Chain-of-thought and majority vote over sampled reasoning paths."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_energy.engine import Engine, Ledger
from pytest_energy.metrics import QuestionRecord
from pytest_energy.mmlu import Question
from pytest_energy.strategies.extraction import extract_answer
from pytest_energy.strategies.prompts import cot_user
from pytest_energy.strategies.spec import StrategySpec
from pytest_energy.strategies.voting import majority


class ChainOfThought:
    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec

    def prepare(self, engine: Engine, questions: Sequence[Question], *, seed: int) -> None:
        pass

    def run(
        self, engine: Engine, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        prompts = [engine.prompt(cot_user(q)) for q in questions]
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


class MajorityVote:
    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec

    def prepare(self, engine: Engine, questions: Sequence[Question], *, seed: int) -> None:
        pass

    def run(
        self, engine: Engine, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        prompts = [engine.prompt(cot_user(q)) for q in questions]
        generated = engine.generate(
            prompts,
            ledger,
            max_new_tokens=self.spec["max_tokens"],
            samples=self.spec["k"],
            temperature=self.spec["temperature"],
            seed=seed,
        )
        return [
            QuestionRecord(
                subject=q.subject,
                gold=q.answer,
                predicted=majority([extract_answer(s.text, q.choices) for s in g.samples]),
                input_tokens=g.input_tokens,
                output_tokens=sum(s.output_tokens for s in g.samples),
            )
            for q, g in zip(questions, generated, strict=True)
        ]
