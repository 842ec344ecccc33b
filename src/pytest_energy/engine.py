"""Batched inference with measured prefill and decode windows.

The only module (with :mod:`pytest_energy.models`) that imports torch and
transformers, at first use. Generation is a hand-written decode loop rather
than ``model.generate`` for three reasons that matter to energy figures:

* prefill and decode run in separate meter windows, so ``prefill_j`` and
  ``decode_j`` are measured, not apportioned;
* rows that reach EOS leave the batch (their KV cache rows are dropped), so a
  finished answer stops costing compute;
* ``samples=k`` computes the prompt once and expands the KV cache k times
  (majority vote shares one prefill).

Token accounting: ``input_tokens`` counts the prompt's real tokens (padding
excluded); ``output_tokens`` counts generated tokens up to and including the
stop token (padding and anything after the stop never count).
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.batching import (
    GENERATE_PADDING,
    SCORE_PADDING,
    auto_batch_size,
    plan_batches,
)
from pytest_energy.decoding import DecodeState
from pytest_energy.meters.base import EnergyMeter, Window
from pytest_energy.models import ModelSpec, load_model


@dataclass
class Ledger:
    """Energy and time an evaluation spent, filled in by the engine's windows.

    ``details`` holds what a strategy wants reported beside the metrics
    (budgets per question, routing decisions).
    """

    prefill_j: float = 0.0
    decode_j: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    short_windows: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def energy_j(self) -> float:
        return self.prefill_j + self.decode_j

    def add(self, phase: str, window: Window) -> None:
        if phase == "prefill":
            self.prefill_j += window.energy_j
            self.prefill_s += window.duration_s
        else:
            self.decode_j += window.energy_j
            self.decode_s += window.duration_s
        self.short_windows += window.short


@dataclass(frozen=True)
class Generation:
    """One generated continuation."""

    text: str
    output_tokens: int  # generated tokens, plus the cue and answer token when forced
    stopped: bool  # reached a stop token (false: ran out of max_new_tokens)
    forced: tuple[float, ...] | None = None  # candidates' log-probabilities after the cue


@dataclass(frozen=True)
class Force:
    """Force an answer where the token limit runs out: feed ``cue``, score ``candidates``."""

    cue: str
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class _Sampling:
    samples: int
    temperature: float
    generator: Any
    stop_at_eos: bool


@dataclass(frozen=True)
class Generated:
    """The continuations of one prompt, and the prompt tokens computed for it."""

    input_tokens: int
    samples: tuple[Generation, ...]


@dataclass(frozen=True)
class Scored:
    """Log-probabilities of each candidate continuation's first token after a prompt."""

    input_tokens: int
    logprobs: tuple[float, ...]


