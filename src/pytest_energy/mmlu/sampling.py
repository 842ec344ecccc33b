"""A loaded question set and its seeded, subject-stratified sampling."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_energy.errors import DataError
from pytest_energy.mmlu.questions import CATEGORIES, CATEGORY_NAMES, Question


@dataclass(frozen=True)
class MMLU:
    """A loaded question set (the ``mmlu`` fixture), with seeded, stratified sampling."""

    questions: tuple[Question, ...]
    source: str

    @property
    def subjects(self) -> tuple[str, ...]:
        """The subjects present, sorted."""
        return tuple(sorted({q.subject for q in self.questions}))

    def __len__(self) -> int:
        return len(self.questions)

    def sample(
        self,
        n: int | None = None,
        subjects: str | Sequence[str] | None = None,
        seed: int = 0,
    ) -> tuple[Question, ...]:
        """Pick ``n`` questions (None: all) from ``subjects``, reproducibly.

        ``subjects`` is a subject, a category (``stem``, ``humanities``,
        ``social_sciences``, ``other``), or a list mixing both; None selects all.
        Each subject gets a share of ``n`` proportional to its size (largest
        remainder; ties broken by the seeded RNG). When ``n`` is smaller than the
        number of subjects, ``n`` subjects drawn with the seeded RNG get one
        question each. The result is ordered by subject, then by position in the
        source, so equal ``(n, subjects, seed)`` give equal batches in any process.
        """
        groups: dict[str, list[int]] = {}
        for index, q in enumerate(self.questions):
            groups.setdefault(q.subject, []).append(index)
        chosen = self._select(subjects, groups)
        total = sum(len(groups[s]) for s in chosen)
        if n is None:
            picks = {s: groups[s] for s in chosen}
        else:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise DataError(f"n={n!r} is not a positive number of questions; pass n >= 1")
            if n > total:
                raise DataError(
                    f"n={n} exceeds the {total} questions of the selected subjects in "
                    f"{self.source}; pass n <= {total} or select more subjects"
                )
            rng = random.Random(seed)
            shares = _allocate(n, {s: len(groups[s]) for s in chosen}, rng)
            picks = {s: rng.sample(groups[s], k) for s, k in shares.items()}
        return tuple(self.questions[i] for s in sorted(picks) for i in sorted(picks[s]))

    def _select(
        self, subjects: str | Sequence[str] | None, groups: Mapping[str, list[int]]
    ) -> list[str]:
        if subjects is None:
            return sorted(groups)
        names = [subjects] if isinstance(subjects, str) else list(subjects)
        if not names:
            raise DataError("subjects=[] selects no questions; pass None for all subjects")
        chosen: set[str] = set()
        for name in names:
            if name in groups:
                chosen.add(name)
            elif name in CATEGORY_NAMES:
                members = {s for s in groups if CATEGORIES.get(s) == name}
                if not members:
                    raise DataError(
                        f"category {name!r} has no subjects in {self.source}; "
                        "select another category or load a source that has them"
                    )
                chosen |= members
            else:
                known = ", ".join(sorted(groups)[:3])
                raise DataError(
                    f"unknown subject or category {name!r} in {self.source}; use a loaded "
                    f"subject (e.g. {known}) or one of {', '.join(CATEGORY_NAMES)}"
                )
        return sorted(chosen)


def _allocate(n: int, sizes: Mapping[str, int], rng: random.Random) -> dict[str, int]:
    """Split ``n`` over subjects in proportion to ``sizes`` (largest-remainder method)."""
    names = sorted(sizes)
    if n < len(names):
        return dict.fromkeys(rng.sample(names, n), 1)
    total = sum(sizes.values())
    # Integer arithmetic keeps the quotas exact, so no float rounding decides a tie.
    shares = {s: n * sizes[s] // total for s in names}
    order = list(names)
    rng.shuffle(order)
    order.sort(key=lambda s: n * sizes[s] % total, reverse=True)  # stable: shuffled ties
    for s in order[: n - sum(shares.values())]:
        shares[s] += 1
    return {s: k for s, k in shares.items() if k}
