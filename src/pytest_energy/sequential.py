"""Repeats that stop when the answer is clear (``--energy-repeats auto``).

The gate (:mod:`pytest_energy.gate`) compares a test's head repeats with the
baseline's recorded repeats: a regression needs the Hodges-Lehmann change beyond
the tolerance AND a one-sided exact Mann-Whitney p-value at most alpha, after
outlying repeats are set aside. :class:`SequentialRepeats` decides after each
head repeat whether to measure another one:

* recording the baseline (``--energy-update-baseline``): measure ``maximum``.
  The reference is measured once and every later run is compared with it, so
  its precision pays back on each of them; a policy that stopped at the minimum
  there would leave 3-repeat baselines behind;
* no baseline (a new test), or one with fewer than ``MIN_SAMPLES`` repeats (no
  rank test possible): stop at ``minimum``;
* clearly beyond the tolerance: the one-sided lower confidence bound of the
  change exceeds the tolerance, i.e. Mann-Whitney rejects "head is no larger
  than base x (1 + tolerance)" at the corrected threshold :attr:`~SequentialRepeats.alpha`;
  the gate's own rule then holds too (the Hodges-Lehmann change lies above the
  bound, and the p-value against base is smaller still);
* clearly within it: the one-sided upper confidence bound lies below the
  tolerance, Mann-Whitney rejects "head is as large as base x (1 + tolerance)"
  at ``WITHIN_ALPHA`` (the inverted rank test, i.e. the Moses interval that goes
  with the Hodges-Lehmann estimate); the gate's rule then cannot hold;
* otherwise measure again; at ``maximum`` the gate's ordinary rule decides,
  at the corrected threshold.

Why the final comparison stays valid. Testing after every repeat and stopping
when the test looks significant inflates false alarms: with 5 baseline repeats
and looks at 3..10 head repeats, "p <= 0.05 at some look" happens with
probability 0.093 when nothing changed. So every comparison uses a corrected
threshold: :func:`corrected_alpha` returns the largest ``c`` with P(p_k <= c at
some look k) <= 0.05 under the rank test's null hypothesis (base and head
repeats exchangeable, no ties). It is computed exactly: a new head repeat falls
into one of the ``b + 1`` gaps between the ``b`` baseline values with the
Polya-urn probability (1 + earlier head repeats in that gap) / (b + 1 + earlier
head repeats), and the Mann-Whitney statistic is the sum of the gap indices, so
a dynamic programme over gap counts gives the exact probability that some look
rejects (Pocock's constant group-sequential boundary, without his normal
approximation). The bound holds whatever the stopping rule: a false alarm at
the stop needs p <= c at that look, against base x (1 + tolerance) (p no smaller
than against base) or against base. Stopping "within" only removes chances to
fail. Where the programme would be large (more than ``MAX_STATES`` gap
patterns: 8 or more baseline repeats with ``maximum`` 10; 7 takes about a
second, once per process) the threshold falls back to Bonferroni, 0.05 / looks:
valid, conservative. For 5 baseline repeats and looks 3..10 it is 0.026 (exact
family-wise level 0.0494); Bonferroni would give 0.0063 (level 0.010) and miss
more real regressions. A baseline recorded under ``auto`` has 10 repeats, where
Bonferroni's 0.0063 applies: with 10 a side the rank test is rarely what holds
a real regression back (``benchmarks/gate_quality.py``: detection at 1.5x the
tolerance is within 1.1 points of fixed 10 repeats at 0.05).

Why these rules (``benchmarks/gate_quality.py``, simulated meter noise). The
rank test's null hypothesis is not what makes false alarms in practice: drift
between sessions shifts every head repeat, so with enough repeats p is small
and the estimated change beyond the tolerance is the real guard. Stopping as
soon as the gate's rule held (estimate beyond tolerance, p <= c) tested that
noisy estimate at every look and raised 1.4-1.8% false alarms against 0.8-1.0%
for fixed 5 repeats; requiring the lower confidence bound beyond the tolerance
for an early stop brings them to 0.7-0.9%, and undecided cases get the gate's
rule once, on 10 repeats. ``WITHIN_ALPHA`` 0.10 rather than 0.05 saves 0.3
repeats per unchanged test for 0.2 points of detection at 1.5x the tolerance.

Limits. The level is exact for the rank test as such; the gate's outlier screen
(and ties) make it approximate, for fixed repeats too: on independent lognormal
noise with tolerance 0, the screen raises the level of fixed 5 vs 5 from 4.5% to
6.7%, and of this policy from 4.8% to 7.8%. ``compare(..., alpha=)`` applies the
threshold to every metric, which is conservative for accuracy and output tokens
(not looked at repeat by repeat). The tolerance's absolute floor is not seen
here: it can only turn a "beyond" into a pass, never the reverse.

Usage (the session measures; the gate compares at the corrected threshold)::

    policy = SequentialRepeats(entry.samples.get("j_per_question"), tolerance.rel)
    head: list[float] = []
    while not policy.done(head):
        head.append(measure_one_repeat())
    checks = compare(result, entry, tolerance, alpha=policy.alpha)
    why = policy.reason(head)  # "beyond tolerance", "within tolerance", "maximum", ...
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from pytest_energy.stats import (
    MIN_SAMPLES,
    hodges_lehmann_ratio,
    mann_whitney_greater,
    screen_outliers,
)

__all__ = [
    "FAMILY_ALPHA",
    "MAX_STATES",
    "WITHIN_ALPHA",
    "SequentialRepeats",
    "StopReason",
    "corrected_alpha",
]

FAMILY_ALPHA = 0.05  # the fixed gate's level (gate.ALPHA), here over all looks together
WITHIN_ALPHA = 0.10  # "clearly within": one-sided 90% upper confidence bound below tolerance
MAX_STATES = 50_000  # gap patterns the exact threshold may enumerate before Bonferroni

StopReason = Literal[
    "recording the baseline", "no baseline", "beyond tolerance", "within tolerance", "maximum"
]


class SequentialRepeats:
    """Whether to measure another head repeat, and the threshold for the final verdict.

    ``base``: the baseline's repeats of the gated metric (None: a new test).
    ``tolerance``: the relative tolerance (0.10 for 10%). ``minimum`` and
    ``maximum``: the fewest and most head repeats. With a baseline to test
    against, the first look is at ``max(minimum, MIN_SAMPLES)`` repeats (the
    rank test needs that many) unless ``maximum`` is smaller. ``recording``:
    the run records the baseline; every test takes ``maximum`` repeats.
    """

    __slots__ = ("_alpha", "_base", "_first", "maximum", "minimum", "recording", "tolerance")

    def __init__(
        self,
        base: Sequence[float] | None,
        tolerance: float,
        *,
        minimum: int = 3,
        maximum: int = 10,
        recording: bool = False,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum} and {maximum}")
        if tolerance < 0:
            raise ValueError(f"tolerance must not be negative, got {tolerance}")
        self.tolerance = tolerance
        self.minimum = minimum
        self.maximum = maximum
        self.recording = recording
        self._base = tuple(base) if base is not None and len(base) >= MIN_SAMPLES else None
        self._first = max(minimum, MIN_SAMPLES)
        self._alpha = FAMILY_ALPHA
        if self._base is not None and self._first < maximum and not recording:
            self._alpha = corrected_alpha(len(self._base), self._first, maximum)

    @property
    def alpha(self) -> float:
        """The threshold for the final Mann-Whitney p-value: ``compare(..., alpha=)``.

        Below :data:`FAMILY_ALPHA` when the policy may look more than once; the
        fixed level when it cannot (no baseline, a single look, recording).
        """
        return self._alpha

    def reason(self, head: Sequence[float]) -> StopReason | None:
        """Why to stop after ``head`` (the repeats measured so far), or None to go on.

        ``"beyond tolerance"``: the lower confidence bound of the change exceeds
        the tolerance (the gate will report a regression); ``"within tolerance"``:
        the upper bound is below it (the gate will not); ``"maximum"``: undecided
        at the cap (the gate's ordinary rule at :attr:`alpha` decides);
        ``"recording the baseline"``: ``maximum`` repeats for the reference.
        """
        n = len(head)
        if self.recording:
            return "recording the baseline" if n >= self.maximum else None
        if self._base is None:
            return "no baseline" if n >= self.minimum else None
        if n >= self._first:
            base = screen_outliers(self._base)
            limit = [b * (1 + self.tolerance) for b in base]
            kept = screen_outliers(head)
            if mann_whitney_greater(kept, limit) <= self._alpha:
                return "beyond tolerance"
            if mann_whitney_greater(limit, kept) <= WITHIN_ALPHA:
                return "within tolerance"
        return "maximum" if n >= self.maximum else None

    def done(self, head: Sequence[float]) -> bool:
        """Whether ``head`` is enough repeats: the comparison is decided or the cap reached."""
        return self.reason(head) is not None

    def regressed(self, head: Sequence[float]) -> bool:
        """The gate's regression rule at :attr:`alpha`, relative tolerance only.

        The Hodges-Lehmann change of the screened repeats (the ratio of medians
        where a value is not positive) beyond the tolerance, and one-sided
        Mann-Whitney p <= alpha; False without a baseline or with fewer than
        ``MIN_SAMPLES`` head repeats (then the gate's tolerance alone decides).
        """
        if self._base is None or len(head) < MIN_SAMPLES:
            return False
        base, kept = screen_outliers(self._base), screen_outliers(head)
        shift = hodges_lehmann_ratio(base, kept)
        if shift is None:
            shift = _relative(statistics.median(self._base), statistics.median(head))
        return shift > self.tolerance and mann_whitney_greater(kept, base) <= self._alpha


def _relative(old: float, new: float) -> float:
    """(new - old) / |old|, as the gate reads a change where the ratio has a zero."""
    if old == 0:
        return 0.0 if new == 0 else math.copysign(math.inf, new)
    return (new - old) / abs(old)


@lru_cache(maxsize=64)
def corrected_alpha(base_repeats: int, first: int, last: int) -> float:
    """The largest threshold ``c`` with P(p_k <= c for some look k in first..last) <= 0.05.

    ``p_k`` is the exact one-sided Mann-Whitney p-value of the first ``k`` head
    repeats against ``base_repeats`` baseline repeats, under exchangeability
    with no ties (see the module docstring). Bonferroni, 0.05 / looks, when the
    exact computation would enumerate more than ``MAX_STATES`` patterns.
    """
    if base_repeats < 1 or not 1 <= first <= last:
        raise ValueError(f"bad looks: {base_repeats} base repeats, looks {first}..{last}")
    if math.comb(last + base_repeats + 1, base_repeats + 1) > MAX_STATES:
        return FAMILY_ALPHA / (last - first + 1)
    tails = {k: _upper_tails(base_repeats, k) for k in range(first, last + 1)}
    levels = sorted({p for tail in tails.values() for p in tail if 0 < p <= FAMILY_ALPHA})
    best = 0.0
    low, high = 0, len(levels) - 1
    while low <= high:  # the family-wise level grows with the threshold
        mid = (low + high) // 2
        level = _family_level(base_repeats, first, last, tails, levels[mid])
        if level <= FAMILY_ALPHA * (1 + 1e-12):  # rounding of the sums, not of the design
            best, low = levels[mid], mid + 1
        else:
            high = mid - 1
    return best if best > 0 else FAMILY_ALPHA / (last - first + 1)


def _upper_tails(b: int, k: int) -> list[float]:
    """``tails[u]`` = P(U >= u), U the number of (head, base) pairs with head larger."""
    # counts[j][u]: orderings of j head and the b base values with statistic u.
    counts: list[list[int]] = [[1] for _ in range(b + 1)]  # j = 0
    for j in range(1, k + 1):
        row: list[list[int]] = [[1]]  # no base values: U = 0
        for i in range(1, b + 1):
            # the largest value is a head repeat (above all i base values) or a base value
            size = j * i + 1
            cell = [0] * size
            for u, c in enumerate(counts[i]):
                cell[u + i] += c
            for u, c in enumerate(row[i - 1]):
                cell[u] += c
            row.append(cell)
        counts = row
    dist, total = counts[b], math.comb(b + k, k)
    tails = [0.0] * (len(dist) + 1)
    running = 0
    for u in range(len(dist) - 1, -1, -1):
        running += dist[u]
        tails[u] = running / total
    return tails


def _family_level(
    b: int, first: int, last: int, tails: dict[int, list[float]], threshold: float
) -> float:
    """P(some look in first..last has p <= threshold), by the Polya urn over gap counts."""
    alive: dict[tuple[int, ...], float] = {(0,) * (b + 1): 1.0}
    rejected = 0.0
    for k in range(1, last + 1):
        grown: dict[tuple[int, ...], float] = {}
        for gaps, mass in alive.items():
            for j, count in enumerate(gaps):
                key = (*gaps[:j], count + 1, *gaps[j + 1 :])
                grown[key] = grown.get(key, 0.0) + mass * (count + 1) / (b + k)
        if k >= first:
            tail = tails[k]
            alive = {}
            for gaps, mass in grown.items():
                u = sum(j * count for j, count in enumerate(gaps))
                if tail[u] <= threshold:
                    rejected += mass
                else:
                    alive[gaps] = mass
        else:
            alive = grown
    return rejected
