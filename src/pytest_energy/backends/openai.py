"""The served backend: a model behind an OpenAI-compatible API (``/v1/completions``).

``energy_eval("http://127.0.0.1:8000/v1", "direct")`` runs the strategies
through vLLM, SGLang, TGI, llama.cpp's ``llama-server`` or llama-cpp-python
instead of the in-process engine. What each call sends:

* ``score`` (``direct`` letters, forced answers): ``max_tokens=1``,
  ``temperature=0``, the top ``logprobs=20`` of the next token, and
  ``logit_bias`` banning the special tokens (end of sequence) when the tokenizer
  is known; vLLM also gets ``logprob_token_ids`` (the candidates' ids). A
  candidate outside the top-k scores minus infinity and is counted in
  ``details["letters_missing"]``.
* ``score_choices`` (cloze, :mod:`.cloze`): vLLM's ``prompt_logprobs`` on the prompt's and the
  choice's token ids; other servers ``echo`` with ``logprobs``, checked once
  per session against a next-token request for the same position (a shifted
  or ignored echo is an error, never a score).
* ``generate``: one request per prompt with ``n=samples`` (the server shares
  the prompt); a server that answers fewer samples (llama-cpp-python ignores
  ``n``) is asked again for the rest, with the next seeds. With ``force``, a
  sample that used all its tokens gets one more request: prompt, text and cue,
  scored like ``score``.

Requests run concurrently (``energy_concurrency``) with retries and a timeout
(``energy_request_timeout``, :mod:`.http`). Tokens come from each response's
``usage``: ``input_tokens`` is the prompt's count, ``computed_input_tokens`` the
prompt tokens of every request less those the server reports as cached, so
``computed_input_tokens + output_tokens`` of a call equals its usage totals. Each
call is one phase window of the session's meter (``prefill`` for scoring,
``decode`` for generation, whose prompt is computed in the same request).

Exclusivity: :meth:`OpenAIBackend.traffic_window`, which the measured repeat
calls around its window when a backend has it, compares the tokens the server's
Prometheus counters served with those our usage accounted (:mod:`.traffic`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pytest_energy.backends.cloze import Cloze
from pytest_energy.backends.http import RETRY_DELAYS_S, Calls, ServerClient
from pytest_energy.backends.responses import (
    Usage,
    candidate_logprobs,
    choices_of,
    completion_token_counts,
    first_top_logprobs,
    usage_of,
)
from pytest_energy.backends.server import ServedModel, ServerInfo, discover, parse_served
from pytest_energy.backends.tokens import ServedTokens, local_tokenizer
from pytest_energy.backends.traffic import ServerTraffic, Tally, TrafficWindow
from pytest_energy.engine_results import ChoiceScores, Force, Generated, Generation, Ledger, Scored
from pytest_energy.errors import ServerError
from pytest_energy.meters.base import EnergyMeter, Phase
from pytest_energy.models import ModelSpec

T = TypeVar("T")
Job = Callable[[Calls], Awaitable[tuple[T, list[Usage]]]]
TOP_LOGPROBS = 20


@dataclass(frozen=True)
class _Draw:
    max_tokens: int
    samples: int
    temperature: float
    seed: int
    fields: dict[str, Any]  # stop strings, EOS handling
    exact: bool = False  # generate exactly max_tokens (past end of sequence)


class OpenAIBackend:
    """A served model, measured by the session's meter (see the module docstring).

    Build it with :meth:`connect`. ``sync`` is None: nothing on this side
    needs synchronising before a meter reading.
    """

    sync: Callable[[], None] | None = None

    def __init__(
        self,
        served: ServedModel,
        info: ServerInfo,
        client: ServerClient,
        tokens: ServedTokens,
        meter: EnergyMeter,
        traffic: ServerTraffic | None = None,
    ) -> None:
        self.served = served
        self.info = info
        self.client = client
        self.tokens = tokens
        self.meter = meter
        self.traffic = traffic
        self.spec = ModelSpec(label=served.label(info.model_id), location=served.base_url)
        self.completions_url = f"{served.base_url}/completions"
        self._cloze = Cloze(self)

    @classmethod
    def connect(
        cls,
        model: str,
        *,
        meter: EnergyMeter,
        concurrency: int = 16,
        timeout_s: float = 300.0,
        rootdir: Path | None = None,
        transport: Any = None,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ) -> OpenAIBackend:
        """Ask the server at ``model`` (``http(s)://HOST:PORT/v1[#NAME]``) what it serves
        and load the model's tokenizer when its name resolves locally. A server on
        this machine makes a ``cpu-estimate`` meter count its CPU time
        (:meth:`~pytest_energy.meters.cpu_estimate.CpuEstimateMeter.count_local_server`)."""
        served = parse_served(model)

        def client(server: str, tally: Tally | None = None) -> ServerClient:
            return ServerClient(
                server,
                concurrency=concurrency,
                timeout_s=timeout_s,
                retry_delays_s=retry_delays_s,
                transport=transport,
                tally=tally,
            )

        info = discover(client(f"server at {served.base_url}"), served)
        tally = Tally()
        api = client(info.label, tally)
        tokens = ServedTokens(local_tokenizer(info.model_id, rootdir), api, served, info)
        traffic = ServerTraffic.of(api, served.root_url, tally)
        count_server = getattr(meter.meter, "count_local_server", None)
        if served.local and callable(count_server):
            count_server()  # cpu-estimate: the server's CPU time, not only ours
        return cls(served, info, api, tokens, meter, traffic)

    # -- what the renderer and the strategies read ------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return self.tokens.has_chat_template

    @property
    def forced_answer_recomputes(self) -> bool:
        """A forced answer is a request of its own, re-sending the prompt and the
        reasoning. vLLM's prefix cache (on by default) holds that context; other
        servers may compute it again (llama-cpp-python keeps one sequence, which the
        next question's request replaces), so the budget allows for it."""
        return self.info.kind != "vllm"

    @property
    def tokenizer(self) -> Any:
        if self.tokens.tokenizer is None:
            raise ServerError(
                f"model {self.info.model_id!r} of {self.info.label} has no local tokenizer; "
                "serve it under a name pytest-energy resolves (an alias such as "
                "smollm2-135m, a Hugging Face id or a local path)"
            )
        return self.tokens.tokenizer

    def count_tokens(self, text: str) -> int:
        return self.tokens.count(text)

    def fingerprint(self) -> dict[str, str]:
        found = {
            "backend": "openai",
            "model": self.spec.label,
            "server": self.served.host,
            "server_model": self.info.model_id,
        }
        if self.info.version is not None:
            found["server_version"] = self.info.version
        return found

    @property
    def local_server(self) -> bool:
        """Whether the server runs on this machine (its CPU time is then not other load)."""
        return bool(self.served.local)

    def traffic_window(self) -> AbstractContextManager[TrafficWindow]:
        """Around a measured window: did the server serve anyone else meanwhile?
        (``exclusive`` None: the server exposes no token counters.)"""
        if self.traffic is None:
            return nullcontext(TrafficWindow())
        return self.traffic.window()

    # -- scoring ------------------------------------------------------------------------
    def score(
        self, prompts: Sequence[str], candidates: Sequence[str], ledger: Ledger
    ) -> list[Scored]:
        """Log-probability of each candidate's first token as the next token of each prompt."""
        keys = [self.tokens.key(c) for c in candidates]
        fields = self.next_token_fields(tuple(candidates))

        async def one(calls: Calls, prompt: str) -> tuple[tuple[Scored, int], list[Usage]]:
            values, missing, usage = await self._next_token(calls, prompt, keys, fields)
            return (Scored(usage.prompt_tokens, usage.computed_tokens, values), missing), [usage]

        done = self.measured("prefill", ledger, [functools.partial(one, prompt=p) for p in prompts])
        _count_missing(ledger, sum(missing for _, missing in done))
        return [scored for scored, _ in done]

    def score_choices(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]], ledger: Ledger
    ) -> list[ChoiceScores]:
        """Log-likelihood of each choice's text after its prompt (cloze, :mod:`.cloze`)."""
        return self._cloze.score_choices(prompts, choices, ledger)

    # -- generation ---------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        ledger: Ledger,
        *,
        max_new_tokens: int | Sequence[int],
        samples: int = 1,
        temperature: float = 0.0,
        seed: int = 0,
        stop_at_eos: bool = True,
        force: Force | None = None,
        stop: Sequence[str] = (),
    ) -> list[Generated]:
        """Continuations as the engine's ``generate`` makes them; ``stop`` strings end a
        generation on the server (the prompt's ``stop``)."""
        limits = (
            [max_new_tokens] * len(prompts)
            if isinstance(max_new_tokens, int)
            else list(max_new_tokens)
        )
        if len(limits) != len(prompts) or any(n < (0 if force else 1) for n in limits):
            raise ValueError("max_new_tokens: one limit >= 1 (>= 0 with force) per prompt")
        fields: dict[str, Any] = {"stop": list(stop)} if stop else {}
        if not stop_at_eos:
            fields |= self._eos_ignored()
        keys = [self.tokens.key(c) for c in force.candidates] if force else []
        forcing = self.next_token_fields(force.candidates) if force else {}
        jobs = []
        for prompt, limit in zip(prompts, limits, strict=True):
            draw = _Draw(limit, samples, temperature, seed, fields, exact=not stop_at_eos)
            n_in = self.count_tokens(prompt) if limit == 0 else None
            jobs.append(
                functools.partial(
                    self._generate_one,
                    prompt=prompt,
                    draw=draw,
                    n_in=n_in,
                    force=(force, keys, forcing) if force else None,
                )
            )
        done = self.measured("decode", ledger, jobs)
        _count_missing(ledger, sum(missing for _, missing in done), force is not None)
        return [generated for generated, _ in done]

    async def _generate_one(
        self,
        calls: Calls,
        prompt: str,
        draw: _Draw,
        n_in: int | None,
        force: tuple[Force, list[str], dict[str, Any]] | None,
    ) -> tuple[tuple[Generated, int], list[Usage]]:
        label = self.info.label
        usages: list[Usage] = []
        drawn: list[tuple[str, int, bool]] = []  # text, tokens, stopped
        while draw.max_tokens > 0 and len(drawn) < draw.samples:
            want = draw.samples - len(drawn)
            fields = {
                "max_tokens": draw.max_tokens,
                "temperature": draw.temperature,
                "seed": draw.seed + len(drawn),
                "n": want,
                **draw.fields,
            }
            if want > 1:
                fields["logprobs"] = 1  # each sample's tokens, to count them
            if draw.exact:
                fields["min_tokens"] = draw.max_tokens
            body = await calls.post_json(self.completions_url, self.request_body(prompt, fields))
            usage = usage_of(body, label)
            choices = choices_of(body, label)[:want]
            counts = completion_token_counts(choices, usage, label)
            usages.append(usage)
            drawn += [
                (str(c.get("text") or ""), n, c.get("finish_reason") != "length")
                for c, n in zip(choices, counts, strict=True)
            ]
        if draw.max_tokens == 0:
            drawn = [("", 0, False)] * draw.samples
        input_tokens = usages[0].prompt_tokens if usages else int(n_in or 0)
        computed = sum(u.computed_tokens for u in usages)
        missing = 0
        out = []
        for text, n, stopped in drawn:
            forced = None
            if force is not None and not stopped:
                cue, keys, scoring = force
                forced, lost, extra = await self._next_token(
                    calls, prompt + text + cue.cue, keys, scoring
                )
                usages.append(extra)
                missing += lost
                cue_tokens = max(0, extra.prompt_tokens - input_tokens - n)
                # The cue counts as output (as in the engine), the re-sent context as input.
                n += cue_tokens + extra.completion_tokens
                computed += max(0, extra.computed_tokens - cue_tokens)
            out.append(Generation(text, n, stopped, forced))
        return (Generated(input_tokens, computed, tuple(out)), missing), usages

    # -- requests -------------------------------------------------------------------------
    def request_body(self, prompt: str | list[int], fields: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.info.model_id, "prompt": prompt, **fields}
        if self.info.kind == "vllm":
            body["add_special_tokens"] = False  # the prompt is rendered in full, as in-process
        return body

    def next_token_fields(self, candidates: tuple[str, ...]) -> dict[str, Any]:
        fields: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0, "logprobs": TOP_LOGPROBS}
        banned = self.tokens.banned()
        if banned:
            fields["logit_bias"] = banned
        ids = self.tokens.first_ids(candidates) if candidates else None
        if self.info.kind == "vllm" and ids:
            fields["logprob_token_ids"] = ids
        return fields

    def _eos_ignored(self) -> dict[str, Any]:
        """Fields that keep generating past end of sequence (calibration sweeps)."""
        fields: dict[str, Any] = {}
        banned = self.tokens.banned()
        if banned:
            fields["logit_bias"] = banned
        if self.info.kind == "vllm":
            fields["ignore_eos"] = True
        return fields

    async def _next_token(
        self, calls: Calls, prompt: str, keys: Sequence[str], fields: dict[str, Any]
    ) -> tuple[tuple[float, ...], int, Usage]:
        body = await calls.post_json(self.completions_url, self.request_body(prompt, fields))
        usage = usage_of(body, self.info.label)
        top = first_top_logprobs(choices_of(body, self.info.label)[0], self.info.label)
        values, missing = candidate_logprobs(top, keys)
        return values, missing, usage

    def measured(self, phase: Phase, ledger: Ledger, jobs: Sequence[Job[T]]) -> list[T]:
        """Run ``jobs`` concurrently inside one phase window, accounting usage's tokens."""
        with self.meter.window(None, strict=False) as window:
            done = self.client.run(jobs)
            for _, usages in done:
                for usage in usages:
                    window.account("prefill", usage.computed_tokens, 0)
                    if phase == "decode":
                        window.account("decode", usage.prompt_tokens, usage.completion_tokens)
        ledger.add(phase, window)
        return [value for value, _ in done]


def _count_missing(ledger: Ledger, missing: int, only_if_any: bool = False) -> None:
    """Candidates outside the server's top-k (scored minus infinity), per evaluation."""
    if missing or not only_if_any:
        ledger.details["letters_missing"] = ledger.details.get("letters_missing", 0) + missing


__all__ = ["TOP_LOGPROBS", "OpenAIBackend"]
