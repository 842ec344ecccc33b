"""Reading OpenAI completion responses: usage, choices, log-probabilities (pure).

Every function takes the decoded JSON of one ``/v1/completions`` answer and
the server's name for messages, and raises a one-line
:class:`~pytest_energy.errors.ServerError` for an answer that cannot be used:
no ``usage`` (token counts are never guessed), no choices, no log-probabilities
where they were asked for.

Top log-probabilities come keyed by token text (``{" A": -0.9, ...}``); a
candidate missing from the top-k counts as minus infinity and is counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from pytest_energy.errors import ServerError

# The echo check: a prompt position's log-probabilities read twice (echoed, and as
# the next token of the shorter prompt) agree within this, in nats.
ECHO_TOLERANCE = 0.05


@dataclass(frozen=True)
class Usage:
    """Token counts of one response, as the server reported them.

    ``cached_tokens`` (``usage.prompt_tokens_details.cached_tokens``, 0 when the
    server does not say) are prompt tokens served from a prefix cache.
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def computed_tokens(self) -> int:
        """Prompt tokens the server computed for this request."""
        return self.prompt_tokens - self.cached_tokens


def usage_of(body: Mapping[str, Any], server: str) -> Usage:
    """The response's ``usage``; a response without it is an error, never a guess."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not (_count(prompt) and _count(completion)):
        raise ServerError(
            f"{server} sent a completion without usage token counts; pytest-energy takes "
            "tokens from usage and never guesses them: use a server that reports usage"
        )
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached_tokens = min(cached, prompt) if _count(cached) else 0
    return Usage(prompt, completion, cached_tokens)


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def choices_of(body: Mapping[str, Any], server: str) -> list[dict[str, Any]]:
    """The response's choices, in ``index`` order."""
    choices = body.get("choices")
    if (
        not isinstance(choices, list)
        or not choices
        or not all(isinstance(c, dict) for c in choices)
    ):
        raise ServerError(f"{server} sent a completion without choices")
    return sorted(
        choices, key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0
    )


def first_top_logprobs(choice: Mapping[str, Any], server: str) -> dict[str, float]:
    """The top log-probabilities of the first generated token.

    An answer without log-probabilities says why in the error: the server
    ignores ``logprobs``, or it ended the text before a first token (its greedy
    next token was an end-of-sequence token that could not be banned).
    """
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        raise ServerError(
            f"{server} returned no logprobs; direct letter scoring needs a server that "
            "returns top logprobs (logprobs=20) for the next token"
        )
    tops = logprobs.get("top_logprobs")
    if not isinstance(tops, list) or not tops or not isinstance(tops[0], dict):
        raise ServerError(
            f"{server} returned no logprobs for the next token (finish_reason "
            f"{choice.get('finish_reason')!r}): its end-of-sequence token came first; serve "
            "the model under a name pytest-energy resolves (an alias, a Hugging Face id or a "
            "local path) so that token can be banned, or use vLLM"
        )
    return {str(k): float(v) for k, v in tops[0].items() if isinstance(v, (int, float))}


def candidate_logprobs(
    top: Mapping[str, float], keys: Sequence[str]
) -> tuple[tuple[float, ...], int]:
    """Each candidate's log-probability (minus infinity when outside the top-k), and
    how many were missing."""
    values = tuple(top.get(key, -math.inf) for key in keys)
    return values, sum(1 for key in keys if key not in top)


def completion_token_counts(
    choices: Sequence[Mapping[str, Any]], usage: Usage, server: str
) -> list[int]:
    """Generated tokens per choice: usage's count for one choice; for several, each
    choice's own token list (asked for with ``logprobs``), checked against usage."""
    if len(choices) == 1:
        return [usage.completion_tokens]
    counts = []
    for choice in choices:
        logprobs = choice.get("logprobs")
        tokens = logprobs.get("tokens") if isinstance(logprobs, dict) else None
        if not isinstance(tokens, list):
            raise ServerError(
                f"{server} sent {len(choices)} samples without their tokens, so each "
                "sample's token count is unknown; use a server that returns logprobs"
            )
        counts.append(len(tokens))
    if sum(counts) != usage.completion_tokens:
        raise ServerError(
            f"{server} sent samples of {sum(counts)} tokens but usage says "
            f"{usage.completion_tokens} completion tokens"
        )
    return counts


