"""Batches of prompts: shortest first, bounded padding, rows and token budget."""

from __future__ import annotations

from pytest_energy.batching import plan_batches


def padded_tokens(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) for b in batches)


def test_mmlu_like_lengths_do_not_pay_for_the_longest_prompt_everywhere() -> None:
    lengths = [80, 85, 90, 95, 100, 110, 120, 650]
    batches = plan_batches(lengths, max_rows=16, token_budget=4096, max_padding=0.2)
    assert [7] in batches  # the outlier gets a batch of its own
    assert padded_tokens(lengths, batches) < 1.25 * sum(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_rows_and_token_budget_cap_a_batch() -> None:
    lengths = [100] * 10
    assert [len(b) for b in plan_batches(lengths, 4, 10_000, 0.5)] == [4, 4, 2]
    assert [len(b) for b in plan_batches(lengths, 16, 300, 0.5)] == [3, 3, 3, 1]


def test_a_prompt_longer_than_the_budget_still_runs_alone() -> None:
    assert plan_batches([5000, 10], 16, 4096, 0.2) == [[1], [0]]
