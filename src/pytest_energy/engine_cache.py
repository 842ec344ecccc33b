"""KV-cache plumbing of the engine: shared prefixes, suffix batches, continuations.

A shared prefix (see :mod:`pytest_energy.prefixes`) is computed once, batch 1,
and its KV cache is kept unchanged; each batch of suffixes runs on its own copy,
expanded to the batch's rows. A suffix row is left-padded *after* the prefix::

    attention mask  1 1 1 1 1 | 0 0 | 1 1 1      (prefix | padding | suffix)
    position ids              | . . | 5 6 7      (continuing from the prefix)

The explicit position ids matter: without them transformers numbers the padded
row's tokens from the cache length and the padded rows drift (checked against
full prompts on SmolLM2 with transformers 5.x: the last logits agree within
3e-5 in float32; without position ids a padded row's logits are off by up to 3.8).

Cloze continuations run on the prompt's own cache, expanded once per choice,
right-padded: every position's logits are needed, not only the last.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_energy.meters.base import Phase, Window
from pytest_energy.prefixes import (
    PrefixGroup,
    SuffixBatch,
    plan_prefix_groups,
    plan_suffix_batches,
)

if TYPE_CHECKING:
    from pytest_energy.engine import Engine
    from pytest_energy.engine_results import Ledger


@dataclass(frozen=True)
class Prefix:
    """A shared prefix's KV cache (batch 1) and its length; never extended in place."""

    cache: Any
    tokens: int


@dataclass
class Prefilled:
    """A batch's prompt pass: last-position logits, the KV cache (when kept), the
    attention mask over prefix and suffix, and each row's last position id."""

    logits: Any
    cache: Any
    mask: Any
    last_pos: Any


def batch_inputs(
    torch: Any, rows: Sequence[Sequence[int]], *, pad_id: int, device: str, prefix_tokens: int
) -> dict[str, Any]:
    """``input_ids`` (rows left-padded), ``attention_mask`` over the prefix and the
    rows, and ``position_ids`` of the rows' tokens, continuing from the prefix."""
    width = max(len(r) for r in rows)
    ids = [[pad_id] * (width - len(r)) + list(r) for r in rows]
    mask = [[1] * prefix_tokens + [0] * (width - len(r)) + [1] * len(r) for r in rows]
    full = torch.tensor(mask, dtype=torch.long, device=device)
    positions = (full.cumsum(-1) - 1).clamp(min=0)[:, prefix_tokens:]
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long, device=device),
        "attention_mask": full,
        "position_ids": positions,
    }


def expanded(cache: Any, rows: int) -> Any:
    """A copy of a batch-1 cache with ``rows`` rows; the original stays as it was.

    The copy is what the batch's forward pass extends, so the prefix serves every
    later batch unchanged. Copying a batch-1 prefix is cheap next to the pass
    that uses it (3 ms for 300 tokens of SmolLM2 on a CPU, against about 15 ms to
    expand it to 16 rows and a second or more for the pass).
    """
    out = copy.deepcopy(cache)
    out.batch_repeat_interleave(rows)
    return out


def continuation_logprobs(
    torch: Any,
    forward: Any,
    prefilled: Prefilled,
    continuations: Sequence[Sequence[Sequence[int]]],
    *,
    pad_id: int,
    device: str,
) -> tuple[list[list[float]], list[int]]:
    """Summed log-probability of each continuation (its tokens, one list per batch row)
    after that row's prompt, and the tokens fed per continuation row.

    The first token's log-probability comes from the prompt pass; the rest from
    one pass over every continuation but its last token (whose successor is not
    needed), on the prompt's cache expanded to one row per continuation.
    ``forward(input_ids, attention_mask, position_ids, cache)`` returns logits
    for every position. ``prefilled.cache`` is consumed.
    """
    first = torch.log_softmax(prefilled.logits.float(), dim=-1)
    sums = [
        [float(first[b, c[0]]) if c else 0.0 for c in row] for b, row in enumerate(continuations)
    ]
    fed = [(b, j) for b, row in enumerate(continuations) for j, c in enumerate(row) if len(c) > 1]
    if not fed:
        return sums, []
    feeds = [list(continuations[b][j][:-1]) for b, j in fed]
    width = max(len(f) for f in feeds)
    index = torch.tensor([b for b, _ in fed], device=device)
    cache = prefilled.cache
    cache.batch_select_indices(index)  # repeated indices: one cache row per continuation
    ids = torch.tensor([f + [pad_id] * (width - len(f)) for f in feeds], device=device)
    tail = torch.tensor([[1] * len(f) + [0] * (width - len(f)) for f in feeds], device=device)
    mask = torch.cat([prefilled.mask[index], tail.to(prefilled.mask.dtype)], dim=1)
    positions = prefilled.last_pos[index][:, None] + 1 + torch.arange(width, device=device)
    logits = forward(ids, mask, positions, cache).float()
    # Position t predicts continuation token t + 1; padded targets are dropped below.
    targets = torch.tensor(
        [
            list(continuations[b][j][1:]) + [0] * (width - len(continuations[b][j]) + 1)
            for b, j in fed
        ],
        device=device,
    )
    picked = logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    picked = (picked * tail).sum(dim=-1).tolist()
    for (b, j), extra in zip(fed, picked, strict=True):
        sums[b][j] += float(extra)
    return sums, [len(f) for f in feeds]


