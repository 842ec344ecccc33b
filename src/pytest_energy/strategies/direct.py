"""``direct``: answer in one step after the prompt's answer cue.

* ``score=letters`` (default): the likelihood of the four answer letters; one
  forward pass, and the scored letter counts as the one output token.
* ``score=cloze``: each choice's full text after the cue, scored by its
  log-likelihood per character (the cloze formulation small models are usually
  reported with). Nothing is generated: 0 output tokens; the choice tokens the
  model read count as input tokens.
* ``generate``: generate up to ``max_tokens`` tokens and extract the letter.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_energy.backends import Backend
from pytest_energy.engine_results import Ledger
from pytest_energy.metrics import LETTERS, QuestionRecord
from pytest_energy.mmlu import Question
from pytest_energy.rendering import Renderer
from pytest_energy.strategies import Strategy, StrategyContext
from pytest_energy.strategies.reasoning import Generate
from pytest_energy.strategies.spec import Option, StrategySpec, StrategyType

# After "Answer:" the letter (or the choice's text) follows a space, as in the harness.
LETTER_CANDIDATES = tuple(" " + letter for letter in LETTERS)


class Direct:
    """One forward pass per question; the scored letter counts as the one output token."""

    def __init__(self, spec: StrategySpec, renderer: Renderer) -> None:
        self.spec = spec
        self.renderer = renderer

    def prepare(self, engine: Backend, questions: Sequence[Question], *, seed: int) -> None:
        pass

    def run(
        self, engine: Backend, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        prompts = [self.renderer.direct(engine, q) for q in questions]
        scored = engine.score(prompts, LETTER_CANDIDATES, ledger)
        return [
            QuestionRecord(
                subject=q.subject,
                gold=q.answer,
                predicted=LETTERS[max(range(4), key=lambda i: s.logprobs[i])],
                input_tokens=s.input_tokens,
                output_tokens=1,
                computed_input_tokens=s.computed_input_tokens,
            )
            for q, s in zip(questions, scored, strict=True)
        ]


class Cloze(Direct):
    """Each choice's text after the cue, by log-likelihood per character."""

    def run(
        self, engine: Backend, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        prompts = [self.renderer.direct(engine, q) for q in questions]
        continuations = [[" " + text.strip() for text in q.choices] for q in questions]
        scored = engine.score_choices(prompts, continuations, ledger)
        records = []
        for q, s in zip(questions, scored, strict=True):
            per_char = [lp / max(1, n) for lp, n in zip(s.logprobs, s.chars, strict=True)]
            records.append(
                QuestionRecord(
                    subject=q.subject,
                    gold=q.answer,
                    predicted=LETTERS[max(range(4), key=lambda i: per_char[i])],
                    input_tokens=s.input_tokens,
                    output_tokens=0,
                    computed_input_tokens=s.computed_input_tokens,
                )
            )
        return records


def _build(spec: StrategySpec, context: StrategyContext, renderer: Renderer) -> Strategy:
    if spec["generate"]:
        return Generate(spec, renderer, renderer.direct)
    if spec["score"] == "cloze":
        return Cloze(spec, renderer)
    return Direct(spec, renderer)


STRATEGIES = (
    StrategyType(
        "direct",
        {
            "generate": Option(bool, False),
            "max_tokens": Option(int, 8),
            "score": Option(str, "letters", choices=("letters", "cloze")),
        },
        _build,
    ),
)
