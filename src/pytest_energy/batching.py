"""How the engine groups prompts into batches and how many rows a batch may hold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Largest padding share a batch may carry: scoring is pure prefill, where padding
# is all waste; generation is mostly decode, where a fuller batch pays back.
SCORE_PADDING = 0.2
GENERATE_PADDING = 0.5


# Context a generation row may reach (prompt + reasoning) when sizing batches.
SIZING_CONTEXT_TOKENS = 2048


def auto_batch_size(device: str, config: Any = None, free_bytes: int | None = None) -> int:
    """Rows per batch: 16 on a CPU (decode gains flatten beyond that on a few
    cores); on a GPU, as many rows as half the free memory holds KV caches of
    ``SIZING_CONTEXT_TOKENS`` tokens for, between 8 and 256."""
    if device == "cpu" or config is None or free_bytes is None:
        return 16
    layers = int(getattr(config, "num_hidden_layers", 32))
    heads = int(getattr(config, "num_key_value_heads", getattr(config, "num_attention_heads", 32)))
    head_dim = int(
        getattr(config, "head_dim", None)
        or config.hidden_size // getattr(config, "num_attention_heads", 32)
    )
    bytes_per_row = 2 * layers * heads * head_dim * SIZING_CONTEXT_TOKENS * 2  # K and V, bf16
    return max(8, min(256, int(free_bytes * 0.5 // bytes_per_row)))


def plan_batches(
    lengths: Sequence[int], max_rows: int, token_budget: int, max_padding: float
) -> list[list[int]]:
    """Indices of prompts grouped into batches, shortest prompts first.

    A batch grows while it has fewer than ``max_rows`` rows, its padded size
    stays within ``token_budget``, and padding stays below ``max_padding`` of
    it: MMLU prompts range from ~80 to ~700 tokens, and padding is compute
    spent on nothing. Callers put results back in their own order.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]  # the longest so far: prompts come in ascending length
        size = n * (len(current) + 1)
        if current and (
            len(current) >= max_rows or size > token_budget or 1 - (real + n) / size > max_padding
        ):
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        batches.append(current)
    return batches
