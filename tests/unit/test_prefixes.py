"""Planning shared prefixes and the batches of their suffixes (pure logic, token ids only)."""

from __future__ import annotations

import random

import pytest

from pytest_energy.prefixes import (
    PrefixGroup,
    common_prefix_length,
    plan_prefix_groups,
    plan_suffix_batches,
)

PREAMBLE = list(range(1000, 1035))  # a chat template's system turn: 35 tokens


def subject_rows(subject: int, n: int, shots: int, seed: int = 0) -> list[list[int]]:
    """n prompts of one subject: preamble, header and shots shared, then the question."""
    rng = random.Random(seed * 100 + subject)
    shared = [*PREAMBLE, 2000 + subject, *[3000 + subject] * shots]
    return [
        shared + [rng.randrange(5000, 6000) for _ in range(rng.randrange(20, 60))] for _ in range(n)
    ]


def test_common_prefix_length_stops_at_the_first_difference() -> None:
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0


def test_no_rows_plan_no_groups() -> None:
    assert plan_prefix_groups([], 16, 0) == []


def test_a_single_row_is_computed_in_full() -> None:
    assert plan_prefix_groups([[1, 2, 3]], 1, 0) == [PrefixGroup(0, (0,))]


def test_one_subjects_few_shot_prompts_share_everything_but_their_questions() -> None:
    rows = subject_rows(0, 5, shots=400)
    groups = plan_prefix_groups(rows, 16, 512)
    assert groups == [PrefixGroup(len(PREAMBLE) + 1 + 400, (0, 1, 2, 3, 4))]


def test_subjects_split_when_their_shots_save_more_than_the_preamble_shared_by_all() -> None:
    rows = subject_rows(0, 4, shots=300) + subject_rows(1, 4, shots=300)
    groups = plan_prefix_groups(rows, 16, 0)
    shared = len(PREAMBLE) + 1 + 300
    assert groups == [PrefixGroup(shared, (0, 1, 2, 3)), PrefixGroup(shared, (4, 5, 6, 7))]


def test_prompts_that_share_only_a_preamble_form_one_group_when_it_saves_enough() -> None:
    # Zero-shot prompts of 20 subjects: the header differs at the subject token.
    rows = [subject_rows(s, 1, shots=0)[0] for s in range(20)]
    groups = plan_prefix_groups(rows, 16, 512)
    assert groups == [PrefixGroup(len(PREAMBLE), tuple(range(20)))]  # saves 19 * 35 = 665


def test_a_prefix_that_saves_too_little_is_not_worth_its_own_pass() -> None:
    rows = [subject_rows(s, 1, shots=0)[0] for s in range(8)]  # saves 7 * 35 = 245
    assert plan_prefix_groups(rows, 16, 512) == [PrefixGroup(0, tuple(range(8)))]


def test_groups_split_only_where_the_extra_groups_pay_for_their_passes() -> None:
    # Two subjects, 20 zero-shot prompts each: a subject adds one shared token.
    rows = subject_rows(0, 20, shots=0) + subject_rows(1, 20, shots=0)
    assert plan_prefix_groups(rows, 16, 512) == [PrefixGroup(len(PREAMBLE), tuple(range(40)))]
    # With 30 shots each, two subject groups save 2 * (19 * 66 - 512) > 39 * 35 - 512.
    rows = subject_rows(0, 20, shots=30) + subject_rows(1, 20, shots=30)
    shared = len(PREAMBLE) + 1 + 30
    assert plan_prefix_groups(rows, 16, 512) == [
        PrefixGroup(shared, tuple(range(20))),
        PrefixGroup(shared, tuple(range(20, 40))),
    ]


def test_a_prefix_shorter_than_the_minimum_is_not_shared() -> None:
    rows = [[1] * 10 + [i] * 5 for i in range(50)]
    assert plan_prefix_groups(rows, 16, 0) == [PrefixGroup(0, tuple(range(50)))]


