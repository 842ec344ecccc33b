"""Exclusivity of a served window: the server's Prometheus token counters against our usage.

Against the loopback fake server serving vLLM's counters at ``/metrics``; other
clients' traffic is simulated by bumping them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest

from pytest_energy.backends.openai import OpenAIBackend
from pytest_energy.backends.traffic import (
    SLACK_FRACTION,
    SLACK_TOKENS,
    Tally,
    Tokens,
    TrafficWindow,
    parse_counters,
)
from pytest_energy.engine_results import Ledger
from pytest_energy.measure import measure_repeat
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.metrics import EvalResult, QuestionRecord
from pytest_energy.mmlu import Question
from pytest_energy.testing import FakeMeter
from pytest_energy.testing.openai_server import FakeOpenAIServer, words

LETTERS = (" A", " B", " C", " D")
PROMPTS = ["Question one?\nAnswer:", "Question two, longer than one?\nAnswer:"]
NO_WAIT = (0.0, 0.0, 0.0)
QUESTION = Question("anatomy", "Which?", ("a", "b", "c", "d"), "A", "x.csv:1")

VLLM_TEXT = """\
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 100.0
vllm:prompt_tokens_total{engine="1",model_name="m"} 20.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 7.0
vllm:generation_tokens_total{engine="1",model_name="m"} 3.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 0.0
"""


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(owned_by="vllm", metrics=True) as server:
        yield server


def connect(url: str) -> OpenAIBackend:
    return OpenAIBackend.connect(url, meter=EnergyMeter(FakeMeter()), retry_delays_s=NO_WAIT)


# -- pure parts -----------------------------------------------------------------------


def test_vllm_counters_are_summed_over_engines_and_models() -> None:
    assert parse_counters(VLLM_TEXT) == Tokens(prompt=120, generated=10)


LLAMA_CPP_TEXT = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 6886
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 3469
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 0
"""
TGI_TEXT = """\
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="100"} 3
tgi_request_input_length_bucket{le="+Inf"} 4
tgi_request_input_length_sum 250
tgi_request_input_length_count 4
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="100"} 4
tgi_request_generated_tokens_bucket{le="+Inf"} 4
tgi_request_generated_tokens_sum 40
tgi_request_generated_tokens_count 4
"""


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("sglang:prompt_tokens_total 12.0\nsglang:generation_tokens_total 3.0\n", Tokens(12, 3)),
        (LLAMA_CPP_TEXT, Tokens(6886, 3469)),
        (TGI_TEXT, Tokens(250, 40)),  # the histograms' sums, not their buckets or counts
    ],
    ids=["sglang", "llama.cpp", "tgi"],
)
def test_other_servers_counters_are_read_too(text: str, tokens: Tokens) -> None:
    assert parse_counters(text) == tokens


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n",
        "vllm:prompt_tokens_total 5.0\n",  # half of a pair
        "<html>Not Found</html>",
    ],
)
def test_metrics_without_the_token_counters_say_nothing(text: str) -> None:
    assert parse_counters(text) is None


def test_our_prompt_counts_once_per_sample_asked_for_and_answers_without_usage_add_nothing() -> (
    None
):
    tally = Tally()
    tally.add({"n": 3}, {"usage": {"prompt_tokens": 10, "completion_tokens": 12}})
    tally.add({}, {"usage": {"prompt_tokens": 5, "completion_tokens": 1}})
    tally.add({}, {"choices": []})
    assert tally.tokens == Tokens(prompt=35, generated=13)


def test_tokens_beyond_ours_within_the_slack_are_exclusive_and_beyond_it_shared() -> None:
    ours = Tokens(900, 100)  # slack: 16 + 1% of 1000 = 26 tokens
    slack = int(SLACK_TOKENS + SLACK_FRACTION * ours.total)
    assert slack == 26
    within, beyond = TrafficWindow(), TrafficWindow()
    within.judge(Tokens(900 + slack, 100), ours)
    beyond.judge(Tokens(900, 100 + slack + 1), ours)
    assert (within.exclusive, within.other_tokens) == (True, 26)
    assert (beyond.exclusive, beyond.other_tokens) == (False, 27)
    fewer = TrafficWindow()
    fewer.judge(Tokens(500, 100), ours)  # a server that counts cached prompts as nothing
    assert (fewer.exclusive, fewer.other_tokens) == (True, 0)
    # ...whose saved prompt tokens do not hide another client's generated ones.
    hidden = TrafficWindow()
    hidden.judge(Tokens(500, 100 + 300), ours)
    assert (hidden.exclusive, hidden.other_tokens) == (False, 300)


# -- the backend against the fake server ---------------------------------------------------


def test_a_window_with_only_our_requests_is_exclusive_including_votes(
    fake: FakeOpenAIServer,
) -> None:
    backend = connect(fake.url)
    with backend.traffic_window() as traffic:
        backend.score(PROMPTS, LETTERS, Ledger())
        # n=3: the counters count the prompt three times, usage once.
        backend.generate(PROMPTS, Ledger(), max_new_tokens=4, samples=3, temperature=0.7)
    ours = sum(3 * len(words(p)) + len(words(p)) for p in PROMPTS) + 2 * 1 + 2 * 3 * 4
    assert traffic.our_tokens == traffic.served_tokens == ours
    assert (traffic.exclusive, traffic.other_tokens) == (True, 0)