def echoed_continuation(
    choice: Mapping[str, Any], usage: Usage, prompt_chars: int, server: str
) -> tuple[float, int]:
    """Summed log-probability and token count of the echoed prompt's tokens that
    reach past ``prompt_chars`` characters (the continuation being scored)."""
    lists = _echo_lists(choice, usage)
    if isinstance(lists, str):
        raise ServerError(f"{server} cannot score a continuation: {lists}")
    total, count = 0.0, 0
    for token, value, offset in zip(*lists, strict=True):
        if offset + len(token) > prompt_chars:
            if not isinstance(value, (int, float)):
                raise ServerError(f"{server} echoed a scored token without its logprob")
            total += float(value)
            count += 1
    return total, count


def echoed_tokens(choice: Mapping[str, Any], usage: Usage) -> list[str] | None:
    """The echoed prompt's token texts, or None when the prompt was not echoed."""
    lists = _echo_lists(choice, usage)
    return None if isinstance(lists, str) else lists[0]


def echo_problem(
    echoed: Mapping[str, Any], usage: Usage, text: str, shorter_next: Mapping[str, float]
) -> str | None:
    """Why echoed prompt log-probabilities cannot be trusted, or None when they check out.

    ``echoed`` echoes ``text`` (its last prompt token is t); ``shorter_next`` is
    the top next-token distribution after ``text`` without t. Both describe the
    same position, so they must agree: llama-cpp-python's echo is shifted by
    one token (its issue #1983) and llama.cpp's server ignores ``echo``.
    """
    lists = _echo_lists(echoed, usage)
    if isinstance(lists, str):
        return lists
    tokens, values, _ = lists
    if values[0] is not None or not text.endswith("".join(tokens)[-8:]):
        return "it does not echo the prompt's tokens"
    tops = echoed["logprobs"].get("top_logprobs")
    last = tops[len(tokens) - 1] if isinstance(tops, list) and len(tops) >= len(tokens) else None
    if not isinstance(last, dict):
        return "it sends no top log-probabilities for echoed prompt tokens"
    shared = [k for k in last if k in shorter_next]
    if not shared or any(abs(float(last[k]) - shorter_next[k]) > ECHO_TOLERANCE for k in shared):
        return "its echoed prompt log-probabilities are shifted by one token"
    return None


def _echo_lists(
    choice: Mapping[str, Any], usage: Usage
) -> tuple[list[str], list[Any], list[int]] | str:
    """The echoed prompt's tokens, log-probabilities and character offsets, or why not."""
    logprobs = choice.get("logprobs")
    found = [
        logprobs.get(key) if isinstance(logprobs, dict) else None
        for key in ("tokens", "token_logprobs", "text_offset")
    ]
    tokens, values, offsets = (v if isinstance(v, list) else [] for v in found)
    if not tokens or len(values) != len(tokens) or len(offsets) != len(tokens):
        return "it ignores echo (no log-probabilities for the prompt's tokens)"
    n = usage.prompt_tokens
    if len(tokens) <= usage.completion_tokens < n:
        return "it ignores echo (log-probabilities for the generated tokens only)"
    if len(tokens) < n:
        return f"its echo lists {len(tokens)} tokens for a prompt of {n} tokens"
    return [str(t) for t in tokens[:n]], values[:n], [int(o) for o in offsets[:n]]


def prompt_logprobs_sum(
    choice: Mapping[str, Any], ids: Sequence[int], start: int, server: str
) -> float:
    """vLLM's ``prompt_logprobs``: the summed log-probability of ``ids[start:]``."""
    positions = choice.get("prompt_logprobs")
    if not isinstance(positions, list) or len(positions) < len(ids):
        raise ServerError(
            f"{server} returned no prompt_logprobs; direct:score=cloze needs them "
            "(vLLM's prompt_logprobs): use direct (score=letters) or the in-process backend"
        )
    total = 0.0
    for position in range(start, len(ids)):
        entry = positions[position]
        value = entry.get(str(ids[position])) if isinstance(entry, dict) else None
        if isinstance(value, dict):
            value = value.get("logprob")
        if not isinstance(value, (int, float)):
            raise ServerError(f"{server} sent prompt_logprobs without the prompt's own token")
        total += float(value)
    return total
