"""The pytest-energy console script: report, compare, merge, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pytest

from factories import baseline_check, make_result
from pytest_energy import __version__
from pytest_energy.cli import Comparator, compare_rows, main
from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Check, Outcome
from pytest_energy.report import Row
from pytest_energy.report.markdown import MARKER
from pytest_energy.report.results import write_results
from pytest_energy.settings import Tolerance

MOMENT = datetime(2025, 5, 1, tzinfo=timezone.utc)


def row(
    test_id: str = "t::a",
    *,
    energy_j: float = 10.0,
    estimated: bool = False,
    gpu: str = "H200",
    repeats: int = 1,
) -> Row:
    result = make_result(
        [energy_j * (1 + 0.001 * k) for k in range(repeats)],
        correct=[i % 2 == 1 for i in range(10)],
        input_tokens=100,
        prefill_share=0.3,
        estimated=estimated,
        fingerprint={"gpu": gpu},
        test_id=test_id,
    )
    return result, Outcome(status="pass", baseline="compared")


def results_file(path: Path, *rows: Row, reason: str | None = None) -> str:
    write_results(path, rows, accepted_reason=reason, created_utc=MOMENT)
    return str(path)


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pytest-energy {__version__}"


def test_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "pytest-energy"
    if not script.exists():
        pytest.skip("the pytest-energy console script is not installed in this environment")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, f"pytest-energy {__version__}")


def test_report_writes_markdown_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = results_file(tmp_path / "r.json", row(), reason="known")
    assert main(["report", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith(MARKER + "\n")
    assert "t::a" in out


def test_report_against_a_base_file_shows_the_change(tmp_path: Path) -> None:
    head = results_file(tmp_path / "head.json", row(energy_j=12.0))
    base = results_file(tmp_path / "base.json", row(energy_j=10.0))
    out = tmp_path / "sub" / "report.md"
    assert main(["report", head, "--base", base, "-o", str(out)]) == 0
    assert "J/token +20.0%" in out.read_text(encoding="utf-8")


def test_report_with_plots_links_the_pngs_beside_the_output(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plots extra (matplotlib) is not installed")
    path = results_file(tmp_path / "r.json", row("t::a"), row("t::b", energy_j=30.0))
    out = tmp_path / "energy-report.md"
    assert main(["report", path, "--plots", "-o", str(out)]) == 0
    assert "![energy plot](energy-report-energy-accuracy.png)" in out.read_text(encoding="utf-8")
    assert (tmp_path / "energy-report-j-per-token.png").is_file()


def test_report_as_a_terminal_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = results_file(tmp_path / "r.json", row())
    assert main(["report", path, "--format", "term", "--width", "150"]) == 0
    out = capsys.readouterr().out
    assert "J/token" in out
    assert "\x1b" not in out


def test_report_in_benchmark_action_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = results_file(tmp_path / "r.json", row())
    assert main(["report", path, "--format", "benchmark"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in data] == ["t::a [j_per_token]", "t::a [j_per_question]"]


def test_base_with_a_terminal_report_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = results_file(tmp_path / "r.json", row())
    assert main(["report", path, "--base", path, "--format", "term"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--base works with --format md only" in err


def test_a_corrupt_results_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    assert main(["report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("pytest-energy report: error: results file ")
    assert "bad.json" in err


def test_bad_arguments_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["compare", "a.json", "b.json", "--tolerance", "lots"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "invalid tolerance 'lots'" in err


def test_a_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


# -- compare -------------------------------------------------------------------


def test_compare_exits_1_on_a_regression_beyond_tolerance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = results_file(tmp_path / "base.json", row(energy_j=10.0))
    head = results_file(tmp_path / "head.json", row(energy_j=13.0))
    assert main(["compare", base, head, "--tolerance", "10%"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED t::a: J/token +30.0%" in out
    assert "beyond tolerance 10%" in out


def test_compare_exits_0_within_tolerance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = results_file(tmp_path / "base.json", row(energy_j=10.0))
    head = results_file(tmp_path / "head.json", row(energy_j=13.0))
    assert main(["compare", base, head, "--tolerance", "50%"]) == 0
    assert "no regression beyond tolerance 50%" in capsys.readouterr().out


def test_compare_exits_0_when_energy_went_down(tmp_path: Path) -> None:
    base = results_file(tmp_path / "base.json", row(energy_j=10.0))
    head = results_file(tmp_path / "head.json", row(energy_j=5.0))
    assert main(["compare", base, head]) == 0


def test_compare_with_a_missing_file_exits_2(tmp_path: Path) -> None:
    head = results_file(tmp_path / "head.json", row())
    assert main(["compare", str(tmp_path / "nope.json"), head]) == 2


def _fake(checks: Sequence[Check]) -> Comparator:
    def comparator(head: EvalResult, base: EvalResult, tolerance: Tolerance) -> Sequence[Check]:
        return checks

    return comparator


REGRESSION = baseline_check(change=1.0)


def test_new_and_removed_tests_are_listed_but_never_regressions() -> None:
    result = compare_rows([row("t::old")], [row("t::new")], Tolerance(0.1), _fake([REGRESSION]))
    assert result.regressions == 0
    assert result.lines == (
        "new       t::new: not in the base results",
        "missing   t::old: in the base results only",
    )


def test_estimated_results_are_never_compared_with_measured_ones() -> None:
    result = compare_rows([row()], [row(estimated=True)], Tolerance(0.1), _fake([REGRESSION]))
    assert result.regressions == 0
    assert "estimated and measured energy differ" in result.lines[0]


def test_fingerprint_drift_skips_unless_ignored() -> None:
    base, head = [row(gpu="A100")], [row(gpu="H200")]
    skipped = compare_rows(base, head, Tolerance(0.1), _fake([REGRESSION]))
    assert skipped.regressions == 0
    assert "fingerprint differs in gpu" in skipped.lines[0]
    forced = compare_rows(base, head, Tolerance(0.1), _fake([REGRESSION]), ignore_fingerprint=True)
    assert (forced.regressions, forced.tests_regressed) == (1, 1)


# -- merge ---------------------------------------------------------------------


def test_merge_joins_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = results_file(tmp_path / "shard-0.json", row("t::a"))
    b = results_file(tmp_path / "shard-1.json", row("t::b"), reason="accepted")
    out = tmp_path / "merged.json"
    assert main(["merge", a, b, "-o", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [e["test_id"] for e in data["results"]] == ["t::a", "t::b"]
    assert data["accepted_reason"] == "accepted"
    assert "merged 2 result(s) from 2 file(s)" in capsys.readouterr().out


def test_merge_conflict_is_an_error_naming_the_test_and_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = results_file(tmp_path / "h100.json", row("t::a", energy_j=10.0))
    b = results_file(tmp_path / "a100.json", row("t::a", energy_j=20.0))
    out = tmp_path / "merged.json"
    assert main(["merge", a, b, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "test 't::a' has different results in h100, a100" in err
    assert "--on-conflict suffix" in err
    assert not out.exists()


def test_merge_conflict_with_suffix_keeps_both(tmp_path: Path) -> None:
    a = results_file(tmp_path / "h100.json", row("t::a", energy_j=10.0))
    b = results_file(tmp_path / "a100.json", row("t::a", energy_j=20.0))
    out = tmp_path / "merged.json"
    assert main(["merge", a, b, "-o", str(out), "--on-conflict", "suffix"]) == 0
    ids = [e["test_id"] for e in json.loads(out.read_text(encoding="utf-8"))["results"]]
    assert ids == ["t::a @a100", "t::a @h100"]


def test_merge_of_files_with_one_name_labels_by_path(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a = results_file(tmp_path / "x" / "r.json", row("t::a", energy_j=10.0))
    b = results_file(tmp_path / "y" / "r.json", row("t::a", energy_j=20.0))
    out = tmp_path / "m.json"
    assert main(["merge", a, b, "-o", str(out), "--on-conflict", "suffix"]) == 0
    ids = [e["test_id"] for e in json.loads(out.read_text(encoding="utf-8"))["results"]]
    assert ids == sorted(f"t::a @{p}" for p in (a, b))


def test_module_runs_as_a_script(tmp_path: Path) -> None:
    path = results_file(tmp_path / "r.json", row())
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest_energy.cli", "report", path],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 0
    assert done.stdout.startswith(MARKER)


class _Session:
    """Stands in for EnergySession: calibrate only asks it for an engine and questions."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        from pytest_energy.mmlu import Question

        question = Question("anatomy", "Which?", ("a", "b", "c", "d"), "A", "x.csv:1")
        self.mmlu = type("Mmlu", (), {"sample": lambda *a, **k: [question]})()

    def engine(self, model: str) -> object:
        return object()

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("r2", "warned"), [(0.999, False), (0.05, True)])
def test_calibrate_warns_on_a_poor_fit_and_still_writes_the_curve(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    r2: float,
    warned: bool,
) -> None:
    import pytest_energy.calibration
    import pytest_energy.session
    from pytest_energy.curves import Curve, CurveStore

    curve = Curve(1.0, 0.05, 0.2, 0.0, model="m", fingerprint={"cpu": "c"}, meter="rapl")
    fitted = Curve(**{**curve.to_dict(), "r2": r2, "rmse_j": 0.1, "max_abs_residual_j": 0.2})
    monkeypatch.setattr(pytest_energy.session, "EnergySession", _Session)
    monkeypatch.setattr(pytest_energy.calibration, "calibrate", lambda *a, **k: (fitted, []))
    out = tmp_path / "curve.json"

    code = main(["calibrate", "--model", "m", "--mmlu", "x", "--meter", "rapl", "-o", str(out)])

    assert code == 0
    err = capsys.readouterr().err
    if warned:
        assert err.startswith("warning: poor fit (R^2 0.05 < 0.9): other work on the machine")
        assert len(err.splitlines()) == 1
    else:
        assert err == ""
    assert CurveStore.load(out).find("m").r2 == r2
