"""Calibration sweeps: measure E(n_in, n_out) on a grid and fit the operating curve.

Each grid point is one batch-1 generation of exactly ``n_out`` tokens after a
prompt of ``n_in`` tokens (made from real MMLU text), measured with the
session's meter. A point whose window is too short for the meter is repeated
inside one window and divided, rather than reported as 0 J.

Every generation gets a prompt of its own (:class:`Prompts`): a server that
reuses the prefix it computed for an earlier request (vLLM's prefix cache,
llama.cpp's slot) would otherwise compute the prompt once per length, and the
curve would price input tokens at almost nothing.
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


class Prompts:
    """Prompts of a given token length cut from ``text``, each starting one token
    further on (the text wraps around), so no two share a prefix."""

    def __init__(self, engine: Backend, text: str) -> None:
        self._tokenizer = engine.tokenizer
        self._ids: list[int] = list(engine.tokenizer(text, add_special_tokens=False)["input_ids"])
        if not self._ids:
            raise ValueError("no text to cut calibration prompts from")
        self._taken = 0

    def take(self, n_tokens: int) -> str:
        start = self._taken % len(self._ids)
        self._taken += 1
        ids = self._ids[start:] + self._ids[:start]
        while len(ids) < n_tokens:
            ids = ids + ids
        return str(self._tokenizer.decode(ids[:n_tokens]))


def sweep(
    engine: Backend,
    grid: Sequence[tuple[int, int]],
    text: str,
    *,
    repeats: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[SweepPoint]:
    prompts = Prompts(engine, text)
    points: list[SweepPoint] = []
    for n_in, n_out in grid:
        for _ in range(repeats):
            points.append(_measure(engine, prompts, n_in, n_out))
            if progress is not None:
                point = points[-1]
                progress(
                    f"n_in={point.input_tokens} n_out={point.output_tokens} "
                    f"energy={point.energy_j:.4g} J"
                )
    return points


def _measure(engine: Backend, prompts: Prompts, n_in: int, n_out: int) -> SweepPoint:
    runs = 1
    while True:
        ledger = Ledger()
        start = time.perf_counter()
        try:
            generated = [
                engine.generate(
                    [prompts.take(n_in)], ledger, max_new_tokens=n_out, stop_at_eos=False
                )[0]
                for _ in range(runs)
            ]
        except MeasurementError:
            if runs >= 64:
                raise
            runs *= 4  # too short for the counter: measure several runs together
            continue
        duration_s = time.perf_counter() - start
        # Cut at a token boundary, a prompt may re-tokenise one token longer or shorter.
        return SweepPoint(
            input_tokens=round(sum(g.input_tokens for g in generated) / runs),
            output_tokens=round(sum(g.samples[0].output_tokens for g in generated) / runs),
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
