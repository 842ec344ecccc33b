"""Cloze scoring through a served model: each choice's log-likelihood after its prompt.

vLLM computes it directly: its ``prompt_logprobs`` on the prompt's and the
choice's token ids (tokenized apart, as the in-process engine does). Other
servers are asked to ``echo`` the prompt with ``logprobs``; that answer is
checked once per backend against a next-token request for the same position,
because llama-cpp-python shifts echoed log-probabilities by one token (its
issue #1983) and drops special tokens from them, and llama.cpp's server
ignores ``echo``. A wrong echo is a one-line error naming the alternatives,
never a score.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_energy.backends.http import Calls
from pytest_energy.backends.responses import (
    Usage,
    choices_of,
    echo_problem,
    echoed_continuation,
    echoed_tokens,
    first_top_logprobs,
    prompt_logprobs_sum,
    usage_of,
)
from pytest_energy.engine_results import ChoiceScores, Ledger
from pytest_energy.errors import ServerError

if TYPE_CHECKING:
    from pytest_energy.backends.openai import Job, OpenAIBackend


class Cloze:
    """The cloze scoring of one served backend (remembers that its echo checked out)."""

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend = backend
        self._echo_checked = False

    def score_choices(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]], ledger: Ledger
    ) -> list[ChoiceScores]:
        """Log-likelihood of each choice's text after its prompt."""
        backend = self.backend
        if len(choices) != len(prompts):
            raise ValueError(
                f"score_choices: {len(prompts)} prompts but {len(choices)} choice lists"
            )
        if not prompts:
            return []
        jobs: list[Job[ChoiceScores]]
        if backend.info.kind == "vllm":
            ids = [
                (backend.tokens.ids(p), [backend.tokens.ids(c) for c in cs])
                for p, cs in zip(prompts, choices, strict=True)
            ]
            jobs = [
                functools.partial(self._by_ids, prompt=p, conts=c, chars=[len(t) for t in cs])
                for (p, c), cs in zip(ids, choices, strict=True)
            ]
        else:
            self._check_echo(prompts[0] + choices[0][0])
            jobs = [
                functools.partial(self._by_echo, prompt=p, conts=list(cs))
                for p, cs in zip(prompts, choices, strict=True)
            ]
        return backend.measured("prefill", ledger, jobs)

    async def _by_echo(
        self, calls: Calls, prompt: str, conts: list[str]
    ) -> tuple[ChoiceScores, list[Usage]]:
        backend = self.backend
        fields = {"echo": True, "max_tokens": 1, "temperature": 0.0, "logprobs": 1}
        bodies = await asyncio.gather(
            *(
                calls.post_json(backend.completions_url, backend.request_body(prompt + c, fields))
                for c in conts
            )
        )
        usages = [usage_of(b, backend.info.label) for b in bodies]
        scored = [
            echoed_continuation(
                choices_of(b, backend.info.label)[0], u, len(prompt), backend.info.label
            )
            for b, u in zip(bodies, usages, strict=True)
        ]
        lengths = tuple(n for _, n in scored)
        prompt_tokens = usages[0].prompt_tokens - lengths[0] if conts else 0
        return ChoiceScores(
            input_tokens=prompt_tokens + sum(lengths),
            computed_input_tokens=sum(u.computed_tokens for u in usages),
            logprobs=tuple(total for total, _ in scored),
            tokens=lengths,
            chars=tuple(len(c) for c in conts),
        ), usages

    async def _by_ids(
        self, calls: Calls, prompt: list[int], conts: list[list[int]], chars: list[int]
    ) -> tuple[ChoiceScores, list[Usage]]:
        backend = self.backend
        fields = {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1}
        bodies = await asyncio.gather(
            *(
                calls.post_json(backend.completions_url, backend.request_body(prompt + c, fields))
                for c in conts
            )
        )
        label = backend.info.label
        usages = [usage_of(b, label) for b in bodies]
        sums = [
            prompt_logprobs_sum(choices_of(b, label)[0], prompt + c, len(prompt), label)
            for b, c in zip(bodies, conts, strict=True)
        ]
        return ChoiceScores(
            input_tokens=len(prompt) + sum(len(c) for c in conts),
            computed_input_tokens=sum(u.computed_tokens for u in usages),
            logprobs=tuple(sums),
            tokens=tuple(len(c) for c in conts),
            chars=tuple(chars),
        ), usages

    def _check_echo(self, text: str) -> None:
        """Once per backend: do echoed prompt log-probabilities describe the right positions?"""
        if self._echo_checked:
            return
        backend = self.backend
        label = backend.info.label
        fields = {"echo": True, "max_tokens": 1, "temperature": 0.0, "logprobs": 1}

        async def check(calls: Calls) -> str | None:
            body = await calls.post_json(
                backend.completions_url, backend.request_body(text, fields)
            )
            usage = usage_of(body, label)
            choice = choices_of(body, label)[0]
            tokens = echoed_tokens(choice, usage)
            shorter_next: dict[str, float] = {}
            if tokens and len(tokens) > 1 and text.endswith(tokens[-1]) and tokens[-1]:
                shorter = await calls.post_json(
                    backend.completions_url,
                    backend.request_body(text[: -len(tokens[-1])], backend.next_token_fields(())),
                )
                shorter_next = first_top_logprobs(choices_of(shorter, label)[0], label)
            return echo_problem(choice, usage, text, shorter_next)

        problem = backend.client.run([check])[0]
        if problem is not None:
            raise ServerError(
                f"{label} cannot score direct:score=cloze: {problem} (llama-cpp-python issue "
                "#1983; llama.cpp's server ignores echo); use direct (score=letters), a vLLM "
                "server (prompt_logprobs), or the in-process backend"
            )
        self._echo_checked = True
