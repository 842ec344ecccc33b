"""Controlled reasoning, ``cot:budget_j=X``: chain-of-thought within an energy budget.

For each question the operating curve E(n_in, n_out) and the prompt length give
the largest number of reasoning tokens whose predicted energy, together with
the forced answer, stays within ``budget_j`` joules (the curve is per question
at batch 1, as calibrated). All questions share batches, each row stopping at
its own allowance. A question that has not produced a valid answer when its
allowance runs out is not wasted: the answer cue ``The answer is (`` is fed
through its KV cache and the next letter is scored, so every question gets an
answer for a few decode steps more. Where the forced answer is a request of
its own that computes the prompt and the reasoning again (a server without a
prefix cache, ``Backend.forced_answer_recomputes``), the allowance and the
prediction include that second prefill.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_energy.backends import Backend
from pytest_energy.curves import forced_answer_energy_j, max_tokens_for_budget
from pytest_energy.engine_results import Force, Ledger
from pytest_energy.metrics import LETTERS, QuestionRecord
from pytest_energy.mmlu import Question
from pytest_energy.prompts import FORCED_ANSWER_CUE
from pytest_energy.rendering import Renderer
from pytest_energy.strategies import StrategyContext
from pytest_energy.strategies.spec import StrategySpec


class BudgetedReasoning:
    def __init__(self, spec: StrategySpec, context: StrategyContext, renderer: Renderer) -> None:
        self.spec = spec
        self.context = context
        self.renderer = renderer

    def prepare(self, engine: Backend, questions: Sequence[Question], *, seed: int) -> None:
        self.context.curve(engine)  # a calibration sweep, if needed, happens here, unmeasured

    def run(
        self, engine: Backend, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        curve = self.context.curve(engine)
        budget_j: float = self.spec["budget_j"]
        prompts = [self.renderer.cot(engine, q) for q in questions]
        # The forced answer costs the cue and one letter.
        reserve = engine.count_tokens(FORCED_ANSWER_CUE) + 1
        n_in = [engine.count_tokens(p) for p in prompts]
        recompute = engine.forced_answer_recomputes
        allowance = [
            max_tokens_for_budget(
                curve,
                n,
                budget_j,
                cap=self.spec["max_tokens"],
                reserve=reserve,
                recompute=recompute,
            )
            for n in n_in
        ]
        generated = engine.generate(
            prompts,
            ledger,
            max_new_tokens=allowance,
            force=Force(FORCED_ANSWER_CUE, LETTERS),
            stop=self.renderer.prompt.stop,
        )
        samples = [g.samples[0] for g in generated]
        computed = [g.computed_input_tokens for g in generated]
        texts = [g.text for g in samples]
        out_tokens = [g.output_tokens for g in samples]
        predicted: list[str | None] = [
            self.renderer.answer(text, q.choices) if text else None
            for text, q in zip(texts, questions, strict=True)
        ]
        forced: list[int] = []
        for i, sample in enumerate(samples):
            if predicted[i] is None and sample.forced is not None:
                predicted[i] = _best(sample.forced)
                forced.append(i)
        # A row that stopped on its own without a valid answer has left the
        # batch; cue it with a fresh pass (rare: the budget did not cut it).
        late = [i for i, p in enumerate(predicted) if p is None]
        if late:
            scored = engine.score(
                [prompts[i] + texts[i] + FORCED_ANSWER_CUE for i in late], LETTERS, ledger
            )
            for i, sc in zip(late, scored, strict=True):
                predicted[i] = _best(sc.logprobs)
                out_tokens[i] += reserve
                computed[i] += sc.computed_input_tokens
            forced.extend(late)

        def predicted_j(i: int) -> float:
            if i in late:  # a fresh pass over the whole context
                return forced_answer_energy_j(
                    curve, n_in[i], out_tokens[i] - reserve, reserve, recompute=True
                )
            if samples[i].forced is not None:
                return forced_answer_energy_j(
                    curve, n_in[i], out_tokens[i] - reserve, reserve, recompute=recompute
                )
            return curve.energy_j(n_in[i], out_tokens[i])

        per_question: list[dict[str, Any]] = [
            {
                "budget_j": budget_j,
                "allowed_tokens": allowance[i],
                "output_tokens": out_tokens[i],
                "predicted_j": predicted_j(i),
                "forced": i in forced,
            }
            for i in range(len(questions))
        ]
        ledger.details["budget"] = {
            "budget_j": budget_j,
            "curve_model": curve.model,
            "forced_answers": len(forced),
            "predicted_j": sum(q["predicted_j"] for q in per_question),
            "questions": per_question,
        }
        return [
            QuestionRecord(
                subject=q.subject,
                gold=q.answer,
                predicted=predicted[i],
                input_tokens=n_in[i],
                output_tokens=out_tokens[i],
                computed_input_tokens=computed[i],
            )
            for i, q in enumerate(questions)
        ]


def _best(logprobs: Sequence[float]) -> str:
    return LETTERS[max(range(len(LETTERS)), key=lambda k: logprobs[k])]
