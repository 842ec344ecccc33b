"""Controlled reasoning through a real llama-cpp-python server: ``pytest-energy calibrate``
fits the served model's operating curve against the server, and ``cot:budget_j`` then
gives each question the reasoning tokens that curve affords, forcing an answer when
they run out. llama-cpp-python keeps one computed sequence, which the next question's
request replaces, so a forced answer (a request of its own) computes the prompt and
the reasoning again: the allowance pays for that second prefill.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from factories import run_calibrate
from pytest_energy.backends.tokens import local_tokenizer
from pytest_energy.curves import CurveStore, forced_answer_energy_j, max_tokens_for_budget
from pytest_energy.metrics import LETTERS
from pytest_energy.prompts import FORCED_ANSWER_CUE

RunEnergy = Callable[..., pytest.RunResult]
ALIAS = "smollm2-135m"
CAP = 24  # max_tokens of both strategies
AFFORDED = 6  # reasoning tokens the budget buys at a typical prompt length
TYPICAL_IN = 150  # the chain-of-thought prompts of these questions: 114 to 165 tokens
SUITE = """
URL = {url!r}


def test_budgeted(energy_eval):
    energy_eval(URL, "cot:budget_j={budget_j:.6g},max_tokens={cap}", n=4, subjects="astronomy")


def test_unbounded(energy_eval):
    energy_eval(URL, "cot:max_tokens={cap}", n=4, subjects="astronomy")
"""


def test_budget_j_through_the_server_follows_the_curve_calibrated_against_it(
    pytester: pytest.Pytester,
    run_energy: RunEnergy,
    usage_proxy: tuple[str, Any],
    llama_server: Any,
    mmlu_source: Path,
) -> None:
    url, proxy = usage_proxy
    label = f"{url}#{ALIAS}"
    curve_file = pytester.path / "curve.json"
    pid = llama_server.process.pid
    printed = run_calibrate(
        url, "in=16,64,160;out=1,12", mmlu_source, curve_file, "--server-pid", str(pid)
    )
    assert f"meter cpu-estimate (server pid {pid})" in printed
    curve = CurveStore.load(curve_file).find(label)
    # Joules grow with both lengths on a fit worth budgeting with.
    assert curve.energy_j(160, 12) > curve.energy_j(16, 12) > curve.energy_j(16, 1) > 0
    # The forced answer: its cue and one letter.
    tokenizer = local_tokenizer(ALIAS, None)
    reserve = len(tokenizer(FORCED_ANSWER_CUE, add_special_tokens=False)["input_ids"]) + 1
    budget_j = forced_answer_energy_j(curve, TYPICAL_IN, AFFORDED, reserve, recompute=True)
    pytester.makepyfile(test_budget=SUITE.format(url=url, budget_j=budget_j, cap=CAP))
    before = dict(proxy.totals)

    result = run_energy(
        "--energy-repeats=1",
        "--energy-json=out.json",
        "-o",
        f"energy_curve={curve_file}",
        "-o",
        f"energy_server_pid={llama_server.process.pid}",
        "--energy-meter=cpu-estimate",
    )

    result.assert_outcomes(passed=2)
    document = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    rows = {r["test_id"].rpartition("::")[2]: r for r in document["results"]}
    budgeted, unbounded = rows["test_budgeted"], rows["test_unbounded"]
    budget = budgeted["details"]["budget"]
    assert budget["curve_model"] == label
    assert budget["budget_j"] == pytest.approx(budget_j, rel=1e-5)
    budget_j = budget["budget_j"]  # as the strategy spec gave it: 6 significant digits
    for record, question in zip(budgeted["records"], budget["questions"], strict=True):
        # Each allowance is what the curve affords this question's prompt, and is kept.
        allowed = max_tokens_for_budget(
            curve, record["input_tokens"], budget_j, cap=CAP, reserve=reserve, recompute=True
        )
        assert question["allowed_tokens"] == allowed
        assert record["output_tokens"] <= allowed + reserve
        assert record["predicted"] in LETTERS  # a forced answer, never none
        if allowed > 0:  # else the prompt and the answer alone may exceed it
            assert question["predicted_j"] <= budget_j * 1.001
    allowed = sorted(q["allowed_tokens"] for q in budget["questions"])
    assert allowed[-1] > 0  # some reasoning is affordable...
    assert allowed[0] < CAP  # ...and the budget, not the cap, ends it
    assert budgeted["summary"]["output_tokens"] < unbounded["summary"]["output_tokens"]
    # Forced answers are requests to the server too, every token of them counted: the
    # cue counts as output (as in process), the re-sent question and reasoning as input.
    records = [r for row in rows.values() for r in row["records"]]
    served = {k: proxy.totals[k] - before[k] for k in before}
    counted = sum(r["output_tokens"] + r["computed_input_tokens"] for r in records)
    assert counted == served["completion_tokens"] + served["prompt_tokens"]
