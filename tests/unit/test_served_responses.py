"""Reading OpenAI completion answers and served model specs (pure functions)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pytest_energy.backends import is_served, model_spec
from pytest_energy.backends.responses import (
    Usage,
    candidate_logprobs,
    choices_of,
    completion_token_counts,
    echo_problem,
    echoed_continuation,
    first_top_logprobs,
    prompt_logprobs_sum,
    usage_of,
)
from pytest_energy.backends.server import parse_served
from pytest_energy.errors import ModelError, ServerError
from pytest_energy.models import resolve_model

SERVER = "vllm server at http://gpu:8000/v1"


def test_usage_gives_computed_tokens_net_of_the_servers_prefix_cache() -> None:
    body = {
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 100},
        }
    }
    usage = usage_of(body, SERVER)
    assert usage == Usage(120, 7, 100)
    assert usage.computed_tokens == 20
    assert (
        usage_of({"usage": {"prompt_tokens": 5, "completion_tokens": 1}}, SERVER).cached_tokens == 0
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"usage": None},
        {"usage": {"prompt_tokens": 5}},
        {"usage": {"prompt_tokens": -1, "completion_tokens": 1}},
        {"usage": {"prompt_tokens": True, "completion_tokens": 1}},
        {"usage": {"prompt_tokens": "5", "completion_tokens": 1}},
    ],
)
def test_a_response_without_usable_usage_is_an_error_never_a_guess(body: dict[str, Any]) -> None:
    with pytest.raises(ServerError, match=r"without usage token counts.*never guesses") as caught:
        usage_of(body, SERVER)
    assert str(caught.value).startswith(SERVER)
    assert "\n" not in str(caught.value)


def test_choices_come_in_index_order_and_an_answer_without_them_is_an_error() -> None:
    body = {"choices": [{"index": 1, "text": "b"}, {"index": 0, "text": "a"}]}
    assert [c["text"] for c in choices_of(body, SERVER)] == ["a", "b"]
    with pytest.raises(ServerError, match="without choices"):
        choices_of({"choices": []}, SERVER)


def test_a_candidate_outside_the_top_k_scores_minus_infinity_and_is_counted() -> None:
    values, missing = candidate_logprobs({" A": -0.5, " B": -1.0}, [" A", " B", " C"])
    assert values[:2] == (-0.5, -1.0)
    assert values[2] == -math.inf
    assert missing == 1


def test_no_logprobs_says_direct_needs_them() -> None:
    with pytest.raises(ServerError, match="returned no logprobs; direct letter scoring needs"):
        first_top_logprobs({"text": " A", "logprobs": None}, SERVER)


def test_empty_logprobs_after_an_end_of_sequence_say_how_to_ban_it() -> None:
    choice = {"text": "", "finish_reason": "stop", "logprobs": {"top_logprobs": []}}
    with pytest.raises(ServerError, match=r"end-of-sequence token came first.*can be banned"):
        first_top_logprobs(choice, SERVER)


def test_samples_are_counted_from_their_tokens_and_checked_against_usage() -> None:
    choices = [{"logprobs": {"tokens": ["a", "b"]}}, {"logprobs": {"tokens": ["c"]}}]
    assert completion_token_counts(choices, Usage(10, 3), SERVER) == [2, 1]
    assert completion_token_counts(choices[:1], Usage(10, 9), SERVER) == [9]
    with pytest.raises(ServerError, match="usage says 4 completion tokens"):
        completion_token_counts(choices, Usage(10, 4), SERVER)
    with pytest.raises(ServerError, match="without their tokens"):
        completion_token_counts([{}, {}], Usage(10, 4), SERVER)


def _echoed(tokens: list[str], values: list[float | None], tops: list[Any]) -> dict[str, Any]:
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    return {
        "logprobs": {
            "tokens": tokens,
            "token_logprobs": values,
            "top_logprobs": tops,
            "text_offset": offsets,
        }
    }


def test_echoed_tokens_past_the_prompt_are_the_scored_continuation() -> None:
    choice = _echoed(["Answer", ":", " Par", "is"], [None, -1.0, -2.0, -0.5], [None] * 4)
    assert echoed_continuation(choice, Usage(4, 1), len("Answer:"), SERVER) == (-2.5, 2)


def test_echo_checks_out_when_both_readings_of_a_position_agree() -> None:
    text = "Answer: Paris"
    choice = _echoed(
        ["Answer", ":", " Paris"],
        [None, -1.0, -2.0],
        [None, {":": -1.0}, {" Rome": -0.7, " Paris": -2.0}],
    )
    shorter_next = {" Rome": -0.7, " Paris": -2.01, " London": -3.0}
    assert echo_problem(choice, Usage(3, 1), text, shorter_next) is None
    shifted = {" is": -0.2, " Paris": -5.0}
    assert "shifted by one token" in str(echo_problem(choice, Usage(3, 1), text, shifted))


def test_echo_that_drops_or_ignores_prompt_tokens_is_a_problem() -> None:
    choice = _echoed(["Answer", ":"], [None, -1.0], [None, {":": -1.0}])
    assert echo_problem(choice, Usage(3, 1), "Answer: Paris", {}) == (
        "its echo lists 2 tokens for a prompt of 3 tokens"
    )
    assert "ignores echo" in str(echo_problem({"logprobs": None}, Usage(3, 1), "x", {}))


def test_vllm_prompt_logprobs_sum_the_continuations_own_tokens() -> None:
    choice = {
        "prompt_logprobs": [
            None,
            {"7": {"logprob": -1.0, "rank": 1}},
            {"9": {"logprob": -0.5, "rank": 2}, "4": {"logprob": -0.2, "rank": 1}},
        ]
    }
    assert prompt_logprobs_sum(choice, [3, 7, 9], 2, SERVER) == -0.5
    with pytest.raises(ServerError, match=r"returned no prompt_logprobs.*score=letters"):
        prompt_logprobs_sum({}, [3, 7, 9], 2, SERVER)


def test_a_served_spec_splits_into_base_url_and_model_name() -> None:
    served = parse_served(" http://127.0.0.1:8000/v1/#smollm2-135m ")
    assert (served.base_url, served.name) == ("http://127.0.0.1:8000/v1", "smollm2-135m")
    assert served.root_url == "http://127.0.0.1:8000"
    assert parse_served("https://models.example/v1").host == "models.example:443"
    assert parse_served("http://h:1/v1").label("m") == "http://h:1/v1#m"
    assert is_served("HTTPS://h/v1")
    assert not is_served("smollm2-135m")


@pytest.mark.parametrize("spec", ["http:///v1", "http://h:port/v1"])
def test_a_served_spec_without_a_usable_host_is_a_model_error(spec: str) -> None:
    with pytest.raises(ModelError, match="http"):
        parse_served(spec)


def test_a_url_is_never_resolved_as_a_local_model() -> None:
    with pytest.raises(ModelError, match="served model's URL"):
        resolve_model("http://127.0.0.1:8000/v1")
    key = model_spec("http://127.0.0.1:8000/v1#m", None)
    assert (key.label, key.location, key.gguf_file) == (
        "http://127.0.0.1:8000/v1#m",
        "http://127.0.0.1:8000/v1#m",
        None,
    )
