"""Test-time strategies: how a model turns MMLU questions into answers.

* ``direct``: score the four answer letters after the harness prompt (one
  forward pass; the letter is the one output token).
* ``direct:generate``: generate a few tokens after ``Answer:`` and extract the letter.
* ``cot[:max_tokens=N]``: zero-shot chain-of-thought, answer extracted from the text.
* ``cot:budget_j=X``: controlled reasoning; the operating curve caps the reasoning
  tokens so predicted energy fits X joules, then an answer is forced.
* ``vote:k=N[,temperature=T,max_tokens=M]``: k sampled reasoning paths from one
  shared prefill, majority of valid answers (ties: earliest).
* ``route``: energy-aware routing between (model, strategy) candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from pytest_energy.engine import Engine, Ledger
from pytest_energy.metrics import QuestionRecord
from pytest_energy.mmlu import Question
from pytest_energy.strategies.spec import StrategySpec, parse_strategy


class Strategy(Protocol):
    """Answers questions with an engine, spending energy recorded in the ledger."""

    spec: StrategySpec

    def run(
        self, engine: Engine, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]: ...


def build_strategy(spec: StrategySpec, *, engines: Callable[[str], Engine]) -> Strategy:
    """The runner for ``spec``; ``engines`` gives the session's engine for another model
    (routing may send a question to a candidate model)."""
    from pytest_energy.strategies.direct import Direct, DirectGenerate
    from pytest_energy.strategies.reasoning import ChainOfThought, MajorityVote

    if spec.name == "direct":
        return DirectGenerate(spec) if spec["generate"] else Direct(spec)
    if spec.name == "cot":
        return ChainOfThought(spec)
    if spec.name == "vote":
        return MajorityVote(spec)
    from pytest_energy.strategies.route import Route

    return Route(spec, engines)


__all__ = ["Strategy", "StrategySpec", "build_strategy", "parse_strategy"]
