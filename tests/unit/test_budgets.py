from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_energy.budgets import Budgets, BudgetsFile, marker_budgets
from pytest_energy.errors import ConfigError
from pytest_energy.settings import Tolerance

EXAMPLE = """\
defaults: {tolerance: 10%, max_j_per_token: 0.05}
tests:
  - match: "tests/test_mmlu.py::test_strategy[cot]"
    max_j_per_question: 40
  - model: smollm2-135m
    strategy: "vote:*"
    min_accuracy: 0.2
"""
COT_ID = "tests/test_mmlu.py::test_strategy[cot]"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "energy-budgets.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> BudgetsFile:
    return BudgetsFile.load(write(tmp_path, text))


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


# -- selection -----------------------------------------------------------------


def test_defaults_apply_to_every_test(tmp_path: Path) -> None:
    budgets = load(tmp_path, EXAMPLE).budgets_for("tests/t.py::other", "gpt2", "direct")
    assert budgets == Budgets(max_j_per_token=0.05, tolerance=Tolerance(0.10))


def test_exact_test_id_with_brackets_matches_literally(tmp_path: Path) -> None:
    budgets = load(tmp_path, EXAMPLE).budgets_for(COT_ID, "gpt2", "cot")
    assert budgets.max_j_per_question == 40
    assert budgets.max_j_per_token == 0.05


def test_brackets_in_a_glob_are_a_character_class(tmp_path: Path) -> None:
    file = load(tmp_path, "tests:\n  - match: 'tests/t.py::test_x[*]'\n    max_j_per_token: 1\n")
    assert file.budgets_for("tests/t.py::test_x[cot]", "m", "cot").empty
    assert file.budgets_for("tests/t.py::test_x*", "m", "cot").max_j_per_token == 1


def test_glob_on_test_id_selects_a_whole_module(tmp_path: Path) -> None:
    file = load(tmp_path, "tests:\n  - match: 'tests/test_mmlu.py::*'\n    max_j_per_token: 2\n")
    assert file.budgets_for(COT_ID, "m", "cot").max_j_per_token == 2
    assert file.budgets_for("tests/test_other.py::test_a", "m", "cot").empty


def test_model_and_strategy_selectors_must_both_match(tmp_path: Path) -> None:
    file = load(tmp_path, EXAMPLE)
    assert file.budgets_for("t::a", "smollm2-135m", "vote:k=5").min_accuracy == 0.2
    assert file.budgets_for("t::a", "smollm2-135m", "cot").min_accuracy is None
    assert file.budgets_for("t::a", "gpt2", "vote:k=5").min_accuracy is None


def test_bare_strategy_name_selects_the_strategy_with_options(tmp_path: Path) -> None:
    file = load(tmp_path, "tests:\n  - strategy: cot\n    max_output_tokens: 256\n")
    assert file.budgets_for("t::a", "m", "cot:max_tokens=512").max_output_tokens == 256
    assert file.budgets_for("t::a", "m", "cot").max_output_tokens == 256
    assert file.budgets_for("t::a", "m", "direct").max_output_tokens is None


def test_later_entries_override_earlier_ones_and_defaults(tmp_path: Path) -> None:
    text = (
        "defaults: {max_j_per_token: 0.05, tolerance: 10%}\n"
        "tests:\n"
        "  - model: m\n    max_j_per_token: 0.1\n    tolerance: 20%\n"
        "  - strategy: cot\n    max_j_per_token: 0.2\n"
    )
    budgets = load(tmp_path, text).budgets_for("t::a", "m", "cot")
    assert budgets.max_j_per_token == 0.2
    assert budgets.tolerance == Tolerance(0.20)


def test_marker_overrides_the_file(tmp_path: Path) -> None:
    marker = {"max_j_per_token": 0.3, "tolerance": "25%", "min_accuracy": 0.5}
    budgets = load(tmp_path, EXAMPLE).budgets_for(COT_ID, "m", "cot", marker)
    assert budgets.max_j_per_token == 0.3
    assert budgets.max_j_per_question == 40
    assert budgets.min_accuracy == 0.5
    assert budgets.tolerance == Tolerance(0.25)