def test_rows_that_share_nothing_are_listed_last_with_shared_zero() -> None:
    rows = [[7, 8, 9], *subject_rows(0, 3, shots=100), [9, 9]]
    groups = plan_prefix_groups(rows, 16, 0)
    assert groups == [PrefixGroup(len(PREAMBLE) + 101, (1, 2, 3)), PrefixGroup(0, (0, 4))]


def test_every_member_keeps_its_last_token_to_compute() -> None:
    # A prompt that is a prefix of another, and two identical prompts.
    base = list(range(100))
    rows = [base, [*base, 7, 8], list(base)]
    groups = plan_prefix_groups(rows, 16, 0)
    assert groups == [PrefixGroup(99, (0, 1, 2))]
    for group in groups:
        assert all(len(rows[i]) > group.shared for i in group.members)


def test_groups_are_a_partition_and_do_not_depend_on_the_order_of_the_rows() -> None:
    rows = [r for s in range(6) for r in subject_rows(s, 1 + s % 3, shots=50 * s, seed=s)]
    groups = plan_prefix_groups(rows, 16, 0)
    members = sorted(i for g in groups for i in g.members)
    assert members == list(range(len(rows)))
    for g in groups:
        assert all(rows[i][: g.shared] == rows[g.members[0]][: g.shared] for i in g.members)
    order = list(range(len(rows)))
    random.Random(3).shuffle(order)
    shuffled = plan_prefix_groups([rows[i] for i in order], 16, 0)
    as_sets = {(g.shared, frozenset(order[i] for i in g.members)) for g in shuffled}
    assert as_sets == {(g.shared, frozenset(g.members)) for g in groups}


def test_the_plan_never_computes_more_tokens_than_computing_every_row_in_full() -> None:
    rng = random.Random(7)
    for _ in range(50):
        rows = [[rng.randrange(3) for _ in range(rng.randrange(1, 40))] for _ in range(30)]
        groups = plan_prefix_groups(rows, 2, 0)
        computed = sum(g.shared + sum(len(rows[i]) - g.shared for i in g.members) for g in groups)
        assert computed <= sum(len(r) for r in rows)


def test_deeply_nested_prefixes_plan_without_recursion_limits() -> None:
    # Each row extends the previous one by a token: 3000 nested prefix lengths.
    rows = [[*range(n), -1] for n in range(1, 3001)]
    groups = plan_prefix_groups(rows, 16, 0)
    assert sorted(i for g in groups for i in g.members) == list(range(3000))


def test_suffix_batches_count_the_shared_prefix_once_for_the_first_member() -> None:
    rows = [*subject_rows(0, 5, shots=200), [1, 2, 3], [4, 5]]
    groups = plan_prefix_groups(rows, 16, 0)
    batches = plan_suffix_batches(rows, groups, max_rows=2, token_budget=4096, max_padding=1.0)
    seen = sorted(i for b in batches for i in b.rows)
    assert seen == list(range(len(rows)))
    for b in batches:
        assert all(len(b.rows) <= 2 for b in batches)
        for row, i in enumerate(b.rows):
            assert list(b.suffixes[row]) == rows[i][b.group.shared :]
            assert b.input_tokens[row] == len(rows[i])
    computed = sum(n for b in batches for n in b.computed_tokens)
    assert computed == sum(g.shared for g in groups) + sum(
        len(s) for b in batches for s in b.suffixes
    )
    first = next(b for b in batches if 0 in b.rows)
    assert first.computed_tokens[first.rows.index(0)] == len(rows[0])


@pytest.mark.parametrize("max_rows", [1, 3, 16])
def test_suffix_batches_respect_the_row_limit(max_rows: int) -> None:
    rows = subject_rows(0, 7, shots=100) + subject_rows(1, 5, shots=100)
    batches = plan_suffix_batches(rows, plan_prefix_groups(rows, 16, 0), max_rows, 4096, 1.0)
    assert max(len(b.rows) for b in batches) <= max_rows
