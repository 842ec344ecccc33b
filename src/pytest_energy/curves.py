"""Operating curves: energy as a function of input and output token counts.

Energy of one generation (batch 1) is modelled as

    E(n_in, n_out) = c0 + c1 * n_in + c2 * n_out + c3 * n_in * n_out

per model and hardware fingerprint: ``c0 + c1 * n_in`` is the prefill (a fixed
cost plus a cost per prompt token), ``c2 * n_out`` the decode cost per generated
token, and ``c3 * n_in * n_out`` the extra each generated token pays for the
context it attends to. The coefficients are fitted by least squares on a sweep
over a grid of (n_in, n_out); the fit quality (R^2, residuals) travels with the
curve. The curve drives the ``curve`` meter, controlled reasoning
(``cot:budget_j=``) and the energy-aware router. Pure Python: no numpy.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from pytest_energy.errors import EnergyError
from pytest_energy.files import dump_json, read_text, write_text_atomic

SCHEMA_VERSION = 1
GridSize = Literal["small", "medium", "large"]
# Sized for SmolLM2-135M on a 2-core CPU (~12 generated tokens/s at batch 1):
# the small grid generates 195 tokens in all, well under a minute per repeat.
_GRIDS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "small": ((32, 128, 384), (1, 16, 48)),
    "medium": ((32, 128, 256, 512, 1024), (1, 16, 64, 128)),
    "large": ((64, 256, 1024, 2048), (1, 64, 256, 512)),
}
# A float evaluation of the curve may land a few ulps above a budget that it
# hits exactly on paper (0.1 * 3 > 0.3); such a budget still counts as met.
_BUDGET_REL_EPS = 1e-9
_COEFFICIENTS = ("c0_j", "c1_j_per_in", "c2_j_per_out", "c3_j_per_in_out")
_OPTIONAL = ("r2", "rmse_j", "max_abs_residual_j")
_KINDS: dict[str, type] = {"model": str, "meter": str, "estimated": bool, "n_points": int}


class CurveError(EnergyError):
    """A sweep that cannot be fitted, or a curve file that is missing or corrupt."""


@dataclass(frozen=True)
class SweepPoint:
    """One measured generation of the calibration sweep (batch 1, one run's joules)."""

    input_tokens: int
    output_tokens: int
    energy_j: float
    duration_s: float = 0.0


@dataclass(frozen=True)
class Curve:
    """A fitted operating curve of one model on one machine.

    ``meter`` and ``estimated`` describe the meter that measured the sweep;
    ``r2``, ``rmse_j`` and ``max_abs_residual_j`` the fit on ``n_points`` points
    (None for a curve written by hand).
    """

    c0_j: float
    c1_j_per_in: float
    c2_j_per_out: float
    c3_j_per_in_out: float
    model: str = ""
    fingerprint: Mapping[str, str] = field(default_factory=dict, hash=False)
    meter: str = ""
    estimated: bool = True
    r2: float | None = None
    rmse_j: float | None = None
    max_abs_residual_j: float | None = None
    n_points: int = 0

    def __post_init__(self) -> None:
        for name in _COEFFICIENTS:
            if not math.isfinite(getattr(self, name)):
                raise CurveError(f"curve coefficient {name} is not finite; refit the curve")
        object.__setattr__(self, "fingerprint", dict(sorted(self.fingerprint.items())))

    def energy_j(self, n_in: float, n_out: float) -> float:
        """Predicted joules of one generation: ``n_in`` prompt and ``n_out`` generated tokens."""
        return self.prefill_j(n_in) + self.decode_j(n_in, n_out)

    def prefill_j(self, n_in: float) -> float:
        """Predicted joules of reading an ``n_in``-token prompt."""
        return self.c0_j + self.c1_j_per_in * n_in

    def decode_j(self, n_in: float, n_out: float) -> float:
        """Predicted joules of generating ``n_out`` tokens after an ``n_in``-token context."""
        return (self.c2_j_per_out + self.c3_j_per_in_out * n_in) * n_out

    def j_per_token(self, n_in: float, n_out: float) -> float:
        """Predicted joules per token, input and output together."""
        if n_in + n_out <= 0:
            raise ValueError("j_per_token needs at least one token")
        return self.energy_j(n_in, n_out) / (n_in + n_out)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["fingerprint"] = dict(self.fingerprint)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Curve:
        """Inverse of :meth:`to_dict`; a missing or mistyped key raises :class:`CurveError`."""
        values: dict[str, Any] = {f.name: data.get(f.name) for f in fields(cls)}
        for name, value in values.items():
            if name in _OPTIONAL and value is None:
                continue
            if name == "fingerprint":
                ok = isinstance(value, Mapping) and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()
                )
            else:
                kind = _KINDS.get(name, float)
                ok = isinstance(value, (int, float) if kind is float else kind) and (
                    kind is bool or not isinstance(value, bool)
                )
            if not ok:
                raise CurveError(f"curve key {name!r} has a missing or wrong value {value!r}")
        return cls(**values)


