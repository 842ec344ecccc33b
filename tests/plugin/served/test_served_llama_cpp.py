"""The served backend against a real llama-cpp-python server with SmolLM2 and real MMLU rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from factories import assert_same_letters
from pytest_energy.errors import ServerError
from pytest_energy.metrics import LETTERS

RunEnergy = Callable[..., pytest.RunResult]
ALIAS = "smollm2-135m"  # the name the server fixture serves the model under

SUITE = """
URL = {url!r}


def test_direct(energy_eval):
    result = energy_eval(URL, "direct", n=4)
    assert result.output_tokens == 4


def test_cot(energy_eval):
    result = energy_eval(URL, "cot:max_tokens=16", n=4)
    assert 0 < result.output_tokens <= 4 * 16


def test_vote(energy_eval):
    result = energy_eval(URL, "vote:k=3,max_tokens=16", n=4)
    assert 0 < result.output_tokens <= 4 * 3 * 16
"""
# A flip between backends is a near tie when the in-process engine's two best
# letters are closer than this (nats): llama.cpp runs the Q4_1 weights with
# 8-bit activations, the engine their float32 de-quantisation; their letter
# log-probabilities differ by up to about 0.2 nats on these questions.
NEAR_TIE = 0.3
AGREEMENT_QUESTIONS = 16


def test_direct_cot_and_vote_through_the_server_count_its_usage(
    pytester: pytest.Pytester,
    run_energy: RunEnergy,
    usage_proxy: tuple[str, Any],
) -> None:
    url, proxy = usage_proxy
    pytester.makepyfile(test_served=SUITE.format(url=url))

    result = run_energy(
        "--energy-meter=cpu-estimate", "--energy-repeats=1", "--energy-json=out.json"
    )

    result.assert_outcomes(passed=3)
    document = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    results = {r["test_id"].rpartition("::")[2]: r for r in document["results"]}
    assert sorted(results) == ["test_cot", "test_direct", "test_vote"]
    host = url.removeprefix("http://").removesuffix("/v1")
    for entry in results.values():
        assert entry["model"] == f"{url}#{ALIAS}"
        fingerprint = entry["fingerprint"]
        assert fingerprint["backend"] == "openai"
        assert (fingerprint["server"], fingerprint["server_model"]) == (host, ALIAS)
        assert "server_version" not in fingerprint  # llama-cpp-python reports none
        assert all(r["predicted"] in (*LETTERS, None) for r in entry["records"])
    assert results["test_direct"]["details"]["letters_missing"] == 0
    # Every token the records count is one the server reported in usage, and back.
    records = [r for entry in results.values() for r in entry["records"]]
    assert sum(r["computed_input_tokens"] for r in records) == proxy.totals["prompt_tokens"]
    assert sum(r["output_tokens"] for r in records) == proxy.totals["completion_tokens"]
    # llama-cpp-python ignores n: a vote of 3 is 3 requests per question.
    assert proxy.totals["requests"] == 4 + 4 + 4 * 3


@pytest.fixture(scope="module")
def served(llama_server: Any, model_stack: None) -> Any:
    """One backend connected to the server (and its tokenizer loaded) for this module."""
    from pytest_energy.backends.openai import OpenAIBackend
    from pytest_energy.meters.base import EnergyMeter
    from pytest_energy.testing import FakeMeter

    return OpenAIBackend.connect(llama_server.url, meter=EnergyMeter(FakeMeter()))


def test_served_and_in_process_backends_pick_the_same_letters(
    served: Any, llama_url: str, mmlu_source: Path
) -> None:
    from pytest_energy.engine import Engine, Ledger
    from pytest_energy.mmlu import load_mmlu
    from pytest_energy.models import default_cache_dir, resolve_model
    from pytest_energy.prompts import DEFAULT_PROMPT
    from pytest_energy.rendering import Renderer
    from pytest_energy.strategies.direct import LETTER_CANDIDATES

    meter = served.meter
    engine = Engine.load(
        resolve_model(ALIAS), device="cpu", meter=meter, dtype="float32",
        cache_dir=default_cache_dir(),
    )  # fmt: skip
    questions = load_mmlu(str(mmlu_source)).sample(AGREEMENT_QUESTIONS, seed=0)
    renderer = Renderer(DEFAULT_PROMPT)
    prompts = [renderer.direct(served, q) for q in questions]
    assert prompts == [renderer.direct(engine, q) for q in questions]

    remote = served.score(prompts, LETTER_CANDIDATES, Ledger())
    local = engine.score(prompts, LETTER_CANDIDATES, Ledger())

    assert_same_letters(
        questions, remote, local, ("served", "in-process"), NEAR_TIE, AGREEMENT_QUESTIONS // 8
    )


@pytest.mark.parametrize(
    ("chat", "problem"),
    [
        ("auto", "its echo lists * tokens for a prompt of * tokens"),
        ("false", "its echoed prompt log-probabilities are shifted by one token"),
    ],
)
def test_cloze_through_llama_cpp_python_is_refused_not_scored(
    served: Any, llama_url: str, mmlu_source: Path, chat: str, problem: str
) -> None:
    """llama-cpp-python drops special tokens from echoed prompts (the chat template's),
    and shifts echoed log-probabilities by one token (its issue #1983)."""
    from fnmatch import fnmatch

    from pytest_energy.engine import Ledger
    from pytest_energy.mmlu import load_mmlu
    from pytest_energy.prompts import DEFAULT_PROMPT
    from pytest_energy.rendering import Renderer

    question = load_mmlu(str(mmlu_source)).sample(1, seed=0)[0]
    prompt = Renderer(replace(DEFAULT_PROMPT, chat=chat)).direct(served, question)

    with pytest.raises(ServerError) as caught:
        served.score_choices([prompt], [[" " + c for c in question.choices]], Ledger())

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"llama-cpp-python server at {llama_url} cannot score")
    assert fnmatch(message, f"*: {problem} (*")
    assert "use direct (score=letters)" in message
    assert "in-process backend" in message