class Engine:
    """A loaded model with its tokenizer, measured by the session's meter."""

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        tokenizer: Any,
        *,
        device: str,
        meter: EnergyMeter,
        batch_size: int | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.meter = meter
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
        # transformers renamed past_key_values to cache (5.x); only the last
        # position's logits are needed, which saves a vocabulary-sized matmul
        # per prompt token where the model supports it.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._last_logits: dict[str, int] = (
            {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        )
        self._warm_up()

    def _warm_up(self) -> None:
        # The first forward pass pays one-off costs (kernel selection, memory
        # pools) that belong to no evaluation; run it outside any window.
        enc = self._pad(self._tokenize(["warm up"]))
        with self._torch.inference_mode():
            self.model(**enc, use_cache=False, **self._last_logits)

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
    ) -> Engine:
        model, tokenizer = load_model(spec, device=device, cache_dir=cache_dir, dtype=dtype)
        return cls(spec, model, tokenizer, device=device, meter=meter, batch_size=batch_size)

    # -- prompts -------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def prompt(self, user: str, assistant_prefix: str = "") -> str:
        """The text the model sees: the chat template when the model has one."""
        if not self.has_chat_template:
            return user + assistant_prefix
        text: str = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        return text + assistant_prefix

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
        for batch in plan_batches(
            [len(r) for r in rows], self.batch_size, self.token_budget, SCORE_PADDING
        ):
            enc = self._pad([rows[i] for i in batch])
            lengths = [len(rows[i]) for i in batch]
            with torch.inference_mode(), self.meter.window(self.sync, strict=False) as w:
                logits = self.model(**enc, use_cache=False, **self._last_logits).logits[:, -1, :]
                logprobs = torch.log_softmax(logits.float(), dim=-1)[:, ids].tolist()
                for n in lengths:
                    w.account("prefill", n, 0)
            ledger.add("prefill", w)
            for row, i in enumerate(batch):
                out[i] = Scored(int(lengths[row]), tuple(logprobs[row]))
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
    ) -> list[Generated]:
        """Greedy (temperature 0) or sampled continuations, ``samples`` per prompt.

        ``max_new_tokens`` is one limit or one per prompt (rows with different
        limits still share a batch). With ``force``, a row that reaches its limit
        without a stop token is not dropped: the cue is fed through its KV cache
        and the candidates' log-probabilities after it are returned (controlled
        reasoning's forced answer, at the cost of a few decode steps).
        ``stop_at_eos=False`` generates exactly the limit (calibration sweeps).
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
        for batch in plan_batches(
            [len(r) for r in rows], rows_per_batch, self.token_budget, GENERATE_PADDING
        ):
            results = self._generate_batch(
                [rows[i] for i in batch],
                [limits[i] for i in batch],
                ledger,
                _Sampling(samples, temperature, gen, stop_at_eos),
                force,
            )
            for i, result in zip(batch, results, strict=True):
                out[i] = result
        return [g for g in out if g is not None]

    def _generate_batch(
        self,
        prompts: list[list[int]],
        limits: list[int],
        ledger: Ledger,
        sampling: _Sampling,
        force: Force | None,
    ) -> list[Generated]:
        torch = self._torch
        samples = sampling.samples
        enc = self._pad(prompts)
        mask = enc["attention_mask"]
        lengths = [len(p) for p in prompts]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        stop = set(self.stop_ids) if sampling.stop_at_eos else set()
        cue = self._tokenize([force.cue])[0] if force else []
        candidates = [self._first_token(c) for c in force.candidates] if force else []
        with torch.inference_mode():
            with self.meter.window(self.sync, strict=False) as w:
                result = self.model(
                    **enc, position_ids=positions, use_cache=True, **self._last_logits
                )
                for n in lengths:
                    w.account("prefill", n, 0)
            ledger.add("prefill", w)
            cache, logits = getattr(result, self._cache_arg), result.logits[:, -1, :]
            if samples > 1:
                # One prompt pass serves every sample: expand the cache, not the prompt.
                cache.batch_repeat_interleave(samples)
                logits = logits.repeat_interleave(samples, dim=0)
                mask = mask.repeat_interleave(samples, dim=0)
                positions = positions.repeat_interleave(samples, dim=0)
            total = logits.shape[0]
            limit = [limits[r // samples] for r in range(total)]
            decode = DecodeState(total, cue_at=[0 if force and n == 0 else -1 for n in limit])
            active = list(range(total))
            last_pos = positions[:, -1]
            with self.meter.window(self.sync, strict=False) as w:
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
                        **{self._cache_arg: cache},
                    ).logits[:, -1, :]
                for r in range(total):
                    w.account("decode", lengths[r // samples], decode.output_tokens(r, cue))
            ledger.add("decode", w)
        texts = self.tokenizer.batch_decode(decode.tokens, skip_special_tokens=True)
        return [
            Generated(
                input_tokens=lengths[p],
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
            for p in range(len(prompts))
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

    def _pad(self, rows: Sequence[Sequence[int]]) -> dict[str, Any]:
        """Left-padded ``input_ids`` and ``attention_mask`` tensors for ``rows``."""
        torch = self._torch
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = [[pad] * (width - len(r)) + list(r) for r in rows]
        mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long, device=self.device),
            "attention_mask": torch.tensor(mask, dtype=torch.long, device=self.device),
        }

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
