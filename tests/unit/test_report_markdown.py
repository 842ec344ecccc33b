"""The markdown report: escaping, verdict, comparison with a base, truncation."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from markdown_it import MarkdownIt

from factories import baseline_check, budget_check, make_row, outcome
from pytest_energy.outcome import Check, Outcome
from pytest_energy.report import Row
from pytest_energy.report.escape import escape_md
from pytest_energy.report.markdown import MARKER, render_markdown


def row(
    test_id: str = "tests/test_a.py::test_a",
    *,
    energy_j: float = 10.0,
    correct: int = 3,
    questions: int = 4,
    fingerprint: dict[str, str] | None = None,
    **kwargs: Any,
) -> Row:
    kwargs.setdefault("strategy", "direct")
    return make_row(
        energy_j,
        questions=questions,
        correct=correct,
        input_tokens=100,
        output_tokens=5,
        prefill_share=0.3,
        fingerprint=fingerprint or {"gpu": "H200"},
        test_id=test_id,
        **kwargs,
    )


def regression(change: float = 0.3) -> Check:
    return baseline_check(change=change, message="regressed")


def html_of(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def test_first_line_is_the_sticky_comment_marker() -> None:
    assert render_markdown([row()]).splitlines()[0] == MARKER == "<!-- pytest-energy-report -->"


@pytest.mark.parametrize(
    "hostile",
    [
        "a|b",
        "x\ny",
        "<script>alert(1)</script>",
        "`code`",
        "*em* _em_",
        "[l](http://e.com)",
        "![i](x.png)",
        "&lt;",
        "a\\|b",
        "~~s~~",
        "\u202egnp.exe",
        "</details><!--",
    ],
)
def test_escaped_text_renders_as_the_same_text_in_one_table_cell(hostile: str) -> None:
    markdown = f"| h |\n|---|\n| {escape_md(hostile)} |\n"
    html = html_of(markdown)
    cell = re.search(r"<td>(.*)</td>", html, re.S)
    assert cell is not None
    assert html.count("<td>") == 1
    expected = hostile.replace("\n", " ").replace("\u202e", "")
    expected = expected.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Word joiners are invisible; they keep references and URLs from going live.
    assert cell.group(1).replace("\N{WORD JOINER}", "").strip() == expected.strip()


def test_mentions_in_test_ids_do_not_notify_anyone() -> None:
    assert "@octocat" not in escape_md("test_x[@octocat]")
    assert escape_md("@octocat").replace("\N{WORD JOINER}", "") == "@octocat"


# What GitHub turns into links or cross-references in plain comment text: bare URLs,
# www. autolinks, #1 / org/repo#2 / GH-12 issue references, @mentions (not the
# "#124" inside the entity &#124;, which is ours).
LIVE_REFERENCE = re.compile(r"://|www\.|(?<!&)#\d|GH-\d|@\w", re.IGNORECASE)


@pytest.mark.parametrize(
    "text",
    [
        "test_x[https://evil.example/a]",
        "test_x[http://x]",
        "ftp://files.example.org",
        "www.example.com",
        "WWW.Example.com/path",
        "fixes #1",
        "org/repo#2",
        "see GH-12 and gh-7",
        "user@a5c3785ed8d6a35868bc169f07e40e889087fd2e",
        "mail x@y.com",
        "GH-\u202e12 www\u202e.x.org #\u202e3",
    ],
)
def test_references_and_urls_are_not_live_but_read_the_same(text: str) -> None:
    assert LIVE_REFERENCE.search(text.replace("\u202e", ""))
    escaped = escape_md(text)
    assert LIVE_REFERENCE.search(escaped) is None, escaped
    readable = escaped.replace("\N{WORD JOINER}", "").replace("\\", "")
    assert readable == text.replace("\u202e", "")


def test_text_that_github_would_not_link_gets_no_joiner() -> None:
    for text in ("gh-pages", "www", "https:/x", "a:b//c", "GH-x", "sha a5c3785ed8d6"):
        assert escape_md(text) == text


def test_references_in_test_ids_and_models_stay_plain_text_in_the_report() -> None:
    test_id = "tests/t.py::test_x[https://evil.example/a www.example.com #1 org/repo#2 GH-12]"
    text = render_markdown([row(test_id, model="org/model#3")])
    assert "evil.example/a" in text
    assert LIVE_REFERENCE.search(text) is None


def test_hostile_names_keep_every_table_row_at_the_header_width() -> None:
    hostile = row("t::x[|a|b|\n| c |]", model="m|<b>x</b>", strategy="cot`|`")
    html = html_of(render_markdown([hostile, row()]))
    main = html.split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", main, re.S)
    assert len(rows) == 3
    assert {len(re.findall(r"<t[hd]", r)) for r in rows} == {10}
    assert "<b>" not in html


def test_a_passing_run_says_pass_with_the_number_of_tests() -> None:
    text = render_markdown([row(), row("t::b")])
    assert "**Pass**: 2 tests within budgets and baseline tolerance" in text


def test_failures_are_counted_by_kind_in_the_verdict() -> None:
    failing = outcome(regression(), budget_check("j_per_question", 3.0, 2.0, message="over"))
    text = render_markdown([row(outcome=failing), row("t::b")])
    assert "**1 regression, 1 budget breach** in 1 of 2 tests" in text
    assert "J/question 3.000 &gt; 2.000 \N{CROSS MARK}" in text


def test_an_accepted_run_prints_the_reason() -> None:
    accepted = Outcome(status="accepted", baseline="compared", checks=(regression(),))
    text = render_markdown([row(outcome=accepted)], accepted_reason="bigger model, see #12")
    assert "**Accepted**: 1 regression in 1 of 1 test reported without failing" in text
    assert "Reason: bigger model, see #\N{WORD JOINER}12" in text


def test_a_very_long_accept_reason_is_cut_in_the_verdict() -> None:
    accepted = Outcome(status="accepted", baseline="compared", checks=(regression(),))
    text = render_markdown([row(outcome=accepted)], accepted_reason="x" * 5000)
    assert "x" * 500 + "\N{HORIZONTAL ELLIPSIS}" in text
    assert "x" * 501 not in text


def test_estimated_energy_is_marked_and_explained() -> None:
    text = render_markdown([row(estimated=True, outcome=Outcome(baseline="estimated"))])
    assert "| ~0.02381 | ~2.500 |" in text  # 10 J, 4 questions of 100 + 5 tokens
    assert "~ Estimated energy (meter nvml)" in text
    assert "estimated, not compared" in text


def test_missing_baselines_tell_how_to_record_one() -> None:
    text = render_markdown([row(outcome=Outcome(baseline="missing"))])
    assert "No baseline yet for 1 test (tests/test\\_a.py::test\\_a)" in text
    assert "--energy-update-baseline" in text


def test_change_against_base_rows_uses_the_base_figures() -> None:
    head = [row(energy_j=13.0), row("t::new")]
    base = [row(energy_j=10.0, correct=4), row("t::gone")]
    text = render_markdown(head, base_rows=base)
    assert "J/token +30.0%<br>J/question +30.0%<br>accuracy -25.0 pt" in text
    assert "| new test |" in text
    assert "Not run here but in the base: t::gone." in text


def test_estimated_and_measured_results_are_not_compared_with_a_base() -> None:
    text = render_markdown([row(estimated=True)], base_rows=[row()])
    assert "not comparable (estimated vs measured)" in text


def test_fingerprint_drift_against_base_names_the_field() -> None:
    text = render_markdown(
        [row(fingerprint={"gpu": "H200", "driver": "560"})],
        base_rows=[row(fingerprint={"gpu": "H200", "driver": "550"})],
    )
    assert "fingerprint differs from base in driver." in text


def test_pareto_optimal_strategies_are_starred() -> None:
    rows = [
        row("t::direct", strategy="direct", energy_j=1.0, correct=2),
        row("t::cot", strategy="cot", energy_j=8.0, correct=4),
        row("t::vote", strategy="vote:k=5", energy_j=20.0, correct=3),
    ]
    text = render_markdown(rows)
    assert "| smollm2-135m | direct | 50.0% | 0.2500 | \N{BLACK STAR} yes |" in text
    assert "| smollm2-135m | cot | 100.0% | 2.000 | \N{BLACK STAR} yes |" in text
    assert "| smollm2-135m | vote:k=5 | 75.0% | 5.000 | no |" in text


def test_plot_links_are_url_encoded() -> None:
    text = render_markdown([row(), row("t::b")], plots=("my plot (1).png",))
    assert "![energy plot](my%20plot%20%281%29.png)" in text


def test_truncation_drops_details_first_and_says_so() -> None:
    rows = [row(f"t::test_{i}", questions=40) for i in range(5)]
    full = render_markdown(rows)
    limit = full.index("<details>") + 300
    text = render_markdown(rows, max_chars=limit)
    assert len(text) <= limit
    assert "<details>" not in text
    assert "left out per-question details" in text
    assert text.count("| \N{WHITE HEAVY CHECK MARK} | t::test\\_") == 5


def test_truncation_cuts_table_rows_last_and_counts_them() -> None:
    rows = [row(f"t::test_{i:03d}") for i in range(200)]
    text = render_markdown(rows, max_chars=5000)
    assert len(text) <= 5000
    assert text.startswith(MARKER)
    assert "**Pass**: 200 tests" in text
    kept = text.count("| \N{WHITE HEAVY CHECK MARK} | t::test\\_")
    assert 0 < kept < 200
    assert f"{200 - kept} rows of the main table" in text


def test_no_rows_still_gives_a_report_with_the_marker() -> None:
    text = render_markdown([])
    assert text.startswith(MARKER)
    assert "No energy evaluations ran." in text


def test_rows_are_sorted_so_input_order_does_not_matter() -> None:
    rows = [row("t::b"), row("t::a"), row("t::c")]
    assert render_markdown(rows) == render_markdown(list(reversed(rows)))


def test_a_run_with_failures_and_acceptances_counts_both() -> None:
    failing = Outcome(status="fail", baseline="compared", checks=(regression(),))
    accepted = Outcome(status="accepted", baseline="compared", checks=(regression(),))
    text = render_markdown(
        [row("t::a", outcome=failing), row("t::b", outcome=accepted)], accepted_reason="known"
    )
    assert "**2 regressions** in 1 of 2 tests; 1 accepted. Reason: known" in text


@pytest.mark.parametrize("baseline", ["compared", "noisy", "mismatch"])
def test_a_prompt_change_is_named_whether_or_not_energy_was_compared(baseline: str) -> None:
    changed = replace(
        outcome(regression(), baseline=baseline),  # type: ignore[arg-type]
        prompt_change="shots 0 -> 5; input tokens per question 148 -> 772",
    )
    markdown = render_markdown([row(outcome=changed)])
    assert "prompt changed: " + escape_md(changed.prompt_change or "") in markdown


def test_the_strategy_cells_name_a_prompt_other_than_the_default() -> None:
    prompted = row(strategy="direct", prompt={"name": "five-shot"})
    markdown = render_markdown([row(strategy="direct", prompt={"name": "default"}), prompted])
    # The results table and the Pareto table, one cell each.
    assert markdown.count("| direct / prompt five-shot |") == 2
    assert markdown.count("| direct |") == 2