def test_tolerance_falls_back_to_the_option_when_nothing_sets_it() -> None:
    budgets = BudgetsFile().budgets_for("t::a", "m", "cot", {"max_j_per_token": 1.0})
    assert budgets.tolerance_or(Tolerance(0.15)) == Tolerance(0.15)
    assert Budgets(tolerance=Tolerance(0.3)).tolerance_or(Tolerance(0.15)) == Tolerance(0.3)


def test_empty_file_has_no_budgets(tmp_path: Path) -> None:
    assert load(tmp_path, "# nothing yet\n").budgets_for("t::a", "m", "cot").empty


def test_accuracy_accepts_a_percentage(tmp_path: Path) -> None:
    file = load(tmp_path, "defaults:\n  min_accuracy: '40%'\n")
    assert file.defaults.min_accuracy == pytest.approx(0.4)


# -- errors --------------------------------------------------------------------


def test_unknown_key_names_file_key_path_and_suggestion(tmp_path: Path) -> None:
    text = "tests:\n  - match: a\n  - model: m\n    min_acuracy: 0.2\n"
    message = load_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'energy-budgets.yaml'}: tests[1].min_acuracy: ")
    assert "did you mean 'min_accuracy'?" in message
    assert "allowed keys: match, model, strategy, max_j_per_token" in message


def test_unknown_top_level_key_is_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, "default: {max_j_per_token: 1}\n")
    assert "default: unknown key (did you mean 'defaults'?); allowed keys: defaults, tests" in (
        message
    )


def test_selector_keys_are_not_allowed_in_defaults(tmp_path: Path) -> None:
    message = load_error(tmp_path, "defaults: {model: m}\n")
    assert "defaults.model: unknown key" in message


TOLERANCE_FIX = "give a percentage such as '10%' (a number below 1 is a fraction: 0.1 is 10%)"
ACCURACY_FIX = "give a fraction between 0 and 1 (0.4 means 40%) or a percentage such as '40%'"
JOULES_FIX = "give a positive number of joules, e.g. 0.05"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "defaults: {max_j_per_token: -1}\n",
            f"defaults.max_j_per_token: must be positive, got -1 "
            f"(no evaluation can stay within it); {JOULES_FIX}",
        ),
        (
            "defaults: {max_j_per_token: 0}\n",
            "defaults.max_j_per_token: must be positive, got 0 (no evaluation can stay within it)",
        ),
        (
            "defaults: {max_j_per_token: 0.5 J}\n",
            f"defaults.max_j_per_token: must be a number, got '0.5 J'; {JOULES_FIX}",
        ),
        ("defaults: {max_j_per_question: true}\n", "max_j_per_question: must be a number"),
        ("defaults: {max_output_tokens: .nan}\n", "max_output_tokens: must be a finite number"),
        ("defaults: {max_output_tokens: .inf}\n", "max_output_tokens: must be a finite number"),
        (
            "defaults: {min_accuracy: 40}\n",
            "min_accuracy: invalid accuracy 40 (above 1: a plain number is a fraction, "
            f"so 40 means 4000%); {ACCURACY_FIX}",
        ),
        ("defaults: {min_accuracy: 140%}\n", "invalid accuracy '140%' (above 100%); give"),
        ("defaults: {min_accuracy: -0.1}\n", "invalid accuracy -0.1 (negative: an accuracy"),
        (
            "defaults: {min_accuracy: '0.4'}\n",
            "invalid accuracy '0.4' (a quoted number: leave out the quotes for a fraction, "
            "or add '%')",
        ),
        ("defaults: {min_accuracy: forty}\n", "'forty' (not a number or a percentage); give"),
        (
            "defaults: {tolerance: ten}\n",
            f"tolerance: invalid tolerance 'ten' (not a number or a percentage); {TOLERANCE_FIX}",
        ),
        ("defaults: {tolerance: [10%]}\n", "invalid tolerance ['10%'] (not a number or a"),
        ("defaults: {tolerance: 2000%}\n", "'2000%' (too large: it must be below 1000%)"),
        ("tests:\n  - match: ''\n", "tests[0].match: must be a non-empty string"),
    ],
)
def test_bad_values_are_rejected_with_the_key_path_and_why(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = load_error(tmp_path, text)
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("tolerance", ["-5%", "'-5'", "-0.05", "-5"])
def test_negative_tolerance_says_why_it_is_invalid(tmp_path: Path, tolerance: str) -> None:
    message = load_error(tmp_path, f"tests:\n  - model: m\n    tolerance: {tolerance}\n")
    shown = repr(yaml.safe_load(tolerance))
    assert message == (
        f"{tmp_path / 'energy-budgets.yaml'}: tests[0].tolerance: invalid tolerance {shown} "
        "(negative: a tolerance is the regression allowed over the baseline, 0% or more); "
        f"{TOLERANCE_FIX}"
    )


def test_valid_edge_values_are_accepted(tmp_path: Path) -> None:
    text = (
        "defaults: {tolerance: 0%, min_accuracy: 100%}\ntests:\n  - model: m\n    min_accuracy: 0\n"
    )
    file = load(tmp_path, text)
    assert file.defaults == Budgets(min_accuracy=1.0, tolerance=Tolerance(0.0))
    assert file.rules[0].budgets.min_accuracy == 0.0


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, "defaults:\n  max_j_per_token: [0.05\n")
    assert message.startswith(f"{tmp_path / 'energy-budgets.yaml'}: not valid YAML (")
    assert "line 3" in message
    assert message.endswith("fix the syntax")
    assert "\n" not in message


