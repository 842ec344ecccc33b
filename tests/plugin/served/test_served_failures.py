"""A served model that fails mid-suite: that test fails with one line, the baseline stays."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from pytest_energy.testing.openai_server import FakeOpenAIServer

RunEnergy = Callable[..., pytest.RunResult]

SUITE = """
import os

URL = os.environ["FAKE_SERVER_URL"]


def test_first(energy_eval):
    energy_eval(URL, "direct", n=4)


def test_second(energy_eval):
    energy_eval(URL, "cot:max_tokens=8", n=4)
"""
ARGS = ("--energy-meter=cpu-estimate", "--energy-repeats=1", "-p", "no:randomly")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    """The fake server, its URL in the inner suite's environment."""
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("FAKE_SERVER_URL", server.url)
        yield server


def test_a_server_dying_mid_run_fails_that_test_and_leaves_the_baseline_untouched(
    pytester: pytest.Pytester, run_energy: RunEnergy, fake: FakeOpenAIServer
) -> None:
    pytester.makepyfile(test_served=SUITE)
    recorded = run_energy(*ARGS, "--energy-update-baseline")
    recorded.assert_outcomes(passed=2)
    baseline = pytester.path / ".energy" / "baseline.json"
    before = baseline.read_bytes()

    fake.die_after(4 + 2)  # test_first's 4 questions, then 2 of test_second's
    result = run_energy(*ARGS, "--energy-update-baseline")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"openai-compatible server at {fake.url}: POST {fake.url}/completions "
            "failed (*) after 3 retries; start the server or fix the model URL, and check "
            "the server's log",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    # The failed test's entry is the one recorded before; the run may refresh the other.
    after = baseline.read_text(encoding="utf-8")
    old_entries = json.loads(before)["entries"]
    new_entries = json.loads(after)["entries"]
    second = next(key for key in old_entries if key.endswith("::test_second"))
    assert new_entries[second] == old_entries[second]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("{url}#other", "model 'other' is not served at {url} (it lists: fake-model)*"),
        ("http://127.0.0.1:9/v1", "*GET http://127.0.0.1:9/v1/models failed (ConnectError*"),
    ],
)
def test_bad_served_specs_fail_the_test_with_one_line(
    pytester: pytest.Pytester,
    run_energy: RunEnergy,
    fake: FakeOpenAIServer,
    model: str,
    message: str,
) -> None:
    spec = model.format(url=fake.url)
    pytester.makepyfile(
        test_bad=f"def test_bad(energy_eval):\n    energy_eval({spec!r}, 'direct', n=2)\n"
    )
    result = run_energy(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([message.format(url=fake.url)])
    assert "Traceback" not in result.stdout.str()


def test_served_results_never_compare_with_an_in_process_baseline() -> None:
    """The backend is a hard fingerprint field (the engine records none), the server's
    version a soft one (a server upgrade is compared and attributed)."""
    from pytest_energy.fingerprint import hard_differences, soft_changes

    local = {"model": "smollm2-135m", "dtype": "float32"}
    served = {"backend": "openai", "model": "http://h:1/v1#smollm2-135m", "server_version": "1"}
    assert "backend: missing -> 'openai'" in hard_differences(local, served)
    older, newer = {**served, "server_version": "0.10"}, {**served, "server_version": "0.11"}
    assert soft_changes(older, newer) == ["server-version 0.10 -> 0.11"]
    assert hard_differences(older, newer) == []
