"""The served backend against the loopback fake server: requests, tokens, windows, bad input."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from factories import TokenMeter
from pytest_energy.backends.openai import OpenAIBackend
from pytest_energy.engine_results import Force, Ledger
from pytest_energy.errors import ServerError
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.testing.openai_server import FakeOpenAIServer, words

LETTERS = (" A", " B", " C", " D")
PROMPTS = ["Question one?\nAnswer:", "Question two, longer than one?\nAnswer:"]
NO_WAIT = (0.0, 0.0, 0.0)


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def connect(url: str, meter: Any = None, **options: Any) -> OpenAIBackend:
    return OpenAIBackend.connect(
        url, meter=EnergyMeter(meter or TokenMeter()), retry_delays_s=NO_WAIT, **options
    )


def one_line(excinfo: pytest.ExceptionInfo[ServerError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_the_single_listed_model_is_picked_and_fingerprinted(fake: FakeOpenAIServer) -> None:
    backend = connect(fake.url)
    host = fake.root_url.removeprefix("http://")
    assert backend.spec.label == f"{fake.url}#fake-model"
    assert backend.fingerprint() == {
        "backend": "openai",
        "model": f"{fake.url}#fake-model",
        "server": host,
        "server_model": "fake-model",
    }
    # The fake model's name does not resolve here: plain prompts, no local tokenizer.
    assert backend.has_chat_template is False
    assert backend.sync is None
    with pytest.raises(ServerError, match="has no local tokenizer"):
        backend.tokenizer  # noqa: B018


def test_a_vllm_server_reports_its_version_as_a_soft_field() -> None:
    from pytest_energy.fingerprint import SOFT_FIELDS

    with FakeOpenAIServer(models=["a", "b"], owned_by="vllm", version="0.11.2") as server:
        backend = connect(server.url + "#b")
        assert backend.fingerprint()["server_version"] == "0.11.2"
        assert backend.info.label == f"vllm server at {server.url}"
    assert "server_version" in SOFT_FIELDS


def test_letters_come_from_the_top_logprobs_with_usage_tokens_in_one_prefill_window(
    fake: FakeOpenAIServer,
) -> None:
    meter = TokenMeter()
    backend = connect(fake.url, meter)
    ledger = Ledger()

    scored = backend.score(PROMPTS, LETTERS, ledger)

    for prompt, result in zip(PROMPTS, scored, strict=True):
        top = fake.next_top(prompt)
        assert result.logprobs == tuple(top[letter] for letter in LETTERS)
        assert result.input_tokens == result.computed_input_tokens == len(words(prompt))
    assert ledger.details["letters_missing"] == 0
    assert ledger.prefill_s > 0
    assert ledger.decode_s == 0
    assert sorted(meter.accounted) == sorted(("prefill", len(words(p)), 0) for p in PROMPTS)
    sent = [body for path, body in fake.requests if path == "/v1/completions"]
    assert {(b["max_tokens"], b["temperature"], b["logprobs"]) for b in sent} == {(1, 0.0, 20)}


def test_a_letter_outside_the_top_k_scores_minus_infinity_and_is_counted() -> None:
    with FakeOpenAIServer(missing_letters=[" D"]) as server:
        ledger = Ledger()
        scored = connect(server.url).score(PROMPTS, LETTERS, ledger)
    assert all(s.logprobs[3] == -math.inf for s in scored)
    assert ledger.details["letters_missing"] == len(PROMPTS)


def test_cached_prompt_tokens_are_not_computed_tokens() -> None:
    with FakeOpenAIServer(cached_tokens=2) as server:
        scored = connect(server.url).score(PROMPTS[:1], LETTERS, Ledger())
    assert scored[0].computed_input_tokens == scored[0].input_tokens - 2


def test_generation_tokens_equal_the_usage_the_server_sent(fake: FakeOpenAIServer) -> None:
    meter = TokenMeter()
    ledger = Ledger()
    generated = connect(fake.url, meter).generate(
        PROMPTS, ledger, max_new_tokens=3, samples=3, temperature=0.7, seed=5
    )
    records = sum(
        g.computed_input_tokens + sum(s.output_tokens for s in g.samples) for g in generated
    )
    totals = fake.usage_totals
    assert records == totals["prompt_tokens"] + totals["completion_tokens"]
    assert all(len(g.samples) == 3 for g in generated)
    assert all(s.output_tokens == 3 and not s.stopped for g in generated for s in g.samples)
    sent = [b for path, b in fake.requests if path == "/v1/completions"]
    assert [(b["n"], b["seed"], b["max_tokens"]) for b in sent] == [(3, 5, 3)] * 2
    assert ledger.decode_s > 0
    assert ledger.prefill_s == 0
    assert ("decode", len(words(PROMPTS[0])), 9) in meter.accounted


def test_a_server_that_ignores_n_is_asked_again_with_the_next_seeds() -> None:
    with FakeOpenAIServer(n_supported=False) as server:
        generated = connect(server.url).generate(PROMPTS[:1], Ledger(), max_new_tokens=8, samples=3)
        sent = [b for path, b in server.requests if path == "/v1/completions"]
    assert [(b["n"], b["seed"]) for b in sent] == [(3, 0), (2, 1), (1, 2)]
    assert generated[0].computed_input_tokens == 3 * generated[0].input_tokens
    assert all(s.text.startswith(" The answer is (") for s in generated[0].samples)


def test_stop_strings_end_a_generation_on_the_server(fake: FakeOpenAIServer) -> None:
    generated = connect(fake.url).generate(PROMPTS[:1], Ledger(), max_new_tokens=16, stop=["is"])
    assert generated[0].samples[0].text == " The answer "
    assert generated[0].samples[0].stopped


def test_a_sample_that_runs_out_of_tokens_is_forced_to_answer() -> None:
    """Controlled reasoning: the cue and answer after the limit (a limit of 0 counts the
    prompt with the server's tokenize endpoint: llama-cpp-python's here)."""
    force = Force("\nThe answer is (", ("A", "B", "C", "D"))
    with FakeOpenAIServer(owned_by="me") as fake:
        backend = connect(fake.url)
        generated = backend.generate(PROMPTS, Ledger(), max_new_tokens=[2, 0], force=force)

    cued = words(PROMPTS[0] + " The answer" + force.cue)
    first = generated[0].samples[0]
    assert first.text == " The answer"
    assert first.forced == tuple(
        fake.next_top("".join(cued)).get(c, -math.inf) for c in force.candidates
    )
    # Generated 2, the cue's tokens and the answer token, as the engine counts them.
    assert first.output_tokens == 2 + len(words(force.cue)) + 1
    assert generated[1].samples[0].output_tokens == len(words(force.cue)) + 1
    assert generated[1].input_tokens == len(words(PROMPTS[1]))
    records = sum(g.computed_input_tokens + g.samples[0].output_tokens for g in generated)
    assert records == fake.usage_totals["prompt_tokens"] + fake.usage_totals["completion_tokens"]


def test_calibration_generations_run_past_the_end_of_sequence(fake: FakeOpenAIServer) -> None:
    generated = connect(fake.url).generate(
        PROMPTS[:1], Ledger(), max_new_tokens=12, stop_at_eos=False
    )
    assert generated[0].samples[0].output_tokens == 12
    body = next(b for path, b in fake.requests if path == "/v1/completions")
    assert body["min_tokens"] == 12


def test_cloze_reads_echoed_prompt_logprobs_once_checked(fake: FakeOpenAIServer) -> None:
    choices = [[" Paris", " Rome"], [" red", " green blue"]]
    scores = connect(fake.url).score_choices(PROMPTS, choices, Ledger())
    for prompt, conts, result in zip(PROMPTS, choices, scores, strict=True):
        assert result.tokens == tuple(len(words(c)) for c in conts)
        assert result.chars == tuple(len(c) for c in conts)
        assert result.input_tokens == len(words(prompt)) + sum(result.tokens)
        expected = [fake._position(words(prompt + c), len(words(prompt)))[0] for c in conts]
        assert [round(v, 6) for v in result.logprobs[:1]] == [round(float(expected[0]), 6)]


def test_cloze_through_vllm_uses_prompt_logprobs_on_token_ids() -> None:
    with FakeOpenAIServer(owned_by="vllm") as server:
        scores = connect(server.url).score_choices(PROMPTS[:1], [[" Paris", " Rome"]], Ledger())
        sent = [b for path, b in server.requests if path == "/v1/completions"]
    assert all(isinstance(b["prompt"], list) and b["prompt_logprobs"] == 1 for b in sent)
    assert all(b["add_special_tokens"] is False for b in sent)
    assert scores[0].tokens == (1, 1)


@pytest.mark.parametrize(
    ("echo", "problem"),
    [("shifted", "shifted by one token"), ("ignored", "it ignores echo")],
)
def test_cloze_through_a_wrong_echo_is_refused(echo: str, problem: str) -> None:
    with FakeOpenAIServer(echo=echo) as server, pytest.raises(ServerError) as caught:
        connect(server.url).score_choices(PROMPTS[:1], [[" Paris", " Rome"]], Ledger())
    message = one_line(caught)
    assert problem in message
    assert "use direct (score=letters)" in message


def test_token_counts_come_from_the_servers_tokenize_endpoint() -> None:
    with FakeOpenAIServer(owned_by="me") as server:
        assert connect(server.url).count_tokens("one two three") == 3
        assert ("/extras/tokenize", {"input": "one two three"}) in server.requests


def test_without_a_tokenizer_anywhere_budgets_and_routing_cannot_count(
    fake: FakeOpenAIServer,
) -> None:
    with pytest.raises(ServerError) as caught:
        connect(fake.url).count_tokens("one two")
    assert "cot:budget_j and route need token counts" in one_line(caught)


def test_the_backend_also_works_inside_a_running_event_loop(fake: FakeOpenAIServer) -> None:
    backend = connect(fake.url)

    async def from_async_test() -> int:
        return len(backend.score(PROMPTS, LETTERS, Ledger()))

    assert asyncio.run(from_async_test()) == len(PROMPTS)


# -- bad input ----------------------------------------------------------------------------


def test_an_unreachable_url_names_it_and_the_fix() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ServerError) as caught:
        connect(url)
    message = one_line(caught)
    assert f"GET {url}/models failed (ConnectError" in message
    assert "start the server or fix the model URL" in message


def test_a_server_that_is_not_openai_compatible_is_named(fake: FakeOpenAIServer) -> None:
    fake.respond_with(200, "<html><body>Welcome to nginx!</body></html>")
    with pytest.raises(ServerError) as caught:
        connect(fake.url)
    assert one_line(caught).startswith(
        f"{fake.url} is not an OpenAI-compatible server: GET {fake.url}/models answered "
        "HTTP 200 text/html: <html><body>Welcome to nginx!</body></html>; give the API base URL"
    )


def test_a_model_name_the_server_does_not_list_names_what_it_serves() -> None:
    with FakeOpenAIServer(models=["a", "b"]) as server:
        with pytest.raises(ServerError) as caught:
            connect(server.url + "#c")
        assert one_line(caught) == (
            f"model 'c' is not served at {server.url} (it lists: a, b); fix #NAME in the model spec"
        )
        with pytest.raises(ServerError, match=r"serves 2 models \(a, b\); pick one with"):
            connect(server.url)


def test_a_server_without_logprobs_cannot_score_letters() -> None:
    with FakeOpenAIServer(logprobs=False) as server, pytest.raises(ServerError) as caught:
        connect(server.url).score(PROMPTS, LETTERS, Ledger())
    assert one_line(caught) == (
        f"fake server at {server.url} returned no logprobs; direct letter scoring needs a "
        "server that returns top logprobs (logprobs=20) for the next token"
    ).replace("fake server", "openai-compatible server")


def test_a_response_without_usage_is_an_error() -> None:
    with FakeOpenAIServer(usage=False) as server, pytest.raises(ServerError) as caught:
        connect(server.url).generate(PROMPTS, Ledger(), max_new_tokens=4)
    assert "without usage token counts" in one_line(caught)


def test_a_slow_server_times_out_naming_the_option() -> None:
    with FakeOpenAIServer(delay_s=2.0) as server, pytest.raises(ServerError) as caught:
        connect(server.url, timeout_s=0.2).score(PROMPTS[:1], LETTERS, Ledger())
    assert one_line(caught) == (
        f"POST {server.url}/completions took longer than energy_request_timeout (0.2 s); "
        "raise energy_request_timeout or lower energy_concurrency"
    )


def test_a_server_error_is_retried_then_reported(fake: FakeOpenAIServer) -> None:
    backend = connect(fake.url)
    fake.respond_with(503, "overloaded", "text/plain")
    with pytest.raises(ServerError) as caught:
        backend.score(PROMPTS[:1], LETTERS, Ledger())
    assert "failed (HTTP 503 text/plain: overloaded) after 3 retries" in one_line(caught)
    assert sum(path == "/v1/completions" for path, _ in fake.requests) == 4


def test_a_server_that_dies_mid_run_fails_the_call(fake: FakeOpenAIServer) -> None:
    backend = connect(fake.url, concurrency=1)
    fake.die_after(1)
    with pytest.raises(ServerError) as caught:
        backend.score(PROMPTS * 2, LETTERS, Ledger())
    assert "start the server or fix the model URL" in one_line(caught)
