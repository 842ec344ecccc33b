"""The example suite, unchanged, against a real llama-cpp-python server.

A copy of ``example_suite`` (so no tracked file changes) runs its direct test
with the model from ``ENERGY_EXAMPLE_MODEL``: the served URL. Its committed
baseline was recorded in process; the backend is a hard fingerprint field, so
the served result is "not compared" (README, "What a comparison needs"): the
test passes on its budgets and the baseline stays as committed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RunEnergy = Callable[..., pytest.RunResult]
EXAMPLE = Path(__file__).resolve().parents[3] / "example_suite"
ALIAS = "smollm2-135m"  # the name the server fixture serves the model under
QUESTIONS = 16  # example_suite/conftest.py's sample size
# The cheapest test that runs a strategy through the server; the suite's
# cloze test needs a vLLM server (llama.cpp cannot score cloze, see the README).
DIRECT = "test_mmlu_energy.py::test_strategy_energy[direct]"


def test_example_suite_runs_against_a_served_model_not_compared_with_its_baseline(
    pytester: pytest.Pytester,
    run_energy: RunEnergy,
    usage_proxy: tuple[str, Any],
    llama_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, proxy = usage_proxy
    shutil.copytree(
        EXAMPLE,
        pytester.path,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("report", "__pycache__", "*.lock"),
    )
    baseline = pytester.path / ".energy" / "baseline.json"
    committed = (EXAMPLE / ".energy" / "baseline.json").read_bytes()
    assert baseline.read_bytes() == committed
    monkeypatch.setenv("ENERGY_EXAMPLE_MODEL", url)

    result = run_energy(
        DIRECT,
        "--energy-meter=cpu-estimate",  # the meter the committed baseline used
        "--energy-repeats=1",
        # The server's CPU time, not the whole (shared) machine's.
        "-o",
        f"energy_server_pid={llama_server.process.pid}",
        "--energy-json=results.json",
    )

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["baseline comparisons: 1 not compared (other hardware or setup)"])
    assert "Traceback" not in result.stdout.str()
    document = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    (entry,) = document["results"]
    assert entry["test_id"] == DIRECT
    assert entry["model"] == f"{url}#{ALIAS}"
    assert entry["fingerprint"]["backend"] == "openai"
    assert entry["fingerprint"]["server_model"] == ALIAS
    outcome = entry["outcome"]
    assert (outcome["status"], outcome["baseline"]) == ("pass", "mismatch")
    (note,) = [n for n in outcome["notes"] if n.startswith("not compared")]
    assert "backend: missing -> 'openai'" in note
    # The tokens counted are the server's usage: one request per question.
    records = entry["records"]
    assert len(records) == QUESTIONS
    assert proxy.totals["requests"] == QUESTIONS
    assert sum(r["computed_input_tokens"] for r in records) == proxy.totals["prompt_tokens"]
    assert sum(r["output_tokens"] for r in records) == proxy.totals["completion_tokens"]
    assert entry["summary"]["output_tokens"] == QUESTIONS
    # A run without --energy-update-baseline leaves the committed baseline alone.
    assert baseline.read_bytes() == committed
