"""Generated answers: ``direct:generate``, chain-of-thought (``cot``) and majority vote (``vote``).

``cot:budget_j=X`` (controlled reasoning) is built by :mod:`.budgeted`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_energy.backends import Backend
from pytest_energy.engine_results import Ledger
from pytest_energy.metrics import QuestionRecord
from pytest_energy.mmlu import Question
from pytest_energy.rendering import Renderer
from pytest_energy.strategies import Strategy, StrategyContext
from pytest_energy.strategies.spec import Option, StrategySpec, StrategyType
from pytest_energy.strategies.voting import majority

PromptFn = Callable[[Backend, Question], str]


class Generate:
    """Generates ``samples`` continuations per question (one shared prefill) and
    answers with the majority of the letters extracted from them (one sample:
    its letter). Greedy for one sample, sampled at ``temperature`` for several."""

    def __init__(
        self,
        spec: StrategySpec,
        renderer: Renderer,
        prompt: PromptFn,
        *,
        samples: int = 1,
        temperature: float = 0.0,
    ) -> None:
        self.spec = spec
        self.renderer = renderer
        self.prompt = prompt
        self.samples = samples
        self.temperature = temperature

    def prepare(self, engine: Backend, questions: Sequence[Question], *, seed: int) -> None:
        pass

    def run(
        self, engine: Backend, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        generated = engine.generate(
            [self.prompt(engine, q) for q in questions],
            ledger,
            max_new_tokens=self.spec["max_tokens"],
            samples=self.samples,
            temperature=self.temperature,
            seed=seed,
            stop=self.renderer.prompt.stop,
        )
        answer = self.renderer.answer
        return [
            QuestionRecord(
                subject=q.subject,
                gold=q.answer,
                predicted=majority([answer(s.text, q.choices) for s in g.samples]),
                input_tokens=g.input_tokens,
                output_tokens=sum(s.output_tokens for s in g.samples),
                computed_input_tokens=g.computed_input_tokens,
            )
            for q, g in zip(questions, generated, strict=True)
        ]


def _build_cot(spec: StrategySpec, context: StrategyContext, renderer: Renderer) -> Strategy:
    if spec["budget_j"] is not None:
        from pytest_energy.strategies.budgeted import BudgetedReasoning

        return BudgetedReasoning(spec, context, renderer)
    return Generate(spec, renderer, renderer.cot)


def _build_vote(spec: StrategySpec, context: StrategyContext, renderer: Renderer) -> Strategy:
    return Generate(
        spec, renderer, renderer.cot, samples=spec["k"], temperature=spec["temperature"]
    )


def _vote_samples(options: Mapping[str, Any]) -> bool:
    return float(options["temperature"]) > 0


STRATEGIES = (
    StrategyType(
        "cot",
        {"max_tokens": Option(int, 256), "budget_j": Option(float)},
        _build_cot,
    ),
    StrategyType(
        "vote",
        {
            "k": Option(int, 5),
            "temperature": Option(float, 0.7, zero_ok=True),
            "max_tokens": Option(int, 256),
        },
        _build_vote,
        sampled=_vote_samples,
    ),
)
