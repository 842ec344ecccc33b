"""Distribution-free statistics for the gate, in pure Python (no scipy, no numpy).

Exact where the sample sizes of a test suite allow it: Mann-Whitney U with
mid-ranks and the exact permutation distribution (normal approximation beyond
``EXACT_LIMIT`` values), Fisher's exact test, a binomial tail, the
Hodges-Lehmann shift of two samples, and the modified z-score outlier screen
(Iglewicz-Hoaglin).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

EXACT_LIMIT = 30
OUTLIER_Z = 3.5
MIN_SAMPLES = 3


def mann_whitney_greater(larger: Sequence[float], smaller: Sequence[float]) -> float:
    """One-sided p-value of "same distribution" against "``larger`` tends to be larger"."""
    values = [*larger, *smaller]
    n_total, m = len(values), len(larger)
    ranks = _doubled_midranks(values)
    observed = sum(ranks[:m])
    if n_total <= EXACT_LIMIT:
        return _exact_upper_tail(ranks, m, observed)
    n = n_total - m
    u = observed / 2 - m * (m + 1) / 2
    ties = _tie_sizes(values)
    var = m * n / 12 * ((n_total + 1) - sum(t**3 - t for t in ties) / (n_total * (n_total - 1)))
    if var <= 0:
        return 1.0
    z = (u - m * n / 2 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def _doubled_midranks(values: Sequence[float]) -> list[int]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = i + j + 2  # twice the mid-rank (1-based), an integer
        i = j + 1
    return ranks


def _tie_sizes(values: Sequence[float]) -> list[int]:
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return [c for c in counts.values() if c > 1]


def _exact_upper_tail(scores: Sequence[int], m: int, observed: int) -> float:
    # counts[k][s]: subsets of k scores summing to s (exact permutation null, ties kept).
    counts: list[dict[int, int]] = [{0: 1}] + [{} for _ in range(m)]
    for index, score in enumerate(scores):
        for k in range(min(index + 1, m), 0, -1):
            target = counts[k]
            for total, c in counts[k - 1].items():
                target[total + score] = target.get(total + score, 0) + c
    hits = sum(c for total, c in counts[m].items() if total >= observed)
    return hits / math.comb(len(scores), m)


def fisher_less(a: int, n1: int, c: int, n2: int) -> float:
    """One-sided Fisher exact p-value that proportion ``c/n2`` is lower than ``a/n1``."""
    total, k = n1 + n2, a + c
    low = max(0, k - n1)

    def log_pmf(x: int) -> float:
        return _log_comb(k, x) + _log_comb(total - k, n2 - x) - _log_comb(total, n2)

    return min(1.0, sum(math.exp(log_pmf(x)) for x in range(low, c + 1)))


def binomial_upper(successes: int, trials: int) -> float:
    """P(X >= successes) for X ~ Binomial(trials, 1/2) (exact McNemar, one-sided)."""
    if trials == 0:
        return 1.0
    return sum(math.comb(trials, x) for x in range(successes, trials + 1)) / (1 << trials)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def z_upper(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def hodges_lehmann_ratio(base: Sequence[float], head: Sequence[float]) -> float | None:
    """The median of all pairwise ratios head_i / base_j, minus 1 (None with a zero).

    The shift estimate that goes with the rank test: it uses every repeat, where the
    ratio of two medians rests on one value per side.
    """
    if any(b <= 0 for b in base) or any(h <= 0 for h in head):
        return None
    logs = [math.log(h / b) for h in head for b in base]
    return math.exp(statistics.median(logs)) - 1


def screen_outliers(values: Sequence[float]) -> tuple[float, ...]:
    """``values`` without those whose modified z-score exceeds ``OUTLIER_Z``.

    The score is 0.6745 |x - median| / MAD; nothing is dropped when the MAD is 0
    or fewer than ``MIN_SAMPLES`` values would remain.
    """
    centre = statistics.median(values)
    mad = statistics.median(abs(v - centre) for v in values)
    if mad == 0:
        return tuple(values)
    kept = tuple(v for v in values if 0.6745 * abs(v - centre) / mad <= OUTLIER_Z)
    return kept if len(kept) >= MIN_SAMPLES else tuple(values)


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Sample standard deviation over mean of ``values`` with outlying ones set aside
    (:func:`screen_outliers`, as the gate does); None for fewer than two values."""
    kept = screen_outliers(values) if len(values) >= 2 else ()
    if len(kept) < 2:
        return None
    mean = statistics.fmean(kept)
    return statistics.stdev(kept) / mean if mean > 0 else None
