"""Which prompts of one engine call share a token prefix worth computing once (no torch).

Prompts of one evaluation often begin with the same tokens: the chat template's
preamble, the subject header and, with few-shot prompts, the same worked examples
for every question of a subject. The engine computes such a prefix once, keeps
its KV cache and runs only each prompt's remaining tokens (its suffix) on top of
it. This module decides the groups; it sees token ids only.

The rows are sorted by their tokens, so rows with a long common prefix become
neighbours and the common prefix of any run of neighbours is the smallest
common prefix of adjacent pairs in it. The runs form a tree (the whole sorted
list, split at its smallest adjacent common prefix, and so on); the planner
picks, bottom-up, whichever of "one group for this run" or "the best groups of
its parts" saves more. A group saves ``(members - 1) * shared`` tokens and costs
``min_saved`` tokens' worth of time for its extra passes (the prefix, batch 1,
and batches of its own instead of riding along with other prompts), so a run
of many prompts that share only a chat preamble becomes one group, and splits
into subject groups only where their few-shot examples save more than the
extra groups cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from pytest_energy.batching import plan_batches

# A prefix shorter than this is not worth a pass of its own: the chat preamble of
# a small model is ~35 tokens, a 5-shot subject prefix several hundred.
MIN_SHARED_TOKENS = 16
# What a group's extra passes cost, in prompt tokens: the prefix pass (batch 1)
# and the group's own suffix batches. A pass costs about 30 tokens' worth of time
# on a CPU (SmolLM2-135M, 2 cores) and hundreds to thousands on a GPU, where a
# small model's pass is launch-bound. At 512 a 35-token chat preamble is shared
# from 16 prompts, a 5-shot subject prefix (250 to 2500 tokens) from 2 to 4.
MIN_SAVED_TOKENS = 512


@dataclass(frozen=True)
class PrefixGroup:
    """Rows (indices, ascending) whose first ``shared`` tokens are the same.

    ``shared`` is 0 for the rows that share nothing worth a pass: they are
    computed in full. Otherwise every member has at least ``shared + 1`` tokens:
    the last prompt token is always computed in the row's own pass, where its
    logits come from.
    """

    shared: int
    members: tuple[int, ...]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens ``a`` and ``b`` have in common."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def plan_prefix_groups(
    rows: Sequence[Sequence[int]],
    min_shared: int = MIN_SHARED_TOKENS,
    min_saved: int = MIN_SAVED_TOKENS,
) -> list[PrefixGroup]:
    """Partition row indices into groups that share a prefix (see the module docstring).

    A group shares at least ``min_shared`` tokens and saves more than ``min_saved``
    (``(members - 1) * shared``), the cost of its extra passes; the plan
    maximises the tokens saved net of that cost. Rows in no such group form
    one group with ``shared=0``, listed last. Groups are ordered by their first member;
    the result is a pure function of the rows.
    """
    if not rows:
        return []
    order = sorted(range(len(rows)), key=lambda i: (tuple(rows[i]), i))
    # Capped so that every member keeps its last token to compute.
    lcp = [
        min(common_prefix_length(rows[a], rows[b]), len(rows[a]) - 1, len(rows[b]) - 1)
        for a, b in pairwise(order)
    ]
    runs = _best_runs(lcp, min_shared, min_saved)
    grouped: set[int] = set()
    groups: list[PrefixGroup] = []
    for lo, hi, shared in runs:
        members = tuple(sorted(order[lo : hi + 1]))
        grouped.update(members)
        groups.append(PrefixGroup(shared, members))
    groups.sort(key=lambda g: g.members[0])
    rest = tuple(i for i in range(len(rows)) if i not in grouped)
    if rest:
        groups.append(PrefixGroup(0, rest))
    return groups


def _split(lcp: Sequence[int], lo: int, hi: int) -> tuple[int, list[tuple[int, int]]]:
    """The common prefix of sorted rows lo..hi and the runs they split into at it."""
    shared = min(lcp[lo:hi])
    parts: list[tuple[int, int]] = []
    start = lo
    for p in range(lo, hi):
        if lcp[p] == shared:
            parts.append((start, p))
            start = p + 1
    parts.append((start, hi))
    return shared, parts


def _best_runs(lcp: Sequence[int], min_shared: int, min_saved: int) -> list[tuple[int, int, int]]:
    """The runs (lo, hi, shared) of sorted rows that save the most tokens net of
    ``min_saved`` per group.

    Post-order over the tree of runs with an explicit stack (its depth is the
    number of nested prefix lengths, unbounded in principle).
    """
    n = len(lcp) + 1
    if n < 2:
        return []
    best: dict[tuple[int, int], tuple[int, list[tuple[int, int, int]]]] = {}
    stack: list[tuple[int, int, bool]] = [(0, n - 1, False)]
    while stack:
        lo, hi, expanded = stack.pop()
        shared, parts = _split(lcp, lo, hi)
        parts = [(a, b) for a, b in parts if b > a]  # a single row saves nothing
        if not expanded:
            stack.append((lo, hi, True))
            stack.extend((a, b, False) for a, b in parts)
            continue
        apart = sum(best[p][0] for p in parts)
        together = (hi - lo) * shared - min_saved
        if shared >= min_shared and together > 0 and together >= apart:
            best[(lo, hi)] = (together, [(lo, hi, shared)])
        else:
            best[(lo, hi)] = (apart, [run for p in parts for run in best[p][1]])
    return best[(0, n - 1)][1]


def attribute_prefix(group: PrefixGroup, row: int) -> int:
    """Shared tokens counted as computed for ``row``: all of them for the group's first
    member, none for the others, so computed tokens sum to what was computed."""
    return group.shared if row == group.members[0] else 0


@dataclass(frozen=True)
class SuffixBatch:
    """One batch of a group's rows: their indices, their tokens after the group's
    shared prefix, and per row the prompt tokens and the tokens computed for it."""

    group: PrefixGroup
    rows: tuple[int, ...]
    suffixes: tuple[tuple[int, ...], ...]
    input_tokens: tuple[int, ...]
    computed_tokens: tuple[int, ...]


def plan_suffix_batches(
    rows: Sequence[Sequence[int]],
    groups: Sequence[PrefixGroup],
    max_rows: int,
    token_budget: int,
    max_padding: float,
) -> list[SuffixBatch]:
    """The batches of each group in turn, planned on suffix lengths (see ``plan_batches``)."""
    batches: list[SuffixBatch] = []
    for group in groups:
        lengths = [len(rows[i]) - group.shared for i in group.members]
        for planned in plan_batches(lengths, max_rows, token_budget, max_padding):
            members = tuple(group.members[j] for j in planned)
            batches.append(
                SuffixBatch(
                    group=group,
                    rows=members,
                    suffixes=tuple(tuple(rows[i][group.shared :]) for i in members),
                    input_tokens=tuple(len(rows[i]) for i in members),
                    computed_tokens=tuple(
                        len(rows[i]) - group.shared + attribute_prefix(group, i) for i in members
                    ),
                )
            )
    return batches


__all__ = [
    "MIN_SAVED_TOKENS",
    "MIN_SHARED_TOKENS",
    "PrefixGroup",
    "SuffixBatch",
    "attribute_prefix",
    "common_prefix_length",
    "plan_prefix_groups",
    "plan_suffix_batches",
]
