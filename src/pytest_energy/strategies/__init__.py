"""Test-time strategies: how a model turns MMLU questions into answers.

* ``direct``: score the four answer letters after the prompt (one forward
  pass; the letter is the one output token); ``direct:score=cloze`` scores each
  choice's text by its length-normalised log-likelihood instead.
* ``direct:generate``: generate a few tokens after ``Answer:`` and extract the letter.
* ``cot[:max_tokens=N]``: zero-shot chain-of-thought, answer extracted from the text.
* ``cot:budget_j=X``: controlled reasoning; the operating curve caps the reasoning
  tokens so predicted energy fits X joules, then an answer is forced.
* ``vote:k=N[,temperature=T,max_tokens=M]``: k sampled reasoning paths from one
  shared prefill, majority of valid answers (ties: earliest).
* ``route``: energy-aware routing between (model, strategy) candidates.

Each module declares its strategies and their options (see :mod:`.spec`); every
strategy puts questions to the model through a :class:`~pytest_energy.rendering.Renderer`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pytest_energy.backends import Backend
from pytest_energy.engine_results import Ledger
from pytest_energy.metrics import QuestionRecord
from pytest_energy.mmlu import MMLU, Question
from pytest_energy.strategies.spec import StrategySpec, parse_strategy

if TYPE_CHECKING:
    from pytest_energy.curves import Curve
    from pytest_energy.rendering import Renderer


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy may need beyond its engine: other models' engines (routing),
    the operating curve of an engine (controlled reasoning), and the question set
    (routing profiles candidates on a calibration sample)."""

    engines: Callable[[str], Backend]
    curve: Callable[[Backend], Curve]
    mmlu: Callable[[], MMLU]
    cache: dict[str, Any] = field(default_factory=dict)  # per-session memo (route profiles)


class Strategy(Protocol):
    """Answers questions with an engine, spending energy recorded in the ledger.

    ``prepare`` runs before the measured window (calibration, profiling): work
    paid once per session must not be billed to the evaluation.
    """

    spec: StrategySpec

    def prepare(self, engine: Backend, questions: Sequence[Question], *, seed: int) -> None: ...

    def run(
        self, engine: Backend, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]: ...


def build_strategy(
    spec: StrategySpec, context: StrategyContext, renderer: Renderer | None = None
) -> Strategy:
    """The runner for ``spec``, putting questions to the model with ``renderer``
    (the default prompt when None)."""
    from pytest_energy.prompts import DEFAULT_PROMPT
    from pytest_energy.rendering import Renderer

    return spec.type.build(spec, context, renderer or Renderer(DEFAULT_PROMPT))


__all__ = ["Strategy", "StrategyContext", "StrategySpec", "build_strategy", "parse_strategy"]
