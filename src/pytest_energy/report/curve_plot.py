"""Operating-curve figures: J/token along each axis, and measured points against the fit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_energy.curves import Curve, SweepPoint


@dataclass(frozen=True)
class CurvePoint:
    """The curve's prediction at one (input, output) length, for tables and plots."""

    input_tokens: int
    output_tokens: int
    energy_j: float
    j_per_token: float
    j_per_output_token: float | None


@dataclass(frozen=True)
class DerivedCurves:
    """J/token against input length (at ``at_n_out``) and output length (at ``at_n_in``)."""

    at_n_out: int
    at_n_in: int
    by_input: tuple[CurvePoint, ...]
    by_output: tuple[CurvePoint, ...]


def derived_curves(
    curve: Curve,
    n_in_values: Sequence[int],
    n_out_values: Sequence[int],
    *,
    at_n_out: int | None = None,
    at_n_in: int | None = None,
) -> DerivedCurves:
    """Predictions along each axis; the fixed length defaults to the middle value of the other."""
    if not n_in_values or not n_out_values:
        raise ValueError("derived_curves needs input and output lengths")
    fixed_out = sorted(n_out_values)[len(n_out_values) // 2] if at_n_out is None else at_n_out
    fixed_in = sorted(n_in_values)[len(n_in_values) // 2] if at_n_in is None else at_n_in

    def point(n_in: int, n_out: int) -> CurvePoint:
        energy = curve.energy_j(n_in, n_out)
        return CurvePoint(
            n_in, n_out, energy, curve.j_per_token(n_in, n_out), energy / n_out if n_out else None
        )

    return DerivedCurves(
        fixed_out,
        fixed_in,
        tuple(point(n, fixed_out) for n in sorted(n_in_values)),
        tuple(point(fixed_in, n) for n in sorted(n_out_values)),
    )


def plot_fit(curve: Curve, points: Sequence[SweepPoint], path: Path) -> Path | None:
    """Draw measured sweep points against the fit into ``path`` (PNG, SVG, PDF).

    Returns the path, or None when matplotlib (the ``plots`` extra) is missing.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    ins = sorted({p.input_tokens for p in points})
    outs = sorted({p.output_tokens for p in points})
    xs_out = list(range(0, max(outs, default=1) + 1, max(1, max(outs, default=1) // 50)))
    xs_in = list(range(max(1, min(ins, default=1)), max(ins, default=1) + 1))
    for n_in in ins:
        (line,) = left.plot(xs_out, [curve.energy_j(n_in, x) for x in xs_out], label=f"in={n_in}")
        got = [p for p in points if p.input_tokens == n_in]
        left.scatter(
            [p.output_tokens for p in got], [p.energy_j for p in got], color=line.get_color()
        )
    for n_out in outs:
        (line,) = right.plot(
            xs_in, [curve.j_per_token(x, n_out) for x in xs_in], label=f"out={n_out}"
        )
        got = [p for p in points if p.output_tokens == n_out]
        per_token = [p.energy_j / (p.input_tokens + p.output_tokens) for p in got]
        right.scatter([p.input_tokens for p in got], per_token, color=line.get_color())
    left.set(xlabel="output tokens", ylabel="J per generation (dots: measured)")
    right.set(xlabel="input tokens", ylabel="J per token (dots: measured)", xscale="log")
    left.legend(fontsize="small")
    right.legend(fontsize="small")
    r2 = "n/a" if curve.r2 is None else f"{curve.r2:.4f}"
    kind = "estimated" if curve.estimated else "measured"
    fig.suptitle(f"{curve.model}: operating curve (meter={curve.meter}, {kind}, R^2={r2})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
