"""Golden files for the markdown and terminal reports.

Regenerate after an intended change with ``PYTEST_ENERGY_REGEN_GOLDEN=1`` and
review the diff of ``tests/unit/golden/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import factories
from factories import make_result
from pytest_energy.metrics import EvalResult, QuestionRecord
from pytest_energy.outcome import Check, Outcome
from pytest_energy.report import Row
from pytest_energy.report.markdown import render_markdown
from pytest_energy.report.terminal import HeaderInfo, render_terminal

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("PYTEST_ENERGY_REGEN_GOLDEN") == "1"
SUBJECTS = ("anatomy", "astronomy", "college_physics")


def result(
    test_id: str,
    *,
    model: str = "smollm2-135m",
    strategy: str = "direct",
    correct: int = 6,
    questions: int = 9,
    out_tokens: int = 1,
    energy_j: float = 12.5,
    meter: str = "nvml",
    estimated: bool = False,
    device: str = "NVIDIA H200",
) -> EvalResult:
    records = tuple(
        QuestionRecord(
            subject=SUBJECTS[i % len(SUBJECTS)],
            gold="ABCD"[i % 4],
            predicted="ABCD"[i % 4] if i < correct else ("ABCD"[(i + 1) % 4] if i % 5 else None),
            input_tokens=120 + 7 * i,
            output_tokens=out_tokens + (i % 3),
        )
        for i in range(questions)
    )
    key = "cpu" if estimated else "gpu"
    return make_result(
        energy_j,
        records=records,
        prefill_share=0.3,
        duration_s=energy_j / 50,
        model=model,
        strategy=strategy,
        meter=meter,
        estimated=estimated,
        fingerprint={key: device},
        test_id=test_id,
    )


def baseline_check(metric: str, value: float, base: float, *, tolerance: float = 0.10) -> Check:
    return factories.baseline_check(
        metric, value / base - 1, base=base, tolerance=tolerance, statistic="single run"
    )


def budget_check(metric: str, value: float, limit: float) -> Check:
    return factories.budget_check(
        metric, value, limit, message=f"{metric} {value:g} vs budget {limit:g}"
    )


def passing_run() -> list[Row]:
    direct = result("tests/test_llm.py::test_direct", energy_j=4.2)
    cot = result(
        "tests/test_llm.py::test_cot",
        strategy="cot:max_tokens=256",
        correct=7,
        out_tokens=180,
        energy_j=61.0,
    )
    vote = result(
        "tests/test_llm.py::test_vote",
        strategy="vote:k=5",
        correct=7,
        out_tokens=900,
        energy_j=290.0,
    )
    return [
        (
            direct,
            Outcome(
                status="pass",
                baseline="compared",
                checks=(
                    budget_check("j_per_token", direct.j_per_token or 0, 0.01),
                    baseline_check("j_per_token", direct.j_per_token or 0, 0.0041),
                ),
            ),
        ),
        (
            cot,
            Outcome(
                status="pass",
                baseline="compared",
                checks=(
                    baseline_check(
                        "j_per_token", cot.j_per_token or 0, (cot.j_per_token or 0) * 1.25
                    ),
                    baseline_check("accuracy", cot.accuracy, cot.accuracy),
                ),
            ),
        ),
        (vote, Outcome(status="pass", baseline="compared")),
    ]


def failing_run() -> list[Row]:
    cot = result(
        "tests/test_llm.py::test_cot", strategy="cot", correct=5, out_tokens=200, energy_j=80.0
    )
    direct = result("tests/test_llm.py::test_direct", energy_j=4.2)
    return [
        (
            cot,
            Outcome(
                status="fail",
                baseline="compared",
                checks=(
                    budget_check("j_per_question", cot.j_per_question or 0, 5.0),
                    budget_check("accuracy", cot.accuracy, 0.6),
                    baseline_check(
                        "j_per_token", cot.j_per_token or 0, (cot.j_per_token or 0) / 1.3
                    ),
                ),
            ),
        ),
        (
            direct,
            Outcome(
                status="pass",
                baseline="compared",
                checks=(
                    baseline_check("j_per_token", direct.j_per_token or 0, direct.j_per_token or 0),
                ),
            ),
        ),
    ]


def accepted_run() -> list[Row]:
    reason = "bigger model on purpose, see #12"
    big = result(
        "tests/test_llm.py::test_big",
        model="Qwen/Qwen2.5-0.5B-Instruct",
        strategy="cot",
        correct=8,
        out_tokens=150,
        energy_j=150.0,
    )
    return [
        (
            big,
            Outcome(
                status="accepted",
                baseline="compared",
                accepted_reason=reason,
                checks=(
                    baseline_check(
                        "j_per_token", big.j_per_token or 0, (big.j_per_token or 0) / 2.0
                    ),
                ),
            ),
        )
    ]


def estimated_missing_run() -> list[Row]:
    new = result(
        "tests/test_cpu.py::test_new",
        meter="cpu-estimate",
        estimated=True,
        device="AMD EPYC 7B13",
        energy_j=95.0,
    )
    est = result(
        "tests/test_cpu.py::test_est",
        meter="cpu-estimate",
        estimated=True,
        device="AMD EPYC 7B13",
        strategy="cot",
        out_tokens=60,
        energy_j=400.0,
    )
    drift = result("tests/test_cpu.py::test_drift", energy_j=7.0)
    return [
        (
            new,
            Outcome(
                status="pass",
                baseline="missing",
                notes=("no baseline entry; run with --energy-update-baseline",),
            ),
        ),
        (est, Outcome(status="pass", baseline="estimated")),
        (
            drift,
            Outcome(
                status="pass",
                baseline="mismatch",
                notes=("driver differs: 550.54 (baseline) vs 560.35",),
            ),
        ),
    ]


def hostile_run() -> list[Row]:
    nasty = result(
        "tests/test_x.py::test_it[a|b`c`*d*_e_<script>alert(1)</script>\n| x | y |]",
        model="evil|model<img src=x onerror=alert(1)>",
        strategy="cot:max_tokens=8 @octocat [link](http://x) ![i](http://y)",
        meter="nvml\x1b[2J",
    )
    subject_records = tuple(
        QuestionRecord(
            subject="sub|ject<b>\n", gold=r.gold, predicted="`|`", input_tokens=10, output_tokens=2
        )
        for r in nasty.records[:2]
    )
    evil = EvalResult(
        model=nasty.model,
        strategy=nasty.strategy,
        meter=nasty.meter,
        estimated=False,
        records=nasty.records + subject_records,
        repeats=nasty.repeats,
        fingerprint={"gpu": "GPU</sub><script>"},
        test_id=nasty.test_id,
    )
    regression = baseline_check("j_per_token", evil.j_per_token or 0, (evil.j_per_token or 0) / 2)
    return [
        (
            evil,
            Outcome(
                status="accepted",
                baseline="compared",
                checks=(regression,),
                notes=("note with | pipe\nand </details>",),
                accepted_reason=(
                    "ok </details> <!-- | `x` --> see #1, org/repo#2 and GH-3 at "
                    "https://evil.example/a or www.example.com"
                ),
            ),
        )
    ]


SCENARIOS: dict[str, Callable[[], list[Row]]] = {
    "pass": passing_run,
    "fail": failing_run,
    "accepted": accepted_run,
    "estimated_missing": estimated_missing_run,
    "hostile": hostile_run,
}


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run with PYTEST_ENERGY_REGEN_GOLDEN=1")
    assert text == path.read_text(encoding="utf-8")


def markdown_of(rows: Sequence[Row], **kwargs: object) -> str:
    return render_markdown(rows, plugin_version="0.0.0-test", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_markdown_report_matches_golden(scenario: str) -> None:
    rows = SCENARIOS[scenario]()
    reason = rows[0][1].accepted_reason if scenario in ("accepted", "hostile") else None
    check_golden(f"report_{scenario}.md", markdown_of(rows, accepted_reason=reason))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_terminal_table_matches_golden(scenario: str) -> None:
    header = HeaderInfo(
        meter="nvml", device="NVIDIA H200", baseline_path=".energy/baseline.json", estimated=False
    )
    text = render_terminal(SCENARIOS[scenario](), width=160, color=False, header=header)
    check_golden(f"terminal_{scenario}.txt", text)


def test_coloured_terminal_table_matches_golden() -> None:
    check_golden(
        "terminal_fail_color.txt",
        render_terminal(failing_run(), width=120, color=True, header=None),
    )


def test_markdown_against_base_results_matches_golden() -> None:
    head = failing_run() + estimated_missing_run()[:1]
    base_cot = result(
        "tests/test_llm.py::test_cot",
        strategy="cot",
        correct=6,
        out_tokens=150,
        energy_j=55.0,
        device="NVIDIA A100",
    )
    base_old = result("tests/test_llm.py::test_removed", energy_j=3.0)
    base = [(base_cot, Outcome()), (head[1][0], Outcome()), (base_old, Outcome())]
    check_golden("report_vs_base.md", markdown_of(head, base_rows=base))


def test_truncated_markdown_keeps_verdict_and_table_and_matches_golden() -> None:
    rows = [row for row in passing_run() if row[0].strategy != "cot:max_tokens=256"]
    rows += failing_run()[:1]
    text = markdown_of(rows, max_chars=2500, plots=("energy-accuracy.png",))
    assert len(text) <= 2500
    assert "**Truncated** to 2500 characters" in text
    assert "| ❌ | tests/test\\_llm.py::test\\_cot |" in text
    check_golden("report_truncated.md", text)
