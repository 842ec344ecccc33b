from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.settings import DEFAULT_WATTS_PER_CORE, Settings, Tolerance


def build(
    tmp_path: Path,
    *,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    ini: Mapping[str, Any] | None = None,
    invocation_dir: Path | None = None,
) -> Settings:
    """Settings from fake sources; an unset ini value is "" as pytest's getini returns."""
    cli_values = dict(cli or {})
    ini_values = dict(ini or {})
    return Settings.from_sources(
        cli=lambda name: cli_values.get(name),
        env=dict(env or {}),
        ini=lambda name: ini_values.get(name, ""),
        rootdir=tmp_path,
        invocation_dir=invocation_dir,
    )


# -- defaults and precedence ---------------------------------------------------


def test_no_sources_gives_the_documented_defaults(tmp_path: Path) -> None:
    settings = build(tmp_path)
    assert settings.enabled is False
    assert settings.budgets_file is None
    assert settings.meter == "auto"
    assert settings.baseline_path == tmp_path / ".energy" / "baseline.json"
    assert settings.update_baseline is False
    assert settings.tolerance == Tolerance(0.10)
    assert settings.repeats == 5
    assert settings.mmlu == "hf:cais/mmlu"
    assert settings.report_path is None
    assert settings.json_path is None
    assert settings.accept_reason is None
    assert settings.watts_per_core == DEFAULT_WATTS_PER_CORE
    assert settings.batch_size is None
    assert settings.device == "auto"
    assert settings.rootdir == tmp_path


@pytest.mark.parametrize(
    ("name", "attr", "cli", "env", "ini", "expected"),
    [
        ("meter", "meter", "rapl", "nvml", "curve", "rapl"),
        ("repeats", "repeats", "5", "3", "2", 5),
        ("tolerance", "tolerance", "25%", "15%", "5%", Tolerance(0.25)),
        ("accept", "accept_reason", "cli reason", "env reason", "ini reason", "cli reason"),
    ],
)
def test_command_line_beats_environment_and_ini(
    tmp_path: Path, name: str, attr: str, cli: str, env: str, ini: str, expected: Any
) -> None:
    env_name = "PYTEST_ENERGY_" + name.upper()
    settings = build(tmp_path, cli={name: cli}, env={env_name: env}, ini={name: ini})
    assert getattr(settings, attr) == expected


@pytest.mark.parametrize(
    ("name", "attr", "env", "ini", "expected"),
    [
        ("meter", "meter", "nvml", "curve", "nvml"),
        ("repeats", "repeats", "3", "2", 3),
        ("tolerance", "tolerance", "15%", "5%", Tolerance(0.15)),
        ("cpu-watts-per-core", "watts_per_core", "7.5", "12", 7.5),
        ("batch-size", "batch_size", "4", "32", 4),
        ("device", "device", "cpu", "cuda:1", "cpu"),
        ("lock-timeout", "lock_timeout_s", "30", "900", 30.0),
    ],
)
def test_environment_beats_ini(
    tmp_path: Path, name: str, attr: str, env: str, ini: str, expected: Any
) -> None:
    env_name = "PYTEST_ENERGY_" + name.upper().replace("-", "_")
    settings = build(tmp_path, env={env_name: env}, ini={name: ini})
    assert getattr(settings, attr) == expected


@pytest.mark.parametrize(
    ("name", "attr", "ini", "expected"),
    [
        ("meter", "meter", "curve", "curve"),
        ("repeats", "repeats", "2", 2),
        ("tolerance", "tolerance", "5%", Tolerance(0.05)),
        ("update-baseline", "update_baseline", "true", True),
        ("strict-baseline", "strict_baseline", "yes", True),
        ("batch-size", "batch_size", "auto", None),
        ("device", "device", "CUDA:1", "cuda:1"),
    ],
)
def test_ini_beats_the_default(
    tmp_path: Path, name: str, attr: str, ini: str, expected: Any
) -> None:
    assert getattr(build(tmp_path, ini={name: ini}), attr) == expected


def test_an_unset_command_line_option_falls_through_to_the_environment(tmp_path: Path) -> None:
    # argparse leaves an absent option at None; only None means "not given".
    settings = build(tmp_path, cli={"meter": None}, env={"PYTEST_ENERGY_METER": "rapl"})
    assert settings.meter == "rapl"


