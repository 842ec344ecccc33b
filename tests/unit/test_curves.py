from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest

from pytest_energy.curves import (
    Curve,
    CurveError,
    CurveStore,
    SweepPoint,
    default_grid,
    fit_curve,
    forced_answer_energy_j,
    grid_from_spec,
    max_tokens_for_budget,
)
from pytest_energy.errors import EnergyError
from pytest_energy.report.curve_plot import derived_curves, plot_fit

FP = {"cpu": "Test CPU", "torch": "2.4"}
TRUE = Curve(0.5, 0.002, 0.08, 0.0001, model="m", fingerprint=FP, meter="rapl", estimated=False)


def sweep(curve: Curve, grid: list[tuple[int, int]], noise_j: float = 0.0) -> list[SweepPoint]:
    rng = random.Random(0)
    return [
        SweepPoint(
            i,
            o,
            curve.energy_j(i, o) + rng.gauss(0.0, noise_j) if noise_j else curve.energy_j(i, o),
        )
        for i, o in grid
    ]


def fit(points: list[SweepPoint]) -> Curve:
    return fit_curve(points, model="m", fingerprint=FP, meter="rapl", estimated=False)


def coefficients(curve: Curve) -> tuple[float, float, float, float]:
    return (curve.c0_j, curve.c1_j_per_in, curve.c2_j_per_out, curve.c3_j_per_in_out)


def test_noiseless_sweep_recovers_the_coefficients_exactly() -> None:
    curve = fit(sweep(TRUE, default_grid("small")))
    assert coefficients(curve) == pytest.approx(coefficients(TRUE), rel=1e-9)
    assert curve.r2 == pytest.approx(1.0, abs=1e-12)
    assert curve.rmse_j == pytest.approx(0.0, abs=1e-9)
    assert curve.max_abs_residual_j == pytest.approx(0.0, abs=1e-9)
    assert curve.n_points == 9
    assert (curve.model, curve.meter, curve.estimated) == ("m", "rapl", False)
    assert dict(curve.fingerprint) == FP


def test_long_contexts_do_not_ruin_the_conditioning() -> None:
    true = Curve(3.0, 1e-4, 0.9, 2e-6)
    curve = fit(sweep(true, default_grid("large")))
    assert coefficients(curve) == pytest.approx(coefficients(true), rel=1e-7)


def test_noisy_sweep_fits_closely_and_reports_the_residuals() -> None:
    grid = [(i, o) for i in (32, 64, 128, 256, 384) for o in (1, 8, 16, 32, 48)]
    points = sweep(TRUE, grid, noise_j=0.01)
    curve = fit(points)
    assert curve.c2_j_per_out == pytest.approx(TRUE.c2_j_per_out, rel=0.05)
    assert curve.energy_j(200, 30) == pytest.approx(TRUE.energy_j(200, 30), rel=0.01)
    assert 0.99 < curve.r2 < 1.0  # type: ignore[operator]
    residuals = [p.energy_j - curve.energy_j(p.input_tokens, p.output_tokens) for p in points]
    assert curve.rmse_j == pytest.approx(math.sqrt(sum(r * r for r in residuals) / 25))
    assert curve.max_abs_residual_j == pytest.approx(max(abs(r) for r in residuals))


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ([(32, 1), (128, 16), (32, 1), (128, 16), (384, 48)], "4 distinct sweep points, got 3"),
        ([(32, 16), (128, 16), (384, 16), (512, 16)], "output length 16"),
        ([(64, 1), (64, 16), (64, 48), (64, 96)], "input length 64"),
        ([(8, 8), (16, 16), (32, 32), (64, 64), (128, 128)], "do not determine"),
    ],
)
def test_degenerate_grid_is_refused_with_a_fix(grid: list[tuple[int, int]], message: str) -> None:
    with pytest.raises(CurveError, match=message) as info:
        fit(sweep(TRUE, grid))
    assert "in=32,128,384;out=1,16,48" in str(info.value)
    assert isinstance(info.value, EnergyError)


def test_non_finite_joules_are_refused() -> None:
    points = [*sweep(TRUE, default_grid()), SweepPoint(32, 1, math.nan)]
    with pytest.raises(CurveError, match="invalid sweep point"):
        fit(points)


def test_prefill_and_decode_add_up_to_the_energy() -> None:
    assert TRUE.prefill_j(100) == pytest.approx(0.5 + 0.2)
    assert TRUE.decode_j(100, 10) == pytest.approx(10 * (0.08 + 0.01))
    assert TRUE.energy_j(100, 10) == pytest.approx(TRUE.prefill_j(100) + TRUE.decode_j(100, 10))
    assert TRUE.j_per_token(100, 10) == pytest.approx(TRUE.energy_j(100, 10) / 110)


def test_curve_round_trips_through_a_dict() -> None:
    curve = fit(sweep(TRUE, default_grid()))
    assert Curve.from_dict(json.loads(json.dumps(curve.to_dict()))) == curve


