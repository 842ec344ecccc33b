"""Energy-aware routing: pick (model, strategy) per question from calibration profiles.

Each candidate is profiled on calibration questions: its accuracy per MMLU
subject and category, its mean generated tokens, and an energy predictor
(usually its model's operating curve). For a question of a given subject and
prompt length, :func:`route` either takes the cheapest candidate expected to
reach an accuracy target, or maximises ``accuracy - lam * energy_j``. Pure: the
engine runs the calibration and the chosen candidate.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from pytest_energy.curves import Curve
from pytest_energy.errors import ConfigError, StrategyError
from pytest_energy.metrics import QuestionRecord

# Shrinkage weight: a group's accuracy counts as if the overall accuracy had
# also been seen on this many extra questions of the group. With a few
# calibration questions per subject, raw subject accuracies are mostly noise.
DEFAULT_PRIOR_QUESTIONS = 5.0
_EPS = 1e-12
AccuracySource = Literal["group", "category", "overall"]
EnergyPredictor = Callable[[float, float], float]
# (profile, expected accuracy, its source, predicted joules, candidate index)
_Row = tuple["Profile", float, AccuracySource, float, int]


@dataclass(frozen=True)
class Profile:
    """How one (model, strategy) candidate did on the calibration questions.

    ``accuracy_by_group`` maps MMLU subjects and/or categories to accuracy;
    ``n_by_group`` the number of calibration questions behind each, which
    enables shrinkage toward ``accuracy`` (groups without a count are taken as
    given). ``mean_output_tokens`` counts every token generated for a question
    (all voting paths together), so a curve predicts one shared prefill plus
    all decoding: ``energy(n_in, mean_output_tokens)``. ``energy`` is a
    :class:`~pytest_energy.curves.Curve` or any ``(n_in, n_out) -> joules``.
    """

    model: str
    strategy: str
    accuracy_by_group: Mapping[str, float]
    accuracy: float
    n: int
    mean_output_tokens: float
    energy: Curve | EnergyPredictor = field(hash=False)
    n_by_group: Mapping[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        values = [self.accuracy, *self.accuracy_by_group.values()]
        if not all(0.0 <= a <= 1.0 for a in values):
            raise ConfigError(f"profile {self.label}: accuracies must lie in [0, 1]")
        if self.n < 0 or not self.mean_output_tokens >= 0:
            raise ConfigError(f"profile {self.label}: n and mean_output_tokens must be >= 0")

    @property
    def label(self) -> str:
        return f"{self.model}/{self.strategy}"

    @classmethod
    def from_records(
        cls,
        model: str,
        strategy: str,
        records: Sequence[QuestionRecord],
        energy: Curve | EnergyPredictor,
        *,
        category_of: Mapping[str, str] | None = None,
    ) -> Profile:
        """A profile from calibration records; ``category_of`` adds per-category accuracy."""
        if not records:
            raise ConfigError(f"profile {model}/{strategy} needs at least one calibration question")
        seen: Counter[str] = Counter()
        right: Counter[str] = Counter()
        for record in records:
            groups = [record.subject]
            if category_of is not None and record.subject in category_of:
                groups.append(category_of[record.subject])
            for group in groups:
                seen[group] += 1
                right[group] += record.correct
        return cls(
            model=model,
            strategy=strategy,
            accuracy_by_group={g: right[g] / seen[g] for g in sorted(seen)},
            accuracy=sum(r.correct for r in records) / len(records),
            n=len(records),
            mean_output_tokens=sum(r.output_tokens for r in records) / len(records),
            energy=energy,
            n_by_group={g: seen[g] for g in sorted(seen)},
        )

    def predicted_energy_j(self, n_in: float) -> float:
        """Predicted joules of answering a question with an ``n_in``-token prompt."""
        if isinstance(self.energy, Curve):
            return self.energy.energy_j(n_in, self.mean_output_tokens)
        return self.energy(n_in, self.mean_output_tokens)

    def expected_accuracy(
        self,
        group: str,
        category: str | None = None,
        *,
        prior_questions: float = DEFAULT_PRIOR_QUESTIONS,
    ) -> tuple[float, AccuracySource]:
        """Accuracy expected on ``group``: the group's, else the category's, else overall.

        With a question count ``k`` for the level used, the estimate is
        ``(k * level + prior_questions * overall) / (k + prior_questions)``.
        """
        levels: list[tuple[str | None, AccuracySource]] = [(group, "group"), (category, "category")]
        for name, source in levels:
            if name is not None and name in self.accuracy_by_group:
                raw = self.accuracy_by_group[name]
                k = self.n_by_group.get(name)
                if k is None or k + prior_questions <= 0:
                    return raw, source
                return (k * raw + prior_questions * self.accuracy) / (k + prior_questions), source
        return self.accuracy, "overall"


@dataclass(frozen=True)
class Decision:
    """The candidate chosen for one question, and why.

    ``met_target`` is None in lambda mode. ``reference`` is the candidate with
    the best overall accuracy and ``reference_energy_j`` its predicted energy
    on this question: what always using it would cost.
    """

    model: str
    strategy: str
    group: str
    input_tokens: int
    predicted_energy_j: float
    expected_accuracy: float
    accuracy_source: AccuracySource
    met_target: bool | None
    reason: str
    reference: str
    reference_energy_j: float

    @property
    def chosen(self) -> tuple[str, str]:
        return (self.model, self.strategy)

    @property
    def label(self) -> str:
        return f"{self.model}/{self.strategy}"


def route(
    question_group: str,
    n_in: int,
    profiles: Sequence[Profile],
    *,
    target_accuracy: float | None = None,
    lam: float | None = None,
    category: str | None = None,
    prior_questions: float = DEFAULT_PRIOR_QUESTIONS,
) -> Decision:
    """Choose a candidate for one question of ``question_group`` with an ``n_in``-token prompt.

    Give exactly one criterion. ``target_accuracy``: the least predicted energy
    among candidates expected to reach the target; when none does, the most
    accurate (``met_target=False``). ``lam`` (accuracy per joule): the largest
    ``accuracy - lam * energy_j``. Ties go to lower energy, then candidate order.
    """
    if (target_accuracy is None) == (lam is None):
        raise ValueError("route needs exactly one of target_accuracy and lam")
    if not profiles:
        raise ValueError("route needs at least one candidate profile")
    rows: list[_Row] = []
    for index, profile in enumerate(profiles):
        accuracy, source = profile.expected_accuracy(
            question_group, category, prior_questions=prior_questions
        )
        rows.append((profile, accuracy, source, profile.predicted_energy_j(n_in), index))
    where = f"on {question_group}"
    if lam is not None:
        best, met, reason = _by_lambda(rows, lam, where)
    else:
        best, met, reason = _by_target(rows, cast(float, target_accuracy), where)
    reference = min(rows, key=lambda r: (-r[0].accuracy, r[4]))
    return Decision(
        model=best[0].model,
        strategy=best[0].strategy,
        group=question_group,
        input_tokens=n_in,
        predicted_energy_j=best[3],
        expected_accuracy=best[1],
        accuracy_source=best[2],
        met_target=met,
        reason=reason,
        reference=reference[0].label,
        reference_energy_j=reference[3],
    )


def _by_lambda(rows: list[_Row], lam: float, where: str) -> tuple[_Row, bool | None, str]:
    if not (lam >= 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    best = min(rows, key=lambda r: (-(r[1] - lam * r[3]), r[3], r[4]))
    score = best[1] - lam * best[3]
    reason = (
        f"best accuracy - {lam:g}/J x energy {where}: "
        f"{best[1]:.3f} - {lam:g} x {best[3]:.3g} J = {score:.3f}"
    )
    return best, None, reason


def _by_target(rows: list[_Row], target: float, where: str) -> tuple[_Row, bool | None, str]:
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target_accuracy must lie in [0, 1], got {target}")
    meeting = [r for r in rows if r[1] >= target - _EPS]
    if meeting:
        best = min(meeting, key=lambda r: (r[3], r[4]))
        reason = (
            f"cheapest of {len(meeting)}/{len(rows)} candidates expected to reach "
            f"{target:.3f} {where} ({best[1]:.3f} from {best[2]}, {best[3]:.3g} J)"
        )
        return best, True, reason
    best = min(rows, key=lambda r: (-r[1], r[3], r[4]))
    reason = (
        f"no candidate expected to reach {target:.3f} {where}; "
        f"most accurate: {best[1]:.3f} from {best[2]}, {best[3]:.3g} J"
    )
    return best, False, reason


@dataclass(frozen=True)
class RouteSummary:
    """What routing achieved over an evaluation, for the report.

    Energies are predicted unless ``measured_energy_j`` was given. ``savings_j``
    compares the routed choices with always using ``reference`` (the most
    accurate candidate), both predicted on the same questions.
    """

    questions: int
    correct: int
    accuracy: float
    predicted_energy_j: float
    reference: str
    reference_energy_j: float
    savings_j: float
    savings_fraction: float | None
    share: Mapping[str, float]
    met_target_share: float | None
    measured_energy_j: float | None = None


def summarise(
    decisions: Sequence[Decision],
    outcomes: Sequence[bool],
    *,
    measured_energy_j: float | None = None,
) -> RouteSummary:
    """Summarise routed questions; ``outcomes[i]`` says whether question ``i`` was right."""
    if not decisions:
        raise ValueError("no routing decisions to summarise")
    if len(outcomes) != len(decisions):
        raise ValueError(f"{len(decisions)} decisions but {len(outcomes)} outcomes")
    references = {d.reference for d in decisions}
    if len(references) != 1:
        raise ValueError(f"decisions come from different candidate sets: {sorted(references)}")
    predicted = sum(d.predicted_energy_j for d in decisions)
    reference_j = sum(d.reference_energy_j for d in decisions)
    counts = Counter(d.label for d in decisions)
    targeted = [d.met_target for d in decisions if d.met_target is not None]
    return RouteSummary(
        questions=len(decisions),
        correct=sum(bool(o) for o in outcomes),
        accuracy=sum(bool(o) for o in outcomes) / len(decisions),
        predicted_energy_j=predicted,
        reference=references.pop(),
        reference_energy_j=reference_j,
        savings_j=reference_j - predicted,
        savings_fraction=(reference_j - predicted) / reference_j if reference_j > 0 else None,
        share={label: counts[label] / len(decisions) for label in sorted(counts)},
        met_target_share=sum(targeted) / len(targeted) if targeted else None,
        measured_energy_j=measured_energy_j,
    )


@dataclass(frozen=True)
class Candidate:
    """A (model, strategy) pair the router may choose."""

    model: str
    strategy: str

    @property
    def label(self) -> str:
        return f"{self.model}/{self.strategy}"


@dataclass(frozen=True)
class RouteOptions:
    """Parsed ``route:`` options.

    With neither ``target_accuracy`` nor ``lam`` the router aims at the best
    overall accuracy among the candidates (see :meth:`target_for`).
    ``calibration_n`` is how many calibration questions to profile each
    candidate on (None: the engine's default).
    """

    candidates: tuple[Candidate, ...]
    target_accuracy: float | None = None
    lam: float | None = None
    calibration_n: int | None = None

    def target_for(self, profiles: Sequence[Profile]) -> float | None:
        """The ``target_accuracy`` to pass to :func:`route` (None in lambda mode)."""
        if self.lam is not None:
            return None
        if self.target_accuracy is not None:
            return self.target_accuracy
        return max((p.accuracy for p in profiles), default=0.0)


_ROUTE_KEYS = ("candidates", "target_accuracy", "lambda", "calibration")


def parse_route_options(
    options: Mapping[str, str], *, default_model: str | None = None
) -> RouteOptions:
    """Parse ``candidates=m/direct+m/cot``, ``target_accuracy=0.3`` or ``lambda=0.05``.

    A candidate is ``MODEL/STRATEGY`` split at the last ``/`` (so a Hugging
    Face id works as the model). Without ``candidates``, ``default_model``
    gives ``default_model/direct`` and ``default_model/cot``.
    """
    unknown = sorted(set(options) - set(_ROUTE_KEYS))
    if unknown:
        raise StrategyError(f"route: unknown option {unknown[0]!r}; use {', '.join(_ROUTE_KEYS)}")
    raw = options.get("candidates")
    if raw is None:
        if default_model is None:
            raise StrategyError(
                "route needs candidates, e.g. route:candidates=smollm2-135m/direct+smollm2-135m/cot"
            )
        raw = f"{default_model}/direct+{default_model}/cot"
    candidates: list[Candidate] = []
    for piece in raw.split("+"):
        model, _, strategy = piece.strip().rpartition("/")
        if not model or not strategy:
            raise StrategyError(f"route: candidate {piece.strip()!r} must be MODEL/STRATEGY")
        if strategy.split(":", 1)[0] == "route":
            raise StrategyError(f"route: candidate {piece.strip()!r} cannot itself be route")
        if Candidate(model, strategy) in candidates:
            raise StrategyError(f"route: candidate {piece.strip()!r} is listed twice")
        candidates.append(Candidate(model, strategy))
    if "target_accuracy" in options and "lambda" in options:
        raise StrategyError("route: give target_accuracy or lambda, not both")
    target = _number(options, "target_accuracy", "a fraction in [0, 1], e.g. 0.3")
    if target is not None and not 0.0 <= target <= 1.0:
        raise StrategyError(f"route: target_accuracy={target:g} must lie in [0, 1], e.g. 0.3")
    lam = _number(options, "lambda", "accuracy per joule >= 0, e.g. 0.05")
    if lam is not None and lam < 0:
        raise StrategyError(f"route: lambda={lam:g} must be >= 0, e.g. 0.05")
    calibration = _number(options, "calibration", "a whole number of questions, e.g. 40")
    if calibration is not None and (calibration < 1 or calibration != int(calibration)):
        raise StrategyError(f"route: calibration={calibration:g} must be a whole number >= 1")
    return RouteOptions(
        tuple(candidates), target, lam, None if calibration is None else int(calibration)
    )


def _number(options: Mapping[str, str], key: str, fix: str) -> float | None:
    if key not in options:
        return None
    try:
        value = float(options[key])
    except ValueError:
        raise StrategyError(f"route: {key}={options[key]!r} is not a number; give {fix}") from None
    if not math.isfinite(value):
        raise StrategyError(f"route: {key}={options[key]!r} is not finite; give {fix}")
    return value