# -- bad values ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "fix"),
    [
        ("meter", "joulemeter", "choose one of auto, nvml, rapl, cpu-estimate, curve"),
        ("repeats", "0", "give a whole number of at least 1"),
        ("repeats", "two", "give a whole number of at least 1"),
        ("repeats", "2.5", "give a whole number of at least 1"),
        ("tolerance", "ten percent", "give a percentage such as 10%"),
        ("tolerance", "-5%", "give a percentage such as 10%"),
        ("update-baseline", "maybe", "use true or false"),
        ("cpu-watts-per-core", "-3", "give the watts one busy core draws"),
        ("cpu-watts-per-core", "nan", "give the watts one busy core draws"),
        ("cpu-watts-per-core", "inf", "give the watts one busy core draws"),
        ("batch-size", "0", "give a whole number or auto"),
        ("device", "tpu", "use auto, cpu, cuda or cuda:N"),
        ("device", "cuda:x", "use auto, cpu, cuda or cuda:N"),
        ("lock-timeout", "0", "give a number of seconds, e.g. 600"),
        ("repeats", "often", "give a whole number of at least 1, or auto"),
        ("max-repeats", "0", "the most repeats --energy-repeats auto takes"),
    ],
)
def test_bad_environment_value_names_variable_value_and_fix(
    tmp_path: Path, name: str, value: str, fix: str
) -> None:
    env_name = "PYTEST_ENERGY_" + name.upper().replace("-", "_")
    with pytest.raises(pytest.UsageError) as info:
        build(tmp_path, env={env_name: value})
    message = str(info.value)
    assert env_name in message
    assert repr(value) in message
    assert fix in message
    assert "\n" not in message


def test_bad_command_line_value_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError, match=r"^--energy-repeats: invalid value '-1'"):
        build(tmp_path, cli={"repeats": "-1"})


def test_bad_ini_value_names_the_ini_key(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError) as info:
        build(tmp_path, ini={"meter": "wattmeter"})
    assert "energy_meter (ini)" in str(info.value)
    assert "'wattmeter'" in str(info.value)


def test_bad_value_is_reported_even_when_a_lower_source_is_valid(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError, match="--energy-meter"):
        build(tmp_path, cli={"meter": "bogus"}, env={"PYTEST_ENERGY_METER": "rapl"})


def test_missing_budgets_file_is_a_usage_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError) as info:
        build(tmp_path, cli={"budget": "nowhere.yaml"})
    message = str(info.value)
    assert str(tmp_path / "nowhere.yaml") in message
    assert "--energy-budget" in message
    assert "run --energy-budget without a file" in message


# -- Tolerance -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "rel"),
    [
        ("10%", 0.10),
        (" 10 % ", 0.10),
        ("10", 0.10),
        ("2.5%", 0.025),
        ("0%", 0.0),
        (0.1, 0.10),
        (0.25, 0.25),
        (10, 0.10),
        (15.0, 0.15),
    ],
)
def test_tolerance_parses_percent_text_and_fractions(given: str | float, rel: float) -> None:
    assert Tolerance.parse(given).rel == pytest.approx(rel)


@pytest.mark.parametrize("given", ["-5%", "-5", -0.05, "1000%", "nan", "inf"])
def test_tolerance_out_of_range_is_a_value_error(given: str | float) -> None:
    with pytest.raises(ValueError, match="tolerance must be between 0% and 1000%"):
        Tolerance.parse(given)


@pytest.mark.parametrize("given", ["ten", "", "%", "10%%"])
def test_tolerance_that_is_not_a_number_is_a_value_error(given: str) -> None:
    with pytest.raises(ValueError, match="could not convert"):
        Tolerance.parse(given)


def test_tolerance_prints_as_percent() -> None:
    assert str(Tolerance.parse("12.5%")) == "12.5%"
    assert str(Tolerance(0.1)) == "10%"


def test_negative_absolute_floor_is_rejected() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        Tolerance(0.1, abs=-1.0)


# -- paths -----------------------------------------------------------------------


def test_command_line_paths_are_relative_to_the_invocation_dir(tmp_path: Path) -> None:
    here = tmp_path / "sub"
    settings = build(
        tmp_path,
        cli={"baseline": "b.json", "report": "out/report.md", "json": "r.json"},
        invocation_dir=here,
    )
    assert settings.baseline_path == here / "b.json"
    assert settings.report_path == here / "out" / "report.md"
    assert settings.json_path == here / "r.json"


def test_environment_paths_are_relative_to_the_invocation_dir(tmp_path: Path) -> None:
    here = tmp_path / "sub"
    settings = build(
        tmp_path,
        env={"PYTEST_ENERGY_BASELINE": "b.json", "PYTEST_ENERGY_CURVE": "c.json"},
        invocation_dir=here,
    )
    assert settings.baseline_path == here / "b.json"
    assert settings.curve_path == here / "c.json"