def test_mistyped_curve_key_is_named() -> None:
    data = TRUE.to_dict() | {"c2_j_per_out": "fast"}
    with pytest.raises(CurveError, match="c2_j_per_out"):
        Curve.from_dict(data)


def test_small_default_grid_fits_a_slow_cpu() -> None:
    grid = default_grid()
    # ~12 generated tokens/s for SmolLM2-135M on 2 cores: under 20 s of decoding per repeat
    assert sum(o for _, o in grid) <= 240
    assert len({i for i, _ in grid}) >= 3
    assert len({o for _, o in grid}) >= 3
    assert len(default_grid("medium")) > len(grid)


def test_unknown_grid_size_is_refused() -> None:
    with pytest.raises(CurveError, match="huge"):
        default_grid("huge")  # type: ignore[arg-type]


def test_grid_spec_gives_the_sorted_product() -> None:
    assert grid_from_spec(" out=16,1 ; in=128,32,128") == [(32, 1), (32, 16), (128, 1), (128, 16)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("in=32,128", "needs both"),
        ("in=32,x;out=1,2", "whole numbers"),
        ("in=32;out=1,2", "two distinct"),
        ("in=0,32;out=1,2", "two distinct"),
        ("in=32,64;size=1,2", "bad part"),
    ],
)
def test_bad_grid_spec_is_refused(spec: str, message: str) -> None:
    with pytest.raises(CurveError, match=message):
        grid_from_spec(spec)


# Binary fractions keep these budgets exact in floating point.
EXACT = Curve(1.0, 0.25, 0.5, 0.0625)  # at n_in=8: prompt 3 J, 1 J per output token


def test_budget_that_lands_on_a_whole_token_count_allows_it() -> None:
    assert max_tokens_for_budget(EXACT, 8, 3.0 + 7, cap=100) == 7
    assert max_tokens_for_budget(EXACT, 8, 3.0 + 7.999, cap=100) == 7
    assert max_tokens_for_budget(EXACT, 8, 3.0 + 8, cap=100) == 8


def test_budget_hit_up_to_rounding_still_counts_as_met() -> None:
    decimal = Curve(0.0, 0.0, 0.1, 0.0)
    assert decimal.energy_j(0, 3) > 0.3  # 0.30000000000000004
    assert max_tokens_for_budget(decimal, 0, 0.3, cap=10) == 3


def test_budget_below_the_prompt_energy_means_answer_at_once() -> None:
    assert max_tokens_for_budget(EXACT, 8, 2.5, cap=100) == 0
    assert max_tokens_for_budget(EXACT, 8, 3.0, cap=100) == 0
    assert max_tokens_for_budget(EXACT, 8, -1.0, cap=100) == 0


def test_budget_beyond_the_cap_is_capped() -> None:
    assert max_tokens_for_budget(EXACT, 8, 1000.0, cap=64) == 64
    assert max_tokens_for_budget(EXACT, 8, math.inf, cap=64) == 64


@pytest.mark.parametrize("c2", [0.0, -0.5])
def test_free_or_negative_decode_cost_gives_the_cap(c2: float) -> None:
    curve = Curve(1.0, 0.0, c2, 0.0)
    assert max_tokens_for_budget(curve, 8, 5.0, cap=32) == 32


def test_zero_decode_cost_over_budget_prompt_gives_nothing() -> None:
    assert max_tokens_for_budget(Curve(10.0, 0.0, 0.0, 0.0), 8, 5.0, cap=32) == 0


def test_reserve_keeps_reasoning_plus_answer_within_budget() -> None:
    n = max_tokens_for_budget(EXACT, 8, 3.0 + 10, cap=100, reserve=4)
    assert n == 6
    assert EXACT.energy_j(8, n + 4) <= 13.0 < EXACT.energy_j(8, n + 5)


def test_a_recomputed_forced_answer_is_a_second_request_over_the_whole_context() -> None:
    curve = Curve(1.0, 0.05, 0.2, 0.001)
    # 40-token prompt, 10 reasoning tokens, a 5-token cue and one letter.
    assert forced_answer_energy_j(curve, 40, 10, 6) == curve.energy_j(40, 16)
    assert forced_answer_energy_j(curve, 40, 10, 6, recompute=True) == (
        curve.energy_j(40, 10) + curve.energy_j(40 + 10 + 5, 1)
    )
    assert forced_answer_energy_j(curve, 40, 10, 0, recompute=True) == curve.energy_j(40, 10)
    # No reasoning: the answer's request is the only one.
    assert forced_answer_energy_j(curve, 40, 0, 6, recompute=True) == curve.energy_j(45, 1)


def test_a_recomputed_forced_answer_leaves_fewer_reasoning_tokens_within_the_budget() -> None:
    curve = Curve(1.0, 0.05, 0.2, 0.001)
    fed = max_tokens_for_budget(curve, 40, 12.0, cap=100, reserve=6)
    again = max_tokens_for_budget(curve, 40, 12.0, cap=100, reserve=6, recompute=True)
    assert again < fed
    assert forced_answer_energy_j(curve, 40, again, 6, recompute=True) <= 12.0
    assert forced_answer_energy_j(curve, 40, again + 1, 6, recompute=True) > 12.0