def fit_curve(
    points: Sequence[SweepPoint],
    *,
    model: str,
    fingerprint: Mapping[str, str],
    meter: str,
    estimated: bool,
) -> Curve:
    """Fit the four coefficients to sweep points by ordinary least squares.

    Features are scaled to a common magnitude and solved by Householder QR, so
    large token counts do not ruin the conditioning. Raises :class:`CurveError`
    when the points cannot determine the coefficients (fewer than 4 distinct
    points, one input or one output length only, or points on a line).
    """
    for p in points:
        if p.input_tokens < 0 or p.output_tokens < 0 or not math.isfinite(p.energy_j):
            raise CurveError(f"invalid sweep point {p}; token counts >= 0 and finite joules")
    fix = "sweep a grid such as 'in=32,128,384;out=1,16,48'"
    distinct = {(p.input_tokens, p.output_tokens) for p in points}
    if len(distinct) < 4:
        raise CurveError(f"curve fit needs 4 distinct sweep points, got {len(distinct)}; {fix}")
    for attr, label in (("output_tokens", "output"), ("input_tokens", "input")):
        values = {getattr(p, attr) for p in points}
        if len(values) < 2:
            raise CurveError(f"every sweep point has {label} length {values.pop()}; {fix}")
    rows = [_features(p.input_tokens, p.output_tokens) for p in points]
    scale = [max(abs(row[j]) for row in rows) or 1.0 for j in range(4)]
    scaled = [[row[j] / scale[j] for j in range(4)] for row in rows]
    solution = _least_squares(scaled, [p.energy_j for p in points])
    if solution is None:
        raise CurveError(f"sweep points do not determine the 4 curve coefficients; {fix}")
    c0, c1, c2, c3 = (solution[j] / scale[j] for j in range(4))
    fitted = Curve(c0, c1, c2, c3, model, dict(fingerprint), meter, estimated)
    residuals = [p.energy_j - fitted.energy_j(p.input_tokens, p.output_tokens) for p in points]
    mean = sum(p.energy_j for p in points) / len(points)
    ss_tot = sum((p.energy_j - mean) ** 2 for p in points)
    ss_res = sum(r * r for r in residuals)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res <= 1e-24 else 0.0)
    rmse_j, worst_j = math.sqrt(ss_res / len(points)), max(abs(r) for r in residuals)
    return replace(fitted, r2=r2, rmse_j=rmse_j, max_abs_residual_j=worst_j, n_points=len(points))


def _features(n_in: float, n_out: float) -> list[float]:
    return [1.0, float(n_in), float(n_out), float(n_in) * float(n_out)]


