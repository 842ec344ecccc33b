"""Batched inference with measured prefill and decode windows.

The only module (with :mod:`pytest_energy.models`) that imports torch and
transformers, at first use. Generation is a hand-written decode loop rather
than ``model.generate`` for three reasons that matter to energy figures:

* prefill and decode run in separate meter windows, so ``prefill_j`` and
  ``decode_j`` are measured, not apportioned;
* rows that reach EOS leave the batch (their KV cache rows are dropped), so a
  finished answer stops costing compute;
* ``samples=k`` computes the prompt once and expands the KV cache k times
  (majority vote shares one prefill);
* prompts that begin with the same tokens (chat preamble, subject header, one
  subject's few-shot examples) share one pass over that prefix: its KV cache
  is computed once and each prompt's remaining tokens run on a copy of it
  (:mod:`pytest_energy.prefixes` finds the groups, :mod:`.engine_cache` holds
  the cache plumbing). ``share_prefixes = False`` computes every prompt in full.

Token accounting: ``input_tokens`` counts the prompt's real tokens (padding
excluded); ``computed_input_tokens`` counts the prompt tokens the model really
ran for that row: its own suffix, plus a shared prefix for the first member of
its group only, so the computed tokens of a call sum to what was computed.
``output_tokens`` counts generated tokens up to and including the stop token
(padding and anything after the stop never count). Meter windows account
computed tokens for prefill and the whole context for decode.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_energy.batching import GENERATE_PADDING, SCORE_PADDING, auto_batch_size
from pytest_energy.decoding import DecodeState
from pytest_energy.engine_cache import Prefix, PromptPasses
from pytest_energy.engine_results import (
    ChoiceScores,
    Force,
    Generated,
    Generation,
    Ledger,
    Scored,
)
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.models import ModelSpec, load_model
from pytest_energy.prefixes import MIN_SAVED_TOKENS, MIN_SHARED_TOKENS, SuffixBatch


@dataclass(frozen=True)
class _Sampling:
    samples: int
    temperature: float
    generator: Any
    stop_at_eos: bool
    stop: tuple[str, ...] = ()  # strings that end a row (the prompt's ``stop``)


class Engine:
    """A loaded model with its tokenizer, measured by the session's meter.

    ``share_prefixes`` (default on) computes a prefix that many prompts of one
    call share once; off, every prompt is computed in full (the reference path).
    ``min_shared_tokens`` and ``min_saved_tokens`` tune when a prefix is worth
    its own pass (see :mod:`pytest_energy.prefixes`).
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        tokenizer: Any,
        *,
        device: str,
        meter: EnergyMeter,
        batch_size: int | None = None,
        share_prefixes: bool = True,
    ) -> None:
        import torch

        self._torch = torch
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.meter = meter
        self.share_prefixes = share_prefixes
        self.min_shared_tokens = MIN_SHARED_TOKENS
        self.min_saved_tokens = MIN_SAVED_TOKENS
        free = torch.cuda.mem_get_info(device)[0] if device.startswith("cuda") else None
        self.batch_size = batch_size or auto_batch_size(device, model.config, free)
        # Padded tokens one forward pass may take: prefill on a CPU is compute
        # bound already at batch 1, so big batches only add padding and memory.
        self.token_budget = 4096 if device == "cpu" else 65536
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.stop_ids = sorted(_stop_token_ids(model, tokenizer))
        self.sync: Callable[[], None] | None = (
            torch.cuda.synchronize if device.startswith("cuda") else None
        )
        self._passes = PromptPasses(self)
        self._warm_up()

    def _warm_up(self) -> None:
        # The first forward pass pays one-off costs (kernel selection, memory
        # pools) that belong to no evaluation; run it outside any window.
        with self._torch.inference_mode():
            self._passes.forward(self._tokenize(["warm up"]), None, use_cache=False)

    @classmethod
    def load(
        cls,
        spec: ModelSpec,
        *,
        device: str,
        meter: EnergyMeter,
        batch_size: int | None = None,
        cache_dir: Any = None,
        dtype: str = "auto",
        share_prefixes: bool = True,
    ) -> Engine:
        model, tokenizer = load_model(spec, device=device, cache_dir=cache_dir, dtype=dtype)
        return cls(
            spec,
            model,
            tokenizer,
            device=device,
            meter=meter,
            batch_size=batch_size,
            share_prefixes=share_prefixes,
        )

    # -- prompts -------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def forced_answer_recomputes(self) -> bool:
        """No: the cue goes through the reasoning's KV cache."""
        return False

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def fingerprint(self) -> dict[str, str]:
        return {
            "model": self.spec.label,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": self.device,
            "torch": str(self._torch.__version__),  # TorchVersion does not pickle for xdist
            "transformers": importlib.metadata.version("transformers"),
        }

    # -- scoring ---------------------------------------------------------------
    def score(
        self, prompts: Sequence[str], candidates: Sequence[str], ledger: Ledger
    ) -> list[Scored]:
        """Log-probability of each candidate's first token as the next token of each prompt."""
        torch = self._torch
        ids = [self._first_token(c) for c in candidates]
        rows = self._tokenize(prompts)
        out: list[Scored | None] = [None] * len(prompts)
        for part, prefix in self._passes.batches(rows, self.batch_size, SCORE_PADDING, ledger):
            with torch.inference_mode(), self._passes.measured("prefill", ledger) as w:
                result = self._passes.forward(part.suffixes, prefix, use_cache=False)
                logprobs = torch.log_softmax(result.logits.float(), dim=-1)[:, ids].tolist()
                for suffix in part.suffixes:
                    w.account("prefill", len(suffix), 0)
            for row, i in enumerate(part.rows):
                out[i] = Scored(
                    part.input_tokens[row], part.computed_tokens[row], tuple(logprobs[row])
                )
        return [s for s in out if s is not None]

    def score_choices(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]], ledger: Ledger
    ) -> list[ChoiceScores]:
        """Log-likelihood of each choice's whole text after its prompt (see :class:`ChoiceScores`).

        Prompt and choice are tokenized apart and their ids concatenated (as
        lm-evaluation-harness does): tokenizing prompt + choice together can
        merge tokens across the boundary, and then the prompt's tokens are no
        longer a prefix of the joint ones. Put the separating space in the
        choice (``" " + text`` after ``Answer:``). Each prompt is computed once
        (on a shared prefix, as in :meth:`score`); its choices run as one batch
        on its cache.
        """
        if len(choices) != len(prompts):
            raise ValueError(
                f"score_choices: {len(prompts)} prompts but {len(choices)} choice lists"
            )
        torch = self._torch
        rows = self._tokenize(prompts)
        if any(not r for r in rows):
            raise ValueError("score_choices: an empty prompt has no next-token distribution")
        conts = [self._tokenize(list(c)) if c else [] for c in choices]
        widest = max(1, max((len(c) for c in choices), default=1))
        out: list[ChoiceScores | None] = [None] * len(prompts)
        rows_per_batch = max(1, self.batch_size // widest)
        for part, prefix in self._passes.batches(rows, rows_per_batch, SCORE_PADDING, ledger):
            with torch.inference_mode(), self._passes.measured("prefill", ledger) as w:
                result = self._passes.forward(part.suffixes, prefix, use_cache=True)
                sums, fed = self._passes.continuations(result, [conts[i] for i in part.rows])
                for n in [len(s) for s in part.suffixes] + fed:
                    w.account("prefill", n, 0)
            for row, i in enumerate(part.rows):
                lengths = tuple(len(c) for c in conts[i])
                out[i] = ChoiceScores(
                    input_tokens=part.input_tokens[row] + sum(lengths),
                    computed_input_tokens=part.computed_tokens[row]
                    + sum(max(0, n - 1) for n in lengths),
                    logprobs=tuple(sums[row]),
                    tokens=lengths,
                    chars=tuple(len(text) for text in choices[i]),
                )
        return [s for s in out if s is not None]

    # -- generation --------------------------------------------------------------
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
        """Greedy (temperature 0) or sampled continuations, ``samples`` per prompt.

        ``max_new_tokens`` is one limit or one per prompt (rows with different
        limits still share a batch). With ``force``, a row that reaches its limit
        without a stop token is not dropped: the cue is fed through its KV cache
        and the candidates' log-probabilities after it are returned (controlled
        reasoning's forced answer, at the cost of a few decode steps).
        ``stop_at_eos=False`` generates exactly the limit (calibration sweeps).
        ``stop`` strings end a row once its text contains one (the text keeps it).
        """
        limits = (
            [max_new_tokens] * len(prompts)
            if isinstance(max_new_tokens, int)
            else list(max_new_tokens)
        )
        if len(limits) != len(prompts) or any(n < (0 if force else 1) for n in limits):
            raise ValueError("max_new_tokens: one limit >= 1 (>= 0 with force) per prompt")
        gen = self._torch.Generator(device=self.device).manual_seed(seed)
        rows = self._tokenize(prompts)
        out: list[Generated | None] = [None] * len(prompts)
        rows_per_batch = max(1, self.batch_size // samples)
        sampling = _Sampling(samples, temperature, gen, stop_at_eos, tuple(stop))
        for part, prefix in self._passes.batches(rows, rows_per_batch, GENERATE_PADDING, ledger):
            results = self._generate_batch(
                part, prefix, [limits[i] for i in part.rows], ledger, sampling, force
            )
            for i, result in zip(part.rows, results, strict=True):
                out[i] = result
        return [g for g in out if g is not None]

    def _generate_batch(
        self,
        part: SuffixBatch,
        prefix: Prefix | None,
        limits: list[int],
        ledger: Ledger,
        sampling: _Sampling,
        force: Force | None,
    ) -> list[Generated]:
        torch = self._torch
        samples = sampling.samples
        lengths = part.input_tokens
        stop = set(self.stop_ids) if sampling.stop_at_eos else set()
        cue = self._tokenize([force.cue])[0] if force else []
        candidates = [self._first_token(c) for c in force.candidates] if force else []
        with torch.inference_mode():
            with self._passes.measured("prefill", ledger) as w:
                result = self._passes.forward(part.suffixes, prefix, use_cache=True)
                for suffix in part.suffixes:
                    w.account("prefill", len(suffix), 0)
            cache, logits = result.cache, result.logits
            mask, last_pos = result.mask, result.last_pos
            if samples > 1:
                # One prompt pass serves every sample: expand the cache, not the prompt.
                cache.batch_repeat_interleave(samples)
                logits = logits.repeat_interleave(samples, dim=0)
                mask = mask.repeat_interleave(samples, dim=0)
                last_pos = last_pos.repeat_interleave(samples, dim=0)
            total = logits.shape[0]
            limit = [limits[r // samples] for r in range(total)]
            decode = DecodeState(
                total,
                cue_at=[0 if force and n == 0 else -1 for n in limit],
                stop_strings=sampling.stop,
                decode=lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
            )
            active = list(range(total))
            with self._passes.measured("decode", ledger) as w:
                while active:
                    picked = self._pick(logits, sampling.temperature, sampling.generator)
                    feed, keep = decode.step(
                        active, picked.tolist(), logits, limit, stop, cue, candidates
                    )
                    if not keep:
                        break
                    if len(keep) < len(active):
                        idx = torch.tensor(keep, device=self.device)
                        cache.batch_select_indices(idx)
                        mask, last_pos = mask[idx], last_pos[idx]
                    active = [active[j] for j in keep]
                    mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                    last_pos = last_pos + 1
                    logits = self.model(
                        input_ids=torch.tensor(feed, device=self.device)[:, None],
                        attention_mask=mask,
                        position_ids=last_pos[:, None],
                        use_cache=True,
                        **{self._passes.cache_arg: cache},
                    ).logits[:, -1, :]
                for r in range(total):
                    w.account("decode", lengths[r // samples], decode.output_tokens(r, cue))
        texts = self.tokenizer.batch_decode(decode.tokens, skip_special_tokens=True)
        return [
            Generated(
                input_tokens=lengths[p],
                computed_input_tokens=part.computed_tokens[p],
                samples=tuple(
                    Generation(
                        texts[r],
                        decode.output_tokens(r, cue),
                        decode.stopped[r],
                        decode.forced[r],
                    )
                    for r in range(p * samples, (p + 1) * samples)
                ),
            )
            for p in range(len(part.suffixes))
        ]

    # -- helpers -------------------------------------------------------------------
    def _pick(self, logits: Any, temperature: float, gen: Any) -> Any:
        torch = self._torch
        if temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=gen).squeeze(1)

    def _tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        ids: list[list[int]] = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        return ids

    def _first_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return int(ids[0])


def _stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


__all__ = [
    "ChoiceScores",
    "Engine",
    "Force",
    "Generated",
    "Generation",
    "Ledger",
    "Scored",
]
