"""Controlled reasoning, routing and calibration on the real model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from factories import run_calibrate
from pytest_energy.curves import Curve, CurveStore

RunEnergy = Callable[..., pytest.RunResult]

BUDGETED = """
def test_budgeted(energy_eval):
    result = energy_eval("smollm2-135m", "cot:budget_j=12,max_tokens=16", n=3)
    assert result.invalid == 0  # out of budget the answer is forced, never lost
"""

ROUTED = """
def test_routed(energy_eval):
    strategy = (
        "route:candidates=smollm2-135m/direct+smollm2-135m/cot:max_tokens=8,calibration=3"
    )
    result = energy_eval("smollm2-135m", strategy, n=3)
    assert result.questions == 3
"""


def results(pytester: pytest.Pytester) -> list[dict]:
    return json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))["results"]


def test_budget_turns_into_per_question_token_allowances_from_the_curve(
    pytester: pytest.Pytester, run_energy: RunEnergy
) -> None:
    # A synthetic curve: 1 J per output token, nothing else, so a 12 J budget
    # leaves 12 tokens minus the forced answer's cue and letter for reasoning.
    store = CurveStore()
    store.put(Curve(0.0, 0.0, 1.0, 0.0, model="smollm2-135m"))
    store.write(pytester.path / "curve.json")
    pytester.makeini("[pytest]\nenergy_curve = curve.json\n")
    pytester.makepyfile(test_budget=BUDGETED)

    result = run_energy(
        "--energy-meter=cpu-estimate", "--energy-repeats=1", "--energy-json=out.json"
    )

    result.assert_outcomes(passed=1)
    budget = results(pytester)[0]["details"]["budget"]
    reserve = 12 - budget["questions"][0]["allowed_tokens"]
    assert 2 <= reserve <= 8  # "\nThe answer is (" and one letter
    for question in budget["questions"]:
        assert question["allowed_tokens"] == 12 - reserve
        assert question["output_tokens"] <= 12
        assert question["predicted_j"] <= 12
    assert budget["budget_j"] == 12


def test_route_profiles_candidates_and_reports_its_decisions(
    pytester: pytest.Pytester, run_energy: RunEnergy
) -> None:
    pytester.makepyfile(test_route=ROUTED)

    result = run_energy(
        "--energy-meter=cpu-estimate", "--energy-repeats=1", "--energy-json=out.json"
    )

    result.assert_outcomes(passed=1)
    route = results(pytester)[0]["details"]["route"]
    assert [p["candidate"] for p in route["profiles"]] == [
        "smollm2-135m/direct",
        "smollm2-135m/cot:max_tokens=8",
    ]
    assert all(p["questions"] == 3 for p in route["profiles"])
    assert len(route["decisions"]) == 3
    assert sum(route["summary"]["share"].values()) == pytest.approx(1.0)
    assert route["profiling_j"] > 0  # reported, not billed to the evaluation


def test_calibrate_fits_and_stores_an_operating_curve(
    tmp_path: Path, mmlu_source: Path, model_stack: None
) -> None:
    out = tmp_path / "curve.json"
    printed = run_calibrate("smollm2-135m", "in=16,48,96;out=1,6", mmlu_source, out)
    assert "R^2 = " in printed
    curve = CurveStore.load(out).find("smollm2-135m")
    assert curve.n_points == 6
    assert curve.r2 is not None
    assert curve.energy_j(48, 6) > curve.energy_j(48, 1) > 0