class PromptPasses:
    """The engine's prompt passes: batches planned around shared prefixes, the
    prefix passes, and measured forward passes over suffixes on copies of a
    prefix's cache. Reads the engine's settings (``share_prefixes``, limits,
    meter) at each call, so changing them on the engine takes effect at once."""

    def __init__(self, engine: Engine) -> None:
        import torch

        self._torch = torch
        self._engine = engine
        # transformers renamed past_key_values to cache (5.x); only the last
        # position's logits are needed, which saves a vocabulary-sized matmul
        # per prompt token where the model supports it.
        params = inspect.signature(engine.model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.last_logits: dict[str, int] = (
            {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        )

    @contextmanager
    def measured(self, phase: Phase, ledger: Ledger) -> Iterator[Window]:
        """A meter window whose energy and time go to ``ledger`` under ``phase``."""
        e = self._engine
        with e.meter.window(e.sync, strict=False) as w:
            yield w
        ledger.add(phase, w)

    def batches(
        self, rows: Sequence[Sequence[int]], max_rows: int, max_padding: float, ledger: Ledger
    ) -> Iterator[tuple[SuffixBatch, Prefix | None]]:
        """Batches group by group, each with its group's prefix cache: computed (in a
        prefill window of its own) when the group's first batch is due."""
        e = self._engine
        if e.share_prefixes:
            groups = plan_prefix_groups(rows, e.min_shared_tokens, e.min_saved_tokens)
        else:
            groups = [PrefixGroup(0, tuple(range(len(rows))))] if rows else []
        owner: PrefixGroup | None = None
        prefix: Prefix | None = None
        for part in plan_suffix_batches(rows, groups, max_rows, e.token_budget, max_padding):
            if part.group is not owner:
                owner = part.group
                prefix = self.prefix(rows[owner.members[0]][: owner.shared], ledger)
            yield part, prefix

    def prefix(self, tokens: Sequence[int], ledger: Ledger) -> Prefix | None:
        """The KV cache of ``tokens`` (batch 1) from a measured pass; None for no tokens."""
        if not tokens:
            return None
        e = self._engine
        torch = self._torch
        with torch.inference_mode(), self.measured("prefill", ledger) as w:
            result = e.model(
                input_ids=torch.tensor([list(tokens)], device=e.device),
                use_cache=True,
                **self.last_logits,
            )
            w.account("prefill", len(tokens), 0)
        return Prefix(getattr(result, self.cache_arg), len(tokens))

    def forward(
        self, rows: Sequence[Sequence[int]], prefix: Prefix | None, *, use_cache: bool
    ) -> Prefilled:
        """One pass over ``rows`` (after ``prefix``, on a copy of its cache); the caller
        holds inference mode and the meter window."""
        e = self._engine
        enc = batch_inputs(
            self._torch,
            rows,
            pad_id=e.tokenizer.pad_token_id,
            device=e.device,
            prefix_tokens=prefix.tokens if prefix else 0,
        )
        past = {self.cache_arg: expanded(prefix.cache, len(rows))} if prefix else {}
        result = e.model(
            **enc, use_cache=use_cache or prefix is not None, **past, **self.last_logits
        )
        cache = getattr(result, self.cache_arg) if use_cache else None
        last_pos = enc["position_ids"][:, -1]
        return Prefilled(result.logits[:, -1, :], cache, enc["attention_mask"], last_pos)

    def continuations(
        self, prefilled: Prefilled, continuations: Sequence[Sequence[Sequence[int]]]
    ) -> tuple[list[list[float]], list[int]]:
        """Each batch row's continuations scored on its prompt pass (see
        :func:`continuation_logprobs`); consumes ``prefilled.cache``."""
        e = self._engine
        return continuation_logprobs(
            self._torch,
            self._all_logits,
            prefilled,
            continuations,
            pad_id=e.tokenizer.pad_token_id,
            device=e.device,
        )

    def _all_logits(self, ids: Any, mask: Any, positions: Any, cache: Any) -> Any:
        return self._engine.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self.cache_arg: cache},
        ).logits
