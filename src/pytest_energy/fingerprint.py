"""Comparing hardware and software fingerprints: the one owner of "what differs".

A fingerprint is a flat ``str -> str`` mapping (GPU or CPU model, power limit,
dtype, library versions...) that the meter and the engine give each result.
Its fields have two weights:

- *Hard* fields make a comparison meaningless: another GPU or CPU model, GPU
  count, power limit, clocks, meter, device, dtype, backend, model. A baseline
  that differs in one is not compared (``not compared`` in the reports; a
  failure with ``energy_strict_baseline``). Any field not listed as soft is
  hard, so an unknown field of a custom meter never lets two setups pass as one.
- *Soft* fields are versions of software: torch, transformers, vllm, the
  driver, CUDA, pytest-energy. A change is exactly what the gate must catch
  (a library bump that slows inference down), so the comparison runs and the
  reports attribute the change to them: ``transformers 5.24.0 -> 5.25.0``.

``gpu_uuid`` says which physical card measured and is never compared: two
cards of one model, driver, power limit and clocks are interchangeable.
``cpu_isa`` (the widest vector extension, :mod:`pytest_energy.cpuinfo`) is a hard
field: VMs often name the CPU by family alone, and an AVX2 and an AVX-512 CPU of
one family run a model at different speed and energy.
"""

from __future__ import annotations

from collections.abc import Mapping

IDENTITY_ONLY = frozenset({"gpu_uuid"})
SOFT_FIELDS = frozenset(
    {
        "torch",
        "transformers",
        "vllm",
        "llama_cpp",
        "nvidia_driver",
        "cuda_driver",
        "pytest_energy",
        "persistence_mode",
        "server_version",
    }
)


# Hard fields that later versions added: compared only where both sides record them,
# so that a baseline written before a field existed still compares after an upgrade.
ADDED_FIELDS = frozenset({"cpu_isa"})


def differing_fields(base: Mapping[str, str], head: Mapping[str, str]) -> list[str]:
    """Sorted fields whose values differ (present in either), identity-only fields
    aside, and added fields only where both record them."""
    keys = (set(base) | set(head)) - IDENTITY_ONLY
    keys -= ADDED_FIELDS - (set(base) & set(head))
    return sorted(key for key in keys if base.get(key) != head.get(key))


def hard_differences(base: Mapping[str, str], head: Mapping[str, str]) -> list[str]:
    """The hard fields that differ, as ``"gpu: 'A100' -> 'H100'"`` (sorted by field)."""
    return [
        f"{key}: {_shown(base.get(key))} -> {_shown(head.get(key))}"
        for key in differing_fields(base, head)
        if key not in SOFT_FIELDS
    ]


def soft_changes(base: Mapping[str, str], head: Mapping[str, str]) -> list[str]:
    """The software versions that changed, as ``"transformers 5.24.0 -> 5.25.0"``.

    A field the base did not record (an older baseline) is no change to report.
    """
    return [
        f"{key.replace('_', '-')} {base[key]} -> {head[key]}"
        for key in differing_fields(base, head)
        if key in SOFT_FIELDS and key in base and key in head
    ]


def _shown(value: str | None) -> str:
    return "missing" if value is None else repr(value)