@pytest.mark.parametrize("recompute", [False, True], ids=["fed", "recomputed"])
def test_closed_form_agrees_with_counting_token_by_token(recompute: bool) -> None:
    rng = random.Random(3)
    for _ in range(200):
        curve = Curve(
            rng.uniform(0, 2), rng.uniform(0, 0.01), rng.uniform(0.01, 0.3), rng.uniform(0, 1e-3)
        )
        n_in, budget, cap = rng.randint(0, 500), rng.uniform(0, 30), rng.randint(0, 300)
        reserve = rng.choice([0, 6])
        fitting = [
            n
            for n in range(cap + 1)
            if forced_answer_energy_j(curve, n_in, n, reserve, recompute=recompute)
            <= budget * (1 + 1e-9)
        ]
        found = max_tokens_for_budget(
            curve, n_in, budget, cap=cap, reserve=reserve, recompute=recompute
        )
        assert found == max(fitting, default=0)


def test_nan_budget_is_refused() -> None:
    with pytest.raises(CurveError, match="NaN"):
        max_tokens_for_budget(EXACT, 8, math.nan, cap=10)


def test_store_round_trips_curves_of_several_machines(tmp_path: Path) -> None:
    other = Curve(1.0, 0.0, 0.5, 0.0, model="m", fingerprint={"gpu": "H100"}, meter="nvml")
    store = CurveStore([TRUE, other])
    path = tmp_path / "sub" / "curve.json"
    store.write(path)
    loaded = CurveStore.load(path)
    assert loaded.get("m", FP) == TRUE
    assert loaded.get("m", {"gpu": "H100"}) == other
    assert loaded.get("m", {"gpu": "A100"}) is None
    assert loaded.models() == ("m",)
    text = path.read_text()
    assert text.endswith("}\n")
    assert json.loads(text)["schema_version"] == 1
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]


def test_find_takes_the_matching_or_the_only_curve_of_a_model() -> None:
    other = Curve(1.0, 0.0, 0.5, 0.0, model="m", fingerprint={"gpu": "H100"})
    assert CurveStore([TRUE]).find("m") == TRUE
    store = CurveStore([TRUE, other])
    assert store.find("m", {"gpu": "H100"}) == other
    with pytest.raises(CurveError, match="2 curves for 'm'"):
        store.find("m")
    with pytest.raises(CurveError, match=r"no operating curve for 'x' here \(file has: m\)"):
        store.find("x")


def test_put_replaces_the_curve_of_the_same_machine() -> None:
    store = CurveStore([TRUE])
    newer = Curve(9.0, 0.0, 1.0, 0.0, model="m", fingerprint=dict(reversed(FP.items())))
    store.put(newer)
    assert len(store) == 1
    assert store.get("m", FP) == newer


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"schema_version": 1}',
        '{"schema_version": 7, "curves": {}}',
        '{"schema_version": 1, "curves": {"m@x": {"c0_j": 1}}}',
    ],
)
def test_corrupt_store_names_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "curve.json"
    path.write_text(content)
    with pytest.raises(CurveError, match=f"curve file {path} is corrupt"):
        CurveStore.load(path)
    assert path.read_text() == content


def test_missing_store_says_how_to_create_it(tmp_path: Path) -> None:
    path = tmp_path / "curve.json"
    with pytest.raises(CurveError, match="pytest-energy calibrate"):
        CurveStore.load(path)
    assert len(CurveStore.load(path, missing_ok=True)) == 0


def test_derived_curves_follow_the_curve_along_each_axis() -> None:
    derived = derived_curves(TRUE, [384, 32, 128], [48, 1, 16])
    assert (derived.at_n_out, derived.at_n_in) == (16, 128)
    assert [p.input_tokens for p in derived.by_input] == [32, 128, 384]
    assert [p.output_tokens for p in derived.by_output] == [1, 16, 48]
    last = derived.by_output[-1]
    assert last.j_per_token == pytest.approx(TRUE.energy_j(128, 48) / 176)
    assert last.j_per_output_token == pytest.approx(TRUE.energy_j(128, 48) / 48)
    # per-token cost falls with input length: the fixed cost is spread over more tokens
    per_token = [p.j_per_token for p in derived.by_input]
    assert per_token == sorted(per_token, reverse=True)


def test_plot_is_skipped_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert plot_fit(TRUE, sweep(TRUE, default_grid()), tmp_path / "fit.png") is None
    assert not (tmp_path / "fit.png").exists()


def test_plot_draws_the_fit_to_a_file(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    points = sweep(TRUE, default_grid())
    path = plot_fit(fit(points), points, tmp_path / "plots" / "fit.png")
    assert path == tmp_path / "plots" / "fit.png"
    assert path.read_bytes().startswith(b"\x89PNG")
