"""Bad option values are usage errors naming the source, the value and the fix,
whether they come from the command line, the environment or the ini file; and
command line > environment > ini > default."""

from __future__ import annotations

import pytest

# option -> (bad value, the rest of the one-line error after "<source>: ")
BAD_VALUES = {
    "meter": (
        "bogus",
        "invalid value 'bogus' (unknown meter); "
        "choose one of auto, nvml, rapl, cpu-estimate, curve, dcgm",
    ),
    "tolerance": ("abc", "invalid value 'abc' (*); give a percentage such as 10%"),
    "repeats": (
        "0",
        "invalid value '0' (must be at least 1); give a whole number of at least 1, or auto",
    ),
    "budget": (
        "missing.yaml",
        "budgets file */missing.yaml does not exist; "
        "create it or run --energy-budget without a file",
    ),
}

SHOW_SETTINGS = """
from pytest_energy.stash import settings_key


def test_show(pytestconfig):
    s = pytestconfig.stash[settings_key]
    print(f"SETTINGS repeats={s.repeats} tolerance={s.tolerance} meter={s.meter} "
          f"enabled={s.enabled}")
"""


def set_option(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str, name: str, value: str
) -> tuple[list[str], str]:
    """Give ``name`` the ``value`` through ``source``; returns (arguments, source's name)."""
    if source == "command line":
        return [f"--energy-{name}", value], f"--energy-{name}"
    if source == "environment":
        monkeypatch.setenv(f"PYTEST_ENERGY_{name.upper()}", value)
        return [], f"PYTEST_ENERGY_{name.upper()}"
    pytester.makeini(f"[pytest]\nenergy_{name} = {value}\n")
    return [], f"energy_{name} (ini)"


@pytest.mark.parametrize("source", ["command line", "environment", "ini"])
@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_bad_value_is_a_one_line_usage_error_naming_source_value_and_fix(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str, source: str
) -> None:
    value, problem = BAD_VALUES[name]
    args, where = set_option(pytester, monkeypatch, source, name, value)
    pytester.makepyfile("def test_plain():\n    pass\n")

    result = pytester.runpytest(*args)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {where}: {problem}"])
    assert len([line for line in result.stderr.lines if line.strip()]) == 1


def test_command_line_beats_environment_beats_ini_beats_default(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(
        "[pytest]\nenergy_repeats = 2\nenergy_tolerance = 20%\nenergy_meter = cpu-estimate\n"
    )
    monkeypatch.setenv("PYTEST_ENERGY_REPEATS", "3")
    monkeypatch.setenv("PYTEST_ENERGY_TOLERANCE", "30%")
    pytester.makepyfile(SHOW_SETTINGS)

    result = pytester.runpytest("-s", "--energy-repeats=4")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*SETTINGS repeats=4 tolerance=30% meter=cpu-estimate enabled=False*"]
    )


@pytest.mark.parametrize(
    ("higher", "lower"), [("command line", "environment"), ("environment", "ini")]
)
def test_a_good_value_from_a_higher_source_hides_a_bad_one_below(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, higher: str, lower: str
) -> None:
    set_option(pytester, monkeypatch, lower, "meter", "bogus")
    args, _ = set_option(pytester, monkeypatch, higher, "meter", "cpu-estimate")
    pytester.makepyfile(SHOW_SETTINGS)

    result = pytester.runpytest("-s", *args)

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*SETTINGS repeats=5 tolerance=10% meter=cpu-estimate*"])


@pytest.mark.parametrize(
    ("source", "value"), [("environment", "true"), ("ini", "true"), ("environment", "1")]
)
def test_energy_budget_can_be_switched_on_from_environment_or_ini(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str, value: str
) -> None:
    set_option(pytester, monkeypatch, source, "budget", value)
    monkeypatch.setenv("PYTEST_ENERGY_METER", "cpu-estimate")
    pytester.makepyfile(SHOW_SETTINGS)

    result = pytester.runpytest("-s")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*SETTINGS * enabled=True*"])


def test_one_repeat_with_a_tolerance_warns_at_start_within_80_columns(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    pytester.makepyfile("def test_plain():\n    pass\n")

    warned = pytester.runpytest("--energy-budget", "--energy-repeats=1")
    quiet = pytester.runpytest("--energy-budget", "--energy-repeats=1", "--energy-tolerance=0%")

    assert warned.ret == quiet.ret == pytest.ExitCode.OK
    warned.stdout.fnmatch_lines(
        [
            "energy: warning: --energy-repeats 1 gives no noise estimate, *",
            "  *use 3 or more repeats",
        ]
    )
    assert all(len(line) <= 80 for line in warned.stdout.lines if line.startswith("energy: "))
    assert not any("energy: warning" in line for line in quiet.stdout.lines)
