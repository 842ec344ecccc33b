"""A served suite whose server is shared with another client: marked shared, not compared.

The fake server serves vLLM's token counters; in the second run another client's
tokens arrive with every completion.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from pytest_energy.testing.openai_server import FakeOpenAIServer

RunEnergy = Callable[..., pytest.RunResult]

SUITE = """
import os

URL = os.environ["FAKE_SERVER_URL"]


def test_direct(energy_eval):
    energy_eval(URL, "direct", n=4)
"""
ARGS = ("--energy-meter=cpu-estimate", "--energy-repeats=2", "-p", "no:randomly")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(owned_by="vllm", metrics=True) as server:
        monkeypatch.setenv("FAKE_SERVER_URL", server.url)
        yield server


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["plain", "xdist"])
def test_a_shared_run_is_reported_shared_and_never_compared_on_energy(
    pytester: pytest.Pytester,
    run_energy: RunEnergy,
    fake: FakeOpenAIServer,
    workers: tuple[str, ...],
) -> None:
    pytester.makepyfile(test_served=SUITE)
    recorded = run_energy(*ARGS, *workers, "--energy-update-baseline")
    recorded.assert_outcomes(passed=1)
    baseline = pytester.path / ".energy" / "baseline.json"
    (entry,) = json.loads(baseline.read_text(encoding="utf-8"))["entries"].values()
    assert entry["exclusive"] is True
    assert entry["meter"] == "cpu-estimate (whole machine)"  # the server is on loopback

    fake.other_per_completion = 50
    result = run_energy(*ARGS, *workers, "--energy-json=out.json")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_direct*shared, not compared*"])
    (row,) = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))["results"]
    assert row["exclusive"] is False
    assert all(r["exclusive"] is False and r["other_tokens"] >= 200 for r in row["repeats"])
    assert row["outcome"]["baseline"] == "shared"
    assert any("not compared with an exclusive baseline" in n for n in row["outcome"]["notes"])
    assert not any(c["metric"].startswith("j_") for c in row["outcome"]["checks"])
