"""``route``: energy-aware routing between (model, strategy) candidates.

Each candidate is profiled once per session on a calibration sample disjoint
from the evaluated questions: accuracy per subject and category, mean output
tokens, and measured joules per token (an operating curve from
``energy_curve`` is used instead when configured). Each question then goes to
the candidate that meets the accuracy target at the least predicted energy (or
maximises accuracy - lambda x energy). The profiling energy is reported but not
counted in the evaluation: it is paid once, not per question.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from pytest_energy.backends import Backend
from pytest_energy.engine_results import Ledger
from pytest_energy.metrics import QuestionRecord
from pytest_energy.mmlu import CATEGORIES, Question
from pytest_energy.rendering import Renderer
from pytest_energy.routing import (
    Candidate,
    Profile,
    RouteOptions,
    parse_route_options,
    route,
    summarise,
)
from pytest_energy.strategies import Strategy, StrategyContext, build_strategy, parse_strategy
from pytest_energy.strategies.spec import Option, StrategySpec, StrategyType

DEFAULT_CALIBRATION_QUESTIONS = 32


class Route:
    """Routes each question to a candidate; the candidates use the route's prompt."""

    def __init__(self, spec: StrategySpec, context: StrategyContext, renderer: Renderer) -> None:
        self.spec = spec
        self.context = context
        self.renderer = renderer

    def _options(self, engine: Backend) -> RouteOptions:
        return parse_route_options(
            _route_options(self.spec.options), default_model=engine.spec.label
        )

    def _profiles(
        self, engine: Backend, questions: Sequence[Question], seed: int
    ) -> tuple[RouteOptions, list[Profile]]:
        options = self._options(engine)
        n_cal = options.calibration_n or DEFAULT_CALIBRATION_QUESTIONS
        return options, [self._profile(c, questions, n_cal, seed) for c in options.candidates]

    def prepare(self, engine: Backend, questions: Sequence[Question], *, seed: int) -> None:
        self._profiles(engine, questions, seed)  # profiling runs here, unmeasured

    def run(
        self, engine: Backend, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        options, profiles = self._profiles(engine, questions, seed)
        target = options.target_for(profiles)
        decisions = [
            route(
                q.subject,
                engine.count_tokens(self.renderer.cot(engine, q)),
                profiles,
                target_accuracy=target,
                lam=options.lam,
                category=CATEGORIES.get(q.subject),
            )
            for q in questions
        ]
        chosen: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, decision in enumerate(decisions):
            chosen[decision.chosen].append(i)
        records: list[QuestionRecord | None] = [None] * len(questions)
        for (model, strategy), members in sorted(chosen.items()):
            runner = build_strategy(parse_strategy(strategy), self.context, self.renderer)
            answered = runner.run(
                self.context.engines(model), [questions[i] for i in members], ledger, seed=seed
            )
            for i, record in zip(members, answered, strict=True):
                records[i] = record
        done = [r for r in records if r is not None]
        summary = summarise(decisions, [r.correct for r in done], measured_energy_j=ledger.energy_j)
        ledger.details["route"] = {
            "target_accuracy": target,
            "lambda": options.lam,
            "profiles": [_profile_summary(p) for p in profiles],
            "profiling_j": sum(
                self.context.cache[f"route-profile|{c.label}|energy_j"]
                for c in options.candidates
                if f"route-profile|{c.label}|energy_j" in self.context.cache
            ),
            "summary": asdict(summary),
            "decisions": [
                {
                    "group": d.group,
                    "chosen": d.label,
                    "predicted_j": d.predicted_energy_j,
                    "expected_accuracy": d.expected_accuracy,
                    "reason": d.reason,
                }
                for d in decisions
            ],
        }
        return done

    def _profile(
        self, candidate: Candidate, questions: Sequence[Question], n: int, seed: int
    ) -> Profile:
        key = f"route-profile|{candidate.label}|{n}|{seed}|{self.renderer.fingerprint(())}"
        cache = self.context.cache
        if key not in cache:
            asked = {(q.subject, q.question) for q in questions}
            pool = self.context.mmlu().sample(n + len(questions), seed=seed + 7919)
            sample = [q for q in pool if (q.subject, q.question) not in asked][:n]
            engine = self.context.engines(candidate.model)
            runner = build_strategy(parse_strategy(candidate.strategy), self.context, self.renderer)
            profiling = Ledger()
            records = runner.run(engine, sample, profiling, seed=seed)
            tokens = sum(r.input_tokens + r.output_tokens for r in records)
            j_per_token = profiling.energy_j / tokens if tokens else 0.0

            def measured(n_in: float, n_out: float, jpt: float = j_per_token) -> float:
                return jpt * (n_in + n_out)

            cache[key] = Profile.from_records(
                engine.spec.label,
                candidate.strategy,
                records,
                measured,
                category_of=CATEGORIES,
            )
            cache[f"route-profile|{candidate.label}|energy_j"] = profiling.energy_j
        profile: Profile = cache[key]
        return profile


def _profile_summary(profile: Profile) -> dict[str, Any]:
    return {
        "candidate": profile.label,
        "accuracy": profile.accuracy,
        "questions": profile.n,
        "mean_output_tokens": profile.mean_output_tokens,
    }


def _route_options(options: Mapping[str, Any]) -> dict[str, str]:
    """The routing options given (the common ``prompt`` option is the renderer's)."""
    return {k: str(v) for k, v in options.items() if v is not None and k != "prompt"}


def _sampled(options: Mapping[str, Any]) -> bool:
    """Whether any candidate samples (a candidate without a model counts as direct/cot)."""
    parsed = parse_route_options(_route_options(options), default_model="model")
    return any(parse_strategy(c.strategy).sampled for c in parsed.candidates)


def _build(spec: StrategySpec, context: StrategyContext, renderer: Renderer) -> Strategy:
    return Route(spec, context, renderer)


STRATEGIES = (
    StrategyType(
        "route",
        # Checked by pytest_energy.routing.parse_route_options.
        {
            "candidates": Option(str),
            "target_accuracy": Option(str),
            "lambda": Option(str),
            "calibration": Option(str),
        },
        _build,
        sampled=_sampled,
    ),
)