def test_other_clients_tokens_during_the_window_mark_it_shared(fake: FakeOpenAIServer) -> None:
    backend = connect(fake.url)
    with backend.traffic_window() as traffic:
        backend.score(PROMPTS, LETTERS, Ledger())
        fake.other_traffic(prompt_tokens=200, generated_tokens=64)
    assert (traffic.exclusive, traffic.other_tokens) == (False, 264)


def test_other_traffic_between_windows_is_not_counted(fake: FakeOpenAIServer) -> None:
    backend = connect(fake.url)
    fake.other_traffic(prompt_tokens=5000, generated_tokens=500)
    with backend.traffic_window() as traffic:
        backend.score(PROMPTS, LETTERS, Ledger())
    fake.other_traffic(prompt_tokens=5000, generated_tokens=500)
    assert traffic.exclusive is True


def test_a_server_without_metrics_leaves_exclusivity_unknown_and_is_asked_once() -> None:
    with FakeOpenAIServer(metrics=False) as server:
        backend = connect(server.url)
        assert backend.traffic is not None
        assert backend.traffic.available is False
        with backend.traffic_window() as traffic:
            backend.score(PROMPTS, LETTERS, Ledger())
            server.metrics = True  # read once, at connect: later windows do not ask
            server.other_traffic(100, 100)
    assert (traffic.exclusive, traffic.other_tokens) == (None, None)


def test_counters_that_land_after_our_answers_are_waited_for_not_blamed_on_the_next_window() -> (
    None
):
    with FakeOpenAIServer(owned_by="vllm", metrics=True, metrics_lag_s=0.3) as server:
        backend = connect(server.url)
        windows = []
        for _ in range(2):
            started = time.monotonic()
            with backend.traffic_window() as traffic:
                backend.score(PROMPTS, LETTERS, Ledger())
            windows.append((traffic, time.monotonic() - started))
    for traffic, _ in windows:
        assert (traffic.exclusive, traffic.other_tokens) == (True, 0)
        assert traffic.served_tokens == traffic.our_tokens
    assert windows[0][1] >= 0.25  # the end of the window waited for the counters


def test_a_window_that_raised_reads_nothing_after_it(fake: FakeOpenAIServer) -> None:
    backend = connect(fake.url)

    def failing_window() -> TrafficWindow:
        with backend.traffic_window() as traffic:
            fake.other_traffic(1000, 1000)
            windows.append(traffic)
            raise RuntimeError("window failed")

    windows: list[TrafficWindow] = []
    with pytest.raises(RuntimeError):
        failing_window()
    assert windows[0].exclusive is None


# -- the measured repeat and the result ---------------------------------------------------


class ScoringRunner:
    """Scores the prompts through the backend; another client may join meanwhile."""

    def __init__(self, meter: EnergyMeter, server: FakeOpenAIServer, other: int = 0) -> None:
        self.meter = meter
        self.server = server
        self.other = other

    def run(
        self, engine: Any, questions: Sequence[Question], ledger: Ledger, *, seed: int
    ) -> list[QuestionRecord]:
        engine.score(PROMPTS, LETTERS, ledger)
        self.server.other_traffic(self.other, 0)
        assert isinstance(self.meter.meter, FakeMeter)
        self.meter.meter.advance(1.0)
        return [QuestionRecord("anatomy", "A", "A", 10, 1)]


def repeat(server: FakeOpenAIServer, other: int) -> Any:
    meter = EnergyMeter(FakeMeter())
    backend = OpenAIBackend.connect(server.url, meter=meter, retry_delays_s=NO_WAIT)
    _, sample, _ = measure_repeat(
        ScoringRunner(meter, server, other),
        backend,  # type: ignore[arg-type]
        [QUESTION],
        0,
        meter=meter,
        lock=lambda: _nothing(),
        idle_power_w=lambda: None,
    )
    return sample


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_each_measured_repeat_records_whether_its_window_was_shared(
    fake: FakeOpenAIServer,
) -> None:
    exclusive, shared = repeat(fake, other=0), repeat(fake, other=500)
    assert (exclusive.exclusive, exclusive.other_tokens) == (True, 0)
    assert (shared.exclusive, shared.other_tokens) == (False, 500)
    result = EvalResult(
        "m", "direct", "fake", True, (QuestionRecord("anatomy", "A", "A", 10, 1),), ()
    )
    assert result.exclusive is None  # nothing measured
    both = replace(result, repeats=(exclusive, shared))
    assert (both.exclusive, both.other_tokens) == (False, 500)
    assert replace(result, repeats=(exclusive, exclusive)).exclusive is True
    assert both.to_dict()["exclusive"] is False
    assert EvalResult.from_dict(both.to_dict()) == both


def test_an_in_process_engine_has_no_traffic_to_compare() -> None:
    class Engine:
        sync = None

        def score(self, *args: Any) -> None:
            return None

    meter = EnergyMeter(FakeMeter())
    with FakeOpenAIServer() as server:
        _, sample, _ = measure_repeat(
            ScoringRunner(meter, server),
            Engine(),  # type: ignore[arg-type]
            [QUESTION],
            0,
            meter=meter,
            lock=lambda: _nothing(),
            idle_power_w=lambda: None,
        )
    assert (sample.exclusive, sample.other_tokens) == (None, None)