def test_root_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, "- max_j_per_token: 1\n")
    assert "the budgets file must be a mapping with 'defaults' and/or 'tests', got a list" in (
        message
    )


def test_tests_must_be_a_list_of_mappings(tmp_path: Path) -> None:
    assert "tests: must be a list" in load_error(tmp_path, "tests: {match: a}\n")
    assert "tests[0]: must be a mapping, got the text 'a'" in load_error(tmp_path, "tests: [a]\n")


def test_entry_without_a_selector_is_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, "tests:\n  - max_j_per_token: 1\n")
    assert "tests[0]: selects no tests; add at least one of match, model, strategy" in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"budgets file .*absent\.yaml does not exist"):
        BudgetsFile.load(tmp_path / "absent.yaml")


def test_marker_errors_name_the_test() -> None:
    with pytest.raises(ConfigError) as info:
        marker_budgets("tests/t.py::test_a", {"max_j_per_tokn": 0.1})
    assert str(info.value).startswith(
        "tests/t.py::test_a: @pytest.mark.energy: max_j_per_tokn: unknown key "
        "(did you mean 'max_j_per_token'?)"
    )


def test_marker_values_use_the_file_rules() -> None:
    with pytest.raises(ConfigError, match=r"test_a: @pytest.mark.energy: min_accuracy: invalid"):
        marker_budgets("tests/t.py::test_a", {"min_accuracy": 1.5})
    with pytest.raises(ConfigError, match="match: unknown key"):
        marker_budgets("tests/t.py::test_a", {"match": "*"})


def test_positional_marker_arguments_name_no_budget() -> None:
    with pytest.raises(ConfigError) as info:
        marker_budgets("tests/t.py::test_a", {}, (0.5,))
    assert str(info.value) == (
        "tests/t.py::test_a: @pytest.mark.energy: positional argument 0.5 names no budget; "
        "give budgets as keyword arguments, e.g. @pytest.mark.energy(max_j_per_token=0.5); "
        "allowed keys: max_j_per_token, max_j_per_question, min_accuracy, max_output_tokens, "
        "tolerance"
    )


def test_several_positional_marker_arguments_are_all_named() -> None:
    with pytest.raises(
        ConfigError,
        match=r"positional arguments 'cot', 2 name no budget; .*"
        r"e\.g\. @pytest\.mark\.energy\(max_j_per_token=0\.05\)",
    ):
        marker_budgets("tests/t.py::test_a", {"min_accuracy": 0.5}, ("cot", 2))


def test_marker_with_keywords_only_is_valid() -> None:
    assert marker_budgets("tests/t.py::test_a", {"max_j_per_token": 0.5}, ()) == Budgets(
        max_j_per_token=0.5
    )
    assert marker_budgets("tests/t.py::test_a", {}).empty
