"""The terminal table: a pure string, deterministic, safe for any test id."""

from __future__ import annotations

import pytest

from factories import baseline_check, make_row, outcome
from pytest_energy.outcome import Outcome
from pytest_energy.report import Row
from pytest_energy.report.terminal import (
    NARROW_BELOW,
    HeaderInfo,
    clean,
    render_header,
    render_terminal,
    short_names,
)


def row(
    test_id: str = "tests/test_a.py::test_a",
    *,
    estimated: bool = False,
    outcome: Outcome | None = None,
    meter: str = "nvml",
) -> Row:
    return make_row(
        10.0,
        outcome=outcome,
        questions=4,
        correct=4,
        input_tokens=100,
        output_tokens=5,
        prefill_share=0.3,
        meter=meter,
        estimated=estimated,
        fingerprint={},
        test_id=test_id,
    )


def test_plain_output_has_no_escape_sequences() -> None:
    text = render_terminal([row()], width=160, color=False)
    assert "\x1b" not in text
    assert "test_a" in text
    assert "0.02381" in text
    assert "PASS" in text


def test_colour_output_marks_a_failure_red() -> None:
    failing = outcome(baseline_check(change=0.3))
    text = render_terminal([row(outcome=failing)], width=160, color=True)
    assert "\x1b[1;31mFAIL" in text
    assert "regression: tests/test_a.py::test_a: J/token +30.0%" in text


def test_environment_does_not_change_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    before = render_terminal([row()], width=150, color=False)
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    assert render_terminal([row()], width=150, color=False) == before


def test_lines_never_exceed_the_width() -> None:
    rows = [row("tests/test_really_long_module_name.py::test_with_a_long_name[param-1]")]
    for width in (60, 80, 120, 200):
        text = render_terminal(rows, width=width, color=False)
        assert max(len(line) for line in text.splitlines()) <= width


def test_control_characters_in_a_test_id_cannot_reach_the_terminal() -> None:
    text = render_terminal(
        [row("t::x[\x1b[2J\x07\n]", meter="nvml\x1b]0;title\x07")], width=200, color=False
    )
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\\x1b[2J\\x07\\n" in text


def test_rich_markup_in_names_is_shown_literally() -> None:
    text = render_terminal([row("t::x[[bold]hi[/bold]]")], width=200, color=False)
    assert "[bold]hi[/bold]" in text


def test_clean_keeps_printable_unicode() -> None:
    assert clean("modèle ✓ 模型") == "modèle ✓ 模型"
    assert clean("a\u202eb") == "a\\u202eb"


def test_narrow_terminals_fold_model_and_strategy_under_the_test_name() -> None:
    text = render_terminal([row()], width=NARROW_BELOW - 1, color=False)
    assert "smollm2-135m cot" in text
    assert "tokens in/out" not in text
    wide = render_terminal([row()], width=NARROW_BELOW, color=False)
    assert "tokens in/out" in wide


def test_estimated_energy_is_prefixed_and_explained() -> None:
    rows = [row("t::a", estimated=True, meter="cpu-estimate"), row("t::b")]
    text = render_terminal(rows, width=160, color=False)
    assert "~0.02381" in text
    assert "~cpu-estimate" in text  # several meters: a meter column, estimates marked
    assert "~ estimated: joules from a model of power, not a sensor" in text


def test_header_line_says_meter_kind_device_and_baseline() -> None:
    assert render_header("nvml", "NVIDIA H200", ".energy/baseline.json", False) == (
        "energy: meter nvml (measured) on NVIDIA H200, baseline .energy/baseline.json"
    )
    assert render_header("cpu-estimate", "EPYC", None, True) == (
        "energy: meter cpu-estimate (estimated) on EPYC, no baseline"
    )


def test_header_info_is_printed_above_the_table() -> None:
    header = HeaderInfo("rapl", "Xeon", "b.json", False)
    text = render_terminal([row()], width=160, color=False, header=header)
    assert text.splitlines()[0] == "energy: meter rapl (measured) on Xeon, baseline b.json"


def test_no_rows_says_so() -> None:
    assert render_terminal([], width=80, color=False) == "no energy evaluations ran\n"


def test_short_names_drop_the_path_only_while_names_stay_unique() -> None:
    assert short_names(["a.py::test_x", "b.py::test_y"]) == ["test_x", "test_y"]
    assert short_names(["a.py::test_x", "b.py::test_x"]) == ["a.py::test_x", "b.py::test_x"]


def test_rows_are_sorted_by_test_id() -> None:
    text = render_terminal([row("t::b"), row("t::a")], width=160, color=False)
    assert [line.split()[1] for line in text.splitlines()[2:]] == ["a", "b"]
