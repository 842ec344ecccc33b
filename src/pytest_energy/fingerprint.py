"""Comparing hardware and software fingerprints: the one owner of "what differs".

A fingerprint is a flat ``str -> str`` mapping a meter gives (GPU or CPU model,
power limit, driver, library versions...). The baseline gate, the reports and
``energy compare`` all ask the same question of two of them, here.
"""

from __future__ import annotations

from collections.abc import Mapping

# Recorded to say which physical unit measured, but not compared: two cards of
# one model, driver, power limit and clocks are interchangeable (a pool of
# identical self-hosted runners must not mismatch on every job).
IDENTITY_ONLY = frozenset({"gpu_uuid"})


def differing_fields(base: Mapping[str, str], head: Mapping[str, str]) -> list[str]:
    """Sorted fields whose values differ (present in either), identity-only fields aside."""
    keys = (set(base) | set(head)) - IDENTITY_ONLY
    return sorted(key for key in keys if base.get(key) != head.get(key))


def fingerprint_diff(base: Mapping[str, str], head: Mapping[str, str]) -> list[str]:
    """The fields that differ, as ``"gpu: 'A100' -> 'H100'"`` (sorted by field)."""
    return [
        f"{key}: {_shown(base.get(key))} -> {_shown(head.get(key))}"
        for key in differing_fields(base, head)
    ]


def _shown(value: str | None) -> str:
    return "missing" if value is None else repr(value)