def _least_squares(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Solve min |a x - b| by Householder QR; None when a is (numerically) rank deficient."""
    m, n = len(a), len(a[0])
    a = [row[:] for row in a]
    b = b[:]
    for k in range(n):
        norm = math.sqrt(sum(a[i][k] ** 2 for i in range(k, m)))
        if norm == 0.0:
            return None
        alpha = -norm if a[k][k] >= 0 else norm
        v = [0.0] * k + [a[i][k] for i in range(k, m)]
        v[k] -= alpha
        vv = sum(v[i] ** 2 for i in range(k, m))
        for j in range(k, n):
            f = 2.0 * sum(v[i] * a[i][j] for i in range(k, m)) / vv
            for i in range(k, m):
                a[i][j] -= f * v[i]
        f = 2.0 * sum(v[i] * b[i] for i in range(k, m)) / vv
        for i in range(k, m):
            b[i] -= f * v[i]
    diagonal = [abs(a[k][k]) for k in range(n)]
    if min(diagonal) <= 1e-9 * max(diagonal):
        return None
    x = [0.0] * n
    for k in range(n - 1, -1, -1):
        x[k] = (b[k] - sum(a[k][j] * x[j] for j in range(k + 1, n))) / a[k][k]
    return x


def default_grid(size: GridSize = "small") -> list[tuple[int, int]]:
    """The calibration grid as (input_tokens, output_tokens) pairs.

    ``small`` (9 points, 195 generated tokens) takes well under a minute per
    repeat for SmolLM2-135M on a 2-core CPU; ``medium`` is for a faster CPU or a
    GPU; ``large`` reaches the long contexts where a GPU's curve bends.
    """
    if size not in _GRIDS:
        raise CurveError(f"unknown grid size {size!r}; use one of {', '.join(_GRIDS)}")
    ins, outs = _GRIDS[size]
    return [(i, o) for i in ins for o in outs]


def grid_from_spec(spec: str) -> list[tuple[int, int]]:
    """Parse ``"in=32,128,512;out=1,16,64"`` into the product grid of (input, output)."""
    fix = "write it like 'in=32,128,512;out=1,16,64'"
    values: dict[str, list[int]] = {}
    for part in spec.split(";"):
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("in", "out") or key in values:
            raise CurveError(f"grid spec {spec!r}: bad part {part.strip()!r}; {fix}")
        try:
            numbers = sorted({int(x) for x in raw.split(",") if x.strip()})
        except ValueError:
            raise CurveError(f"grid spec {spec!r}: {key}= needs whole numbers; {fix}") from None
        if len(numbers) < 2 or numbers[0] < 1:
            raise CurveError(
                f"grid spec {spec!r}: {key}= needs at least two distinct counts >= 1; {fix}"
            )
        values[key] = numbers
    if set(values) != {"in", "out"}:
        raise CurveError(f"grid spec {spec!r} needs both in= and out=; {fix}")
    return [(i, o) for i in values["in"] for o in values["out"]]


def forced_answer_energy_j(
    curve: Curve, n_in: int, reasoning: int, reserve: int, *, recompute: bool = False
) -> float:
    """Predicted joules of one question: ``reasoning`` tokens after an ``n_in``-token
    prompt, then a forced answer of ``reserve`` tokens (its cue and one letter).

    Fed through the reasoning's KV cache, the answer is ``reserve`` more decode
    steps. With ``recompute`` it is a request of its own (a server that may not
    reuse the context): the prompt, the reasoning and the cue are its input, one
    letter its output; without reasoning it is the only request.
    """
    if not recompute or reserve == 0:
        return curve.energy_j(n_in, reasoning + reserve)
    answer = curve.energy_j(n_in + reasoning + reserve - 1, 1)
    return answer + curve.energy_j(n_in, reasoning) if reasoning > 0 else answer


def max_tokens_for_budget(
    curve: Curve, n_in: int, budget_j: float, *, cap: int, reserve: int = 0, recompute: bool = False
) -> int:
    """The most reasoning tokens that keep one question within ``budget_j`` joules.

    Returns the largest ``n`` in ``[0, cap]`` whose predicted energy with the
    forced answer (:func:`forced_answer_energy_j`: ``reserve`` tokens set aside
    for it, computed again with ``recompute``) is at most ``budget_j``, so
    reasoning plus answer stays within the budget. 0 means no budget is left for
    reasoning (the prompt and the answer alone reach it): answer immediately,
    which may still exceed the budget. When each extra token costs nothing or
    less the answer is ``cap`` if the budget holds there.
    """
    if n_in < 0 or cap < 0 or reserve < 0:
        raise ValueError("n_in, cap and reserve must be >= 0")
    if math.isnan(budget_j):
        raise CurveError("energy budget is NaN; give budget_j as a number of joules")
    limit = budget_j + abs(budget_j) * _BUDGET_REL_EPS

    def fits(n: int) -> bool:
        return forced_answer_energy_j(curve, n_in, n, reserve, recompute=recompute) <= limit

    # The prediction is linear in n from its first reasoning token on (a recomputed
    # answer then needs a request of its own): each token is one decode step, and
    # one more input token of a recomputed answer.
    slope = curve.c2_j_per_out + curve.c3_j_per_in_out * n_in
    first = 0
    if recompute and reserve:
        slope += curve.c1_j_per_in + curve.c3_j_per_in_out
        first = min(1, cap)
    if slope <= 0 or math.isinf(budget_j):
        return cap if fits(cap) else 0
    if not fits(first):
        return 0
    start = forced_answer_energy_j(curve, n_in, first, reserve, recompute=recompute)
    guess = first + (limit - start) / slope
    n = cap if guess >= cap else max(0, math.floor(guess))
    # The closed form can be one off after rounding; settle on the exact boundary.
    while n < cap and fits(n + 1):
        n += 1
    while n > 0 and not fits(n):
        n -= 1
    return n


def fingerprint_digest(fingerprint: Mapping[str, str]) -> str:
    """A short stable digest of a hardware fingerprint (sorted keys)."""
    text = json.dumps(dict(fingerprint), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _key(model: str, fingerprint: Mapping[str, str]) -> str:
    return f"{model}@{fingerprint_digest(fingerprint)}"


class CurveStore:
    """Curves in one JSON file, keyed by model and hardware fingerprint digest."""

    def __init__(self, curves: Iterable[Curve] = ()) -> None:
        self._curves: dict[str, Curve] = {}
        for curve in curves:
            self.put(curve)

    @classmethod
    def load(cls, path: Path, *, missing_ok: bool = False) -> CurveStore:
        """Read a curve file; a corrupt file raises :class:`CurveError` naming it."""
        create = f"create it with 'pytest-energy calibrate --model MODEL -o {path}'"
        text = read_text(
            path,
            CurveError,
            what="curve file",
            fix="check its permissions, or " + create,
            if_missing=None if missing_ok else create,
        )
        if text is None:
            return cls()
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("curves"), dict):
                raise CurveError("no 'curves' object")
            if data.get("schema_version") != SCHEMA_VERSION:
                raise CurveError(f"schema_version {data.get('schema_version')!r} is not 1")
            curves = [Curve.from_dict(value) for value in data["curves"].values()]
        except (ValueError, CurveError, AttributeError, TypeError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CurveError(
                f"curve file {path} is corrupt ({detail}); fix it or run 'pytest-energy calibrate'"
            ) from None
        return cls(curves)

    def get(self, model: str, fingerprint: Mapping[str, str]) -> Curve | None:
        return self._curves.get(_key(model, fingerprint))

    def find(self, model: str, fingerprint: Mapping[str, str] | None = None) -> Curve:
        """``model``'s curve: matching ``fingerprint`` exactly, or else its only one."""
        fix = f"run 'pytest-energy calibrate --model {model} -o curve.json' on this machine"
        found = self.curves(model)
        if fingerprint is not None:
            exact = self.get(model, fingerprint)
            found = () if exact is None else (exact,)
        if not found:
            known = ", ".join(self.models()) or "none"
            raise CurveError(f"no operating curve for {model!r} here (file has: {known}); {fix}")
        if len(found) > 1:
            raise CurveError(f"{len(found)} curves for {model!r} (several machines); {fix}")
        return found[0]

    def put(self, curve: Curve) -> None:
        """Add a curve, replacing one of the same model and fingerprint."""
        self._curves[_key(curve.model, curve.fingerprint)] = curve

    def curves(self, model: str | None = None) -> tuple[Curve, ...]:
        """All curves (of one model when given), in key order."""
        return tuple(
            c for _, c in sorted(self._curves.items()) if model is None or c.model == model
        )

    def models(self) -> tuple[str, ...]:
        return tuple(sorted({c.model for c in self._curves.values()}))

    def __len__(self) -> int:
        return len(self._curves)

    def write(self, path: Path) -> None:
        """Write atomically (temporary file + rename), sorted keys, indent 2."""
        data = {
            "schema_version": SCHEMA_VERSION,
            "curves": {key: curve.to_dict() for key, curve in self._curves.items()},
        }
        write_text_atomic(path, dump_json(data))
