"""Generated answers: ``direct:generate``, chain-of-thought, and majority vote."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pytest_energy.engine import Engine, Ledger
from pytest_energy.metrics import QuestionRecord
from pytest_energy.mmlu import Question
from pytest_energy.strategies.extraction import extract_answer
from pytest_energy.strategies.prompts import cot_user
from pytest_energy.strategies.spec import StrategySpec
from pytest_energy.strategies.voting import majority

PromptFn = Callable[[Engine, Question], str]


def cot_prompt(engine: Engine, question: Question) -> str:
    return engine.prompt(cot_user(question))


class Generate:
    """Generates ``samples`` continuations per question (one shared prefill) and
    answers with the majority of the letters extracted from them (one sample:
    its letter). Greedy for one sample, sampled at ``temperature`` for several."""

    def __init__(
        self, spec: StrategySpec, prompt: PromptFn, *, samples: int = 1, temperature: float = 0.0
    ) -> None:
        self.spec = spec
        self.prompt = prompt
        self.samples = samples
        self.temperature = temperature

    def prepare(self, engine: Engine, questions: Sequence[Question], *, seed: int) -> None:
        pass

    def run(
        self, engine: Engine, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        generated = engine.generate(
            [self.prompt(engine, q) for q in questions],
            ledger,
            max_new_tokens=self.spec["max_tokens"],
            samples=self.samples,
            temperature=self.temperature,
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


def chain_of_thought(spec: StrategySpec) -> Generate:
    return Generate(spec, cot_prompt)


def majority_vote(spec: StrategySpec) -> Generate:
    return Generate(spec, cot_prompt, samples=spec["k"], temperature=spec["temperature"])
