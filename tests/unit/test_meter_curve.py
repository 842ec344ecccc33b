from __future__ import annotations

from pathlib import Path

import pytest

from pytest_energy.curves import Curve, CurveStore
from pytest_energy.errors import MeterError
from pytest_energy.meters.base import EnergyMeter, Meter, TokenAccounting
from pytest_energy.meters.curve import CurveMeter, create_curve_meter
from pytest_energy.settings import Settings

HW = {"cpu": "Test CPU", "meter": "rapl", "estimated": "false"}
CURVE = Curve(0.5, 0.002, 0.08, 0.0001, model="smollm2-135m", fingerprint=HW, meter="rapl")


def test_curve_meter_is_an_estimated_token_accounting_meter() -> None:
    meter = CurveMeter(CURVE)
    assert isinstance(meter, Meter)
    assert isinstance(meter, TokenAccounting)
    assert (meter.name, meter.estimated) == ("curve", True)


def test_prefill_and_decode_of_a_sequence_add_the_curve_energy() -> None:
    meter = CurveMeter(CURVE)
    meter.account("prefill", 120, 0)
    assert meter.read() == pytest.approx(CURVE.prefill_j(120))
    meter.account("decode", 120, 30)
    assert meter.read() == pytest.approx(CURVE.energy_j(120, 30))


def test_counter_accumulates_over_sequences() -> None:
    meter = CurveMeter(CURVE)
    for n_in, n_out in [(50, 10), (200, 3)]:
        meter.account("prefill", n_in, 0)
        meter.account("decode", n_in, n_out)
    assert meter.read() == pytest.approx(CURVE.energy_j(50, 10) + CURVE.energy_j(200, 3))


def test_windows_measure_each_phase_separately() -> None:
    energy_meter = EnergyMeter(CurveMeter(CURVE))
    with energy_meter.window() as prefill:
        prefill.account("prefill", 64, 0)
    with energy_meter.window() as decode:
        decode.account("decode", 64, 16)
    assert prefill.energy_j == pytest.approx(CURVE.prefill_j(64))
    assert decode.energy_j == pytest.approx(CURVE.decode_j(64, 16))
    assert prefill.estimated


def test_negative_prediction_counts_as_zero() -> None:
    meter = CurveMeter(Curve(-0.2, 0.001, 0.05, 0.0))
    meter.account("prefill", 10, 0)
    assert meter.read() == 0.0
    meter.account("decode", 10, 4)
    assert meter.read() == pytest.approx(0.2)


def test_unknown_phase_and_negative_counts_are_refused() -> None:
    meter = CurveMeter(CURVE)
    with pytest.raises(ValueError, match="unknown phase"):
        meter.account("sample", 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        meter.account("decode", 5, -1)


def test_fingerprint_names_the_curve_not_the_sweep_meter() -> None:
    energy_meter = EnergyMeter(CurveMeter(CURVE))
    fingerprint = energy_meter.fingerprint()
    assert fingerprint["meter"] == "curve"
    assert fingerprint["estimated"] == "true"
    assert fingerprint["meter_source"] == "curve:smollm2-135m"
    assert fingerprint["curve_meter"] == "rapl"
    assert fingerprint["cpu"] == "Test CPU"


def write_store(path: Path, *curves: Curve) -> Path:
    CurveStore(curves).write(path)
    return path


def test_create_reads_the_only_curve_of_the_file(tmp_path: Path) -> None:
    path = write_store(tmp_path / "curve.json", CURVE)
    energy_meter = create_curve_meter(Settings(curve_path=path))
    assert energy_meter.name == "curve"
    assert isinstance(energy_meter.meter, CurveMeter)
    assert energy_meter.meter.curve == CURVE


def test_create_without_a_curve_file_says_how_to_make_one() -> None:
    with pytest.raises(MeterError, match=r"calibrate --model .* .energy_curve = curve.json. in"):
        create_curve_meter(Settings())


def test_create_with_a_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(MeterError, match=f"{path} does not exist.*calibrate"):
        create_curve_meter(Settings(curve_path=path))


def test_create_with_several_curves_lists_the_models(tmp_path: Path) -> None:
    other = Curve(1.0, 0.0, 0.2, 0.0, model="qwen-0.5b", fingerprint=HW)
    path = write_store(tmp_path / "curve.json", CURVE, other)
    with pytest.raises(MeterError, match=r"qwen-0\.5b, smollm2-135m"):
        create_curve_meter(Settings(curve_path=path))
    chosen = create_curve_meter(Settings(curve_path=path), model="qwen-0.5b")
    assert isinstance(chosen.meter, CurveMeter)
    assert chosen.meter.curve == other


def test_for_model_picks_by_fingerprint_when_given() -> None:
    elsewhere = Curve(1.0, 0.0, 0.2, 0.0, model="smollm2-135m", fingerprint={"gpu": "H100"})
    store = CurveStore([CURVE, elsewhere])
    assert CurveMeter.for_model(store, "smollm2-135m", {"gpu": "H100"}).curve == elsewhere
    with pytest.raises(MeterError, match="several machines"):
        CurveMeter.for_model(store, "smollm2-135m")
    with pytest.raises(MeterError, match="no operating curve for 'smollm2-135m' here"):
        CurveMeter.for_model(store, "smollm2-135m", {"gpu": "A100"})


def test_for_model_lists_what_the_file_has() -> None:
    with pytest.raises(MeterError, match=r"'llama' here \(file has: smollm2-135m\)"):
        CurveMeter.for_model(CurveStore([CURVE]), "llama")


def test_corrupt_curve_file_is_a_meter_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "curve.json"
    path.write_text("{")
    with pytest.raises(MeterError, match=f"curve file {path} is corrupt"):
        create_curve_meter(Settings(curve_path=path))
