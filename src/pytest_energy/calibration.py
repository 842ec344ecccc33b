"""Calibration sweeps: measure E(n_in, n_out) on a grid and fit the operating curve.

Each grid point is one batch-1 generation of exactly ``n_out`` tokens after a
prompt of ``n_in`` tokens (made from real MMLU text), measured with the
session's meter. A point whose window is too short for the meter is repeated
inside one window and divided, rather than reported as 0 J.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pytest_energy.backends import Backend
from pytest_energy.curves import Curve, SweepPoint, fit_curve
from pytest_energy.engine_results import Ledger
from pytest_energy.errors import MeasurementError
from pytest_energy.mmlu import Question


def filler_text(questions: Sequence[Question]) -> str:
    """Real MMLU text to cut prompts from (so attention sees natural tokens)."""
    return "\n\n".join(q.question + "\n" + "\n".join(q.choices) for q in questions)


def prompt_of_length(engine: Backend, text: str, n_tokens: int) -> str:
    """A prompt of ``n_tokens`` tokens cut from ``text`` (repeated when too short)."""
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    while len(ids) < n_tokens:
        ids = ids + ids
    return str(engine.tokenizer.decode(ids[:n_tokens]))


def sweep(
    engine: Backend,
    grid: Sequence[tuple[int, int]],
    text: str,
    *,
    repeats: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[SweepPoint]:
    points: list[SweepPoint] = []
    for n_in, n_out in grid:
        prompt = prompt_of_length(engine, text, n_in)
        for _ in range(repeats):
            points.append(_measure(engine, prompt, n_out))
            if progress is not None:
                point = points[-1]
                progress(
                    f"n_in={point.input_tokens} n_out={point.output_tokens} "
                    f"energy={point.energy_j:.4g} J"
                )
    return points


def _measure(engine: Backend, prompt: str, n_out: int) -> SweepPoint:
    runs = 1
    while True:
        ledger = Ledger()
        start = time.perf_counter()
        try:
            for _ in range(runs):
                generated = engine.generate(
                    [prompt], ledger, max_new_tokens=n_out, stop_at_eos=False
                )
        except MeasurementError:
            if runs >= 64:
                raise
            runs *= 4  # too short for the counter: measure several runs together
            continue
        duration_s = time.perf_counter() - start
        sample = generated[0].samples[0]
        return SweepPoint(
            input_tokens=generated[0].input_tokens,
            output_tokens=sample.output_tokens,
            energy_j=ledger.energy_j / runs,
            duration_s=duration_s / runs,
        )


def calibrate(
    engine: Backend,
    grid: Sequence[tuple[int, int]],
    text: str,
    *,
    repeats: int = 1,
    progress: Callable[[str], None] | None = None,
) -> tuple[Curve, list[SweepPoint]]:
    """Sweep ``grid`` and fit the curve, keyed by the engine's model and hardware."""
    points = sweep(engine, grid, text, repeats=repeats, progress=progress)
    meter = engine.meter
    curve = fit_curve(
        points,
        model=engine.spec.label,
        fingerprint={**meter.fingerprint(), **engine.fingerprint()},
        meter=meter.name,
        estimated=meter.estimated,
    )
    return curve, points