def test_ini_paths_are_relative_to_rootdir(tmp_path: Path) -> None:
    settings = build(
        tmp_path,
        ini={"baseline": "ci/b.json", "report": "r.md", "cache-dir": "models"},
        invocation_dir=tmp_path / "sub",
    )
    assert settings.baseline_path == tmp_path / "ci" / "b.json"
    assert settings.report_path == tmp_path / "r.md"
    assert settings.cache_dir == tmp_path / "models"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "b.json"
    settings = build(tmp_path, cli={"baseline": str(target)}, invocation_dir=tmp_path / "sub")
    assert settings.baseline_path == target


def test_relative_mmlu_folder_on_the_command_line_is_anchored_at_invocation_dir(
    tmp_path: Path,
) -> None:
    settings = build(tmp_path, cli={"mmlu": "data/mmlu"}, invocation_dir=tmp_path / "sub")
    assert Path(settings.mmlu) == tmp_path / "sub" / "data" / "mmlu"


def test_hf_mmlu_source_is_not_treated_as_a_path(tmp_path: Path) -> None:
    settings = build(tmp_path, cli={"mmlu": "hf:cais/mmlu"}, invocation_dir=tmp_path / "sub")
    assert settings.mmlu == "hf:cais/mmlu"


def test_mmlu_in_ini_stays_relative_for_the_loader_to_resolve_against_rootdir(
    tmp_path: Path,
) -> None:
    assert build(tmp_path, ini={"mmlu": "data/mmlu"}).mmlu == "data/mmlu"


# -- budgets file ----------------------------------------------------------------


def test_budget_flag_without_file_picks_up_the_default_file_at_rootdir(tmp_path: Path) -> None:
    (tmp_path / "energy-budgets.yaml").write_text("{}\n", encoding="utf-8")
    settings = build(tmp_path, cli={"budget": "true"})
    assert settings.enabled is True
    assert settings.budgets_file == tmp_path / "energy-budgets.yaml"


def test_budget_flag_without_file_and_no_default_file_enables_without_budgets(
    tmp_path: Path,
) -> None:
    settings = build(tmp_path, cli={"budget": "true"})
    assert settings.enabled is True
    assert settings.budgets_file is None


def test_default_budgets_file_is_ignored_when_energy_testing_is_off(tmp_path: Path) -> None:
    (tmp_path / "energy-budgets.yaml").write_text("{}\n", encoding="utf-8")
    settings = build(tmp_path)
    assert settings.enabled is False
    assert settings.budgets_file is None


def test_budget_file_on_the_command_line_is_relative_to_invocation_dir(tmp_path: Path) -> None:
    here = tmp_path / "sub"
    here.mkdir()
    (here / "mine.yaml").write_text("{}\n", encoding="utf-8")
    (tmp_path / "energy-budgets.yaml").write_text("{}\n", encoding="utf-8")
    settings = build(tmp_path, cli={"budget": "mine.yaml"}, invocation_dir=here)
    assert settings.budgets_file == here / "mine.yaml"


def test_budget_file_in_ini_is_relative_to_rootdir(tmp_path: Path) -> None:
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "budgets.yaml").write_text("{}\n", encoding="utf-8")
    settings = build(tmp_path, ini={"budget": "ci/budgets.yaml"}, invocation_dir=tmp_path / "x")
    assert settings.enabled is True
    assert settings.budgets_file == tmp_path / "ci" / "budgets.yaml"


@pytest.mark.parametrize(("value", "enabled"), [("1", True), ("on", True), ("0", False)])
def test_budget_from_environment_switches_energy_testing(
    tmp_path: Path, value: str, enabled: bool
) -> None:
    assert build(tmp_path, env={"PYTEST_ENERGY_BUDGET": value}).enabled is enabled


def test_environment_can_switch_off_what_ini_switched_on(tmp_path: Path) -> None:
    settings = build(tmp_path, env={"PYTEST_ENERGY_BUDGET": "false"}, ini={"budget": "true"})
    assert settings.enabled is False


def test_repeats_auto_and_its_maximum(tmp_path: Path) -> None:
    assert build(tmp_path).max_repeats == 10
    settings = build(tmp_path, cli={"repeats": " Auto"}, ini={"max-repeats": "6"})
    assert (settings.repeats, settings.max_repeats) == ("auto", 6)


def test_warmup_runs_are_counted_from_zero_and_never_negative(tmp_path: Path) -> None:
    assert build(tmp_path).warmup == 0
    assert build(tmp_path, ini={"warmup": "2"}).warmup == 2
    with pytest.raises(pytest.UsageError, match=r"energy_warmup \(ini\): invalid value '-1'"):
        build(tmp_path, ini={"warmup": "-1"})
