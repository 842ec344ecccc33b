"""The terminal table: a pure string, deterministic, safe for any test id.

The compact layout (under 120 columns) has golden files at 80 columns, and the
wide one at 160; regenerate them after an intended change with
``PYTEST_ENERGY_REGEN_GOLDEN=1`` and review the diff of ``tests/unit/golden/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from rich.cells import cell_len

from factories import baseline_check, budget_check, make_row, outcome
from pytest_energy.outcome import Outcome
from pytest_energy.report import Row
from pytest_energy.report.terminal import (
    COMPACT_BELOW,
    NARROW_BELOW,
    HeaderInfo,
    render_header,
    render_terminal,
)
from pytest_energy.report.terminal_text import clean, short_names, shorten, wrap_words

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("PYTEST_ENERGY_REGEN_GOLDEN") == "1"
MMLU = "tests/test_mmlu_energy.py::test_strategy_operating_point"
SEPARATORS = " _/.:[],-"
H100 = HeaderInfo("nvml", "NVIDIA H100 80GB HBM3", ".energy/baseline.json", False)


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


# -- the compact layout, below 120 columns ---------------------------------------


def ci_run() -> list[Row]:
    """A run as a CI log shows it: parametrized strategies, a failed regression with
    several changes and a budget breach, an accepted one, a test without a baseline
    entry and an estimated one."""
    common = {"questions": 20, "input_tokens": 96}
    return [
        make_row(
            (402.0, 409.0, 405.0),
            correct=8,
            output_tokens=505,
            strategy="vote:k=5",
            test_id=f"{MMLU}[vote:k=5]",
            outcome=outcome(
                baseline_check(change=0.312),
                baseline_check("j_per_question", change=0.405),
                baseline_check("accuracy", change=-0.2),
                budget_check("j_per_question", 20.3, 15.0),
            ),
            **common,
        ),
        make_row(
            (131.0, 129.5, 130.2),
            correct=11,
            output_tokens=180,
            strategy="cot:max_tokens=256",
            test_id=f"{MMLU}[cot:max_tokens=256]",
            outcome=outcome(baseline_check(change=-0.041)),
            **common,
        ),
        make_row(
            (6.1, 6.0, 6.2),
            correct=9,
            output_tokens=1,
            strategy="direct",
            test_id=f"{MMLU}[direct]",
            outcome=outcome(baseline_check(change=-0.22)),
            **common,
        ),
        make_row(
            (88.0, 87.1, 88.4),
            correct=14,
            output_tokens=64,
            model="Qwen/Qwen2.5-0.5B-Instruct",
            strategy="budget:max_tokens=64",
            test_id="tests/test_budgets.py::test_budget_caps_reasoning_tokens",
            outcome=outcome(
                baseline_check(change=0.18),
                status="accepted",
                accepted_reason="longer answers on purpose, see #41",
            ),
            **common,
        ),
        make_row(
            (51.0, 50.2, 50.7),
            correct=10,
            output_tokens=40,
            model="HuggingFaceTB/SmolLM2-360M-Instruct",
            test_id="tests/test_models.py::test_new_model_answers_anatomy",
            outcome=outcome(baseline="missing"),
            **common,
        ),
        make_row(
            (940.0, 955.0, 948.0),
            correct=10,
            output_tokens=40,
            meter="cpu-estimate",
            estimated=True,
            fingerprint={"cpu": "AMD EPYC 7B13"},
            test_id="tests/test_cpu.py::test_cpu_fallback_runs_without_gpu",
            outcome=outcome(baseline="estimated"),
            **common,
        ),
    ]


def odd_run() -> list[Row]:
    """Rows that push the layout: wide characters, escapes, long texts everywhere."""
    return [
        *ci_run(),
        row("tests/t.py::test_模型_答案_很长的名字_" + "x" * 40 + "[参数-1]"),
        row("t::x[\x1b[2J\n" + "y" * 150 + "]", meter="nvml\x1b]0;title\x07"),
        make_row(
            test_id="tests/t.py::test_tokens",
            model="an-organisation-with-a-long-name/a-model-with-an-even-longer-name-v2",
            strategy="vote:k=9,temperature=0.7,max_tokens=2048",
            outcome=outcome(
                baseline_check("j_per_output_token", change=0.5),
                baseline_check("output_tokens_per_question", change=0.9),
            ),
        ),
        make_row(test_id="tests/t.py::test_drift", outcome=outcome(baseline="mismatch")),
    ]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run with PYTEST_ENERGY_REGEN_GOLDEN=1")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("width", [80, 160])
def test_ci_run_matches_golden(width: int) -> None:
    text = render_terminal(ci_run(), width=width, color=False, header=H100)
    check_golden(f"terminal_{width}.txt", text)


@pytest.mark.parametrize("width", [80, 100, 119])
def test_compact_lines_never_exceed_the_width(width: int) -> None:
    text = render_terminal(ci_run(), width=width, color=False, header=H100)
    assert max(len(line) for line in text.splitlines()) <= width


@pytest.mark.parametrize("width", range(30, COMPACT_BELOW))
def test_no_line_is_wider_than_any_compact_width(width: int) -> None:
    for color in (False, True):
        text = render_terminal(odd_run(), width=width, color=color, header=H100)
        plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
        assert max(cell_len(line) for line in plain.splitlines()) <= width


def test_compact_layout_starts_below_120_columns() -> None:
    compact = render_terminal(ci_run(), width=COMPACT_BELOW - 1, color=False)
    table = render_terminal(ci_run(), width=COMPACT_BELOW, color=False)
    assert not compact.splitlines()[0].startswith("verdict")
    assert table.splitlines()[0].startswith("verdict")


def test_compact_rows_take_a_line_with_model_and_strategy_under_it() -> None:
    lines = render_terminal(ci_run(), width=80, color=False, header=H100).splitlines()
    first = next(i for i, line in enumerate(lines) if "[direct]" in line)
    assert lines[first].split() == [
        "PASS",
        "\N{HORIZONTAL ELLIPSIS}point[direct]",
        "45.0%",
        "0.003144",
        "0.3050",
        "J/token",
        "-22.0%",
    ]
    assert lines[first + 1] == " " * 10 + "smollm2-135m / direct"


def test_further_changes_go_under_the_change_column() -> None:
    lines = render_terminal(ci_run(), width=80, color=False).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("FAIL"))
    column = lines[first].index("J/token +31.2% !")
    assert lines[first + 1].index("J/question +40.5% !") == column
    assert lines[first + 2].index("accuracy -20.0% !") == column
    assert lines[first + 2][:column].strip() == ""


def test_failed_comparisons_come_before_the_headline() -> None:
    failing = outcome(baseline_check(change=0.01), baseline_check("accuracy", change=-0.3))
    lines = render_terminal([row(outcome=failing)], width=80, color=False).splitlines()
    assert lines[2].endswith("accuracy -30.0% !")
    assert lines[3].endswith("J/token +1.0%")


def test_a_change_wider_than_its_column_wraps_with_an_indent() -> None:
    checks = [baseline_check(m, change=0.145) for m in ("j_per_token", "j_per_output_token")]
    failing = row(f"{MMLU}[cot:max_tokens=48]", outcome=outcome(*checks))
    lines = render_terminal([failing], width=80, color=False).splitlines()
    column = lines[2].index("J/token +14.5% !")
    assert [line[column:] for line in lines[3:5]] == ["J/output token", "  +14.5% !"]


def test_long_prose_in_the_change_column_wraps_at_spaces() -> None:
    rows = [row("t::" + "test_a_long_name_" * 4, outcome=outcome(baseline="estimated"))]
    lines = render_terminal(rows, width=72, color=False).splitlines()
    assert lines[2].endswith("  estimated, not")
    assert lines[3].endswith("  compared")


def test_compact_estimates_keep_their_marker_and_name_their_meter() -> None:
    text = render_terminal(ci_run(), width=80, color=False, header=H100)
    assert "~0.3485" in text
    assert "~47.40" in text
    assert "smollm2-135m / cot, meter ~cpu-estimate" in text
    assert "smollm2-135m / direct, meter" not in text  # the header names nvml
    assert "~ estimated: joules from a model of power, not a sensor" in text


def test_compact_colours_verdicts_and_failed_changes() -> None:
    text = render_terminal(ci_run(), width=80, color=True)
    assert "\x1b[1;31mFAIL\x1b[0m" in text
    assert "\x1b[32mPASS\x1b[0m" in text
    assert "\x1b[33mACCEPTED\x1b[0m" in text
    assert "\x1b[31mJ/token +31.2% !\x1b[0m" in text
    assert "\x1b[32mJ/token -22.0%\x1b[0m" in text  # an improvement
    plain = render_terminal(ci_run(), width=80, color=False)
    assert re.sub(r"\x1b\[[0-9;]*m", "", text) == plain


def test_compact_failure_lines_keep_the_full_id_and_break_before_the_checks() -> None:
    lines = render_terminal(ci_run(), width=80, color=False).splitlines()
    assert lines[-2:] == [
        f"regression: {MMLU}[vote:k=5]:",
        "  J/token +31.2%, J/question +40.5%, accuracy -20.0%",
    ]
    short = render_terminal([row(outcome=outcome(baseline_check()))], width=80, color=False)
    assert short.splitlines()[-1] == "regression: tests/test_a.py::test_a: J/token +30.0%"


def test_compact_header_line_wraps_with_an_indent() -> None:
    lines = render_terminal(ci_run(), width=80, color=False, header=H100).splitlines()
    assert lines[:2] == [
        "energy: meter nvml (measured) on NVIDIA H100 80GB HBM3, baseline",
        "  .energy/baseline.json",
    ]


def test_very_narrow_terminals_put_the_changes_under_the_row() -> None:
    lines = render_terminal(ci_run(), width=64, color=False, header=H100).splitlines()
    assert "vs base" not in lines[2]
    first = next(i for i, line in enumerate(lines) if line.startswith("FAIL"))
    assert lines[first + 1 : first + 5] == [
        "          smollm2-135m / vote:k=5",
        "          vs base: J/token +31.2% !",
        "                   J/question +40.5% !",
        "                   accuracy -20.0% !",
    ]


def test_wide_terminals_fold_the_table_when_its_columns_do_not_fit() -> None:
    text = render_terminal(ci_run(), width=NARROW_BELOW, color=False)
    assert "tokens in/out" not in text  # long names: the folded table, nothing cut
    assert "test_strategy_operating_point[cot:max_tokens=256]" in text
    assert "tokens in/out" in render_terminal([row()], width=NARROW_BELOW, color=False)


@pytest.mark.parametrize(
    ("name", "width", "short"),
    [
        ("test_strategy_operating_point[vote:k=5]", 22, "test_…point[vote:k=5]"),
        ("test_strategy_operating_point[vote:k=5]", 17, "…point[vote:k=5]"),
        ("test_strategy_operating_point[vote:k=5]", 12, "…[vote:k=5]"),
        ("test_strategy_operating_point[cot:max_tokens=256]", 25, "…[cot:max_tokens=256]"),
        ("test_strategy_operating_point[cot:max_tokens=256]", 20, "…[cot:…tokens=256]"),
        ("test_strategy_operating_point[cot:max_tokens=256]", 17, "…max_tokens=256]"),
        ("test_strategy_energy[vote:k=3,max_tokens=32]", 24, "…[vote:k=3,…tokens=32]"),
        ("test_budget_caps_reasoning_tokens", 33, "test_budget_caps_reasoning_tokens"),
        ("test_budget_caps_reasoning_tokens", 25, "…caps_reasoning_tokens"),
        ("test_budget_caps_reasoning_tokens", 17, "…reasoning_tokens"),
        ("test_cpu_fallback_runs_without_gpu", 25, "test_cpu_fallback_…gpu"),
        ("test_x[" + "y" * 30 + "]", 12, "…yyyyyyyyyy]"),
        ("test_模型_答案_end", 12, "…答案_end"),
    ],
)
def test_shorten_keeps_whole_words_and_the_distinguishing_end(
    name: str, width: int, short: str
) -> None:
    assert shorten(name, width) == short
    assert cell_len(short) <= width


@pytest.mark.parametrize("width", range(8, 60))
def test_shortened_names_are_whole_words_in_order(width: int) -> None:
    ids = [r.test_id.rpartition("::")[2] for r, _ in ci_run()]
    ids.append("test_strategy_energy[route:candidates=a/direct+b/cot:max_tokens=48,calibration=16]")
    for name in ids:
        short = shorten(name, width)
        assert cell_len(short) <= width
        if short == name:
            continue
        pieces = short.split("\N{HORIZONTAL ELLIPSIS}")
        at = 0
        for n, piece in enumerate(pieces):
            found = name.find(piece, at) if n else 0
            assert found >= 0
            assert name.startswith(piece, found)
            end = found + len(piece)
            if width >= 16:  # wide enough for every last word: none is cut
                if n < len(pieces) - 1 and piece:
                    assert piece[-1] in SEPARATORS or name[end] in SEPARATORS
                if n and piece:
                    assert piece[0] in SEPARATORS or name[found - 1] in SEPARATORS
            at = end
        assert name.endswith(pieces[-1])


def test_wrap_words_breaks_at_spaces_and_indents_later_lines() -> None:
    assert wrap_words("regression: a very long line", 12) == [
        "regression:",
        "  a very",
        "  long line",
    ]
    assert wrap_words("abcdefghij", 4, indent=1) == ["abcd", " efg", " hij"]
    assert wrap_words("m / route:a=1,b=x/direct+x/cot", 14, indent=0, breaks=",+/") == [
        "m /",
        "route:a=1,b=x/",
        "direct+x/cot",
    ]


def test_a_long_strategy_wraps_at_its_separators_under_the_test_name() -> None:
    strategy = "route:calibration=16,candidates=smollm2-135m/direct+smollm2-135m/cot:max_tokens=48"
    lines = render_terminal([make_row(strategy=strategy)], width=80, color=False).splitlines()
    assert lines[3:] == [
        "      smollm2-135m /",
        "      route:calibration=16,candidates=smollm2-135m/direct+smollm2-135m/",
        "      cot:max_tokens=48",
    ]
