"""The baseline store: one JSON file of reference results, keyed by test id.

The file is an envelope ``{"schema": 1, "plugin_version": ..., "entries": {...}}``
written with sorted keys, ``indent=2``, a trailing newline and floats rounded to
six significant digits, so a pull request that refreshes a baseline shows a small
diff. Each entry keeps the hardware fingerprint, the meter and whether the
energy is estimated, the per-repeat samples the gate's statistics need, a summary
for humans, and an identity of the question set.

A missing file is an empty store. A corrupt file, a schema this version does not
read, or a malformed entry is a :class:`BaselineError` naming the file (and the
entry) and the fix; it is never silently replaced. Writes are atomic and merge
with what is on disk at that moment, so two sessions recording different tests
keep both; a partial run never deletes entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_energy import __version__
from pytest_energy.baseline_entry import BaselineEntry
from pytest_energy.errors import BaselineError
from pytest_energy.files import ignore_lock_files, lock_beside, read_text, write_text_atomic
from pytest_energy.fingerprint import hard_differences
from pytest_energy.locking import Notify
from pytest_energy.metrics import EvalResult

SCHEMA_VERSION = 1
_FIX_ENTRY = "fix or delete this entry, then re-record it with --energy-update-baseline"


@dataclass(frozen=True)
class BaselineChanges:
    """What an update did, per test id."""

    new: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def describe(self, path: Path) -> str:
        text = (
            f"baseline {path}: {len(self.new)} new, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged"
        )
        if self.removed:
            text += f", {len(self.removed)} removed (tests gone): {listed(self.removed)}"
        return text


@dataclass(frozen=True)
class BaselineStore:
    """The entries of one baseline file; values, never mutated in place.

    ``dirty`` names the entries this session set with :meth:`updated`, ``removed``
    those it dropped with :meth:`without`; only they change what is on disk when
    :meth:`write` merges.
    """

    entries: Mapping[str, BaselineEntry] = field(default_factory=dict)
    plugin_version: str = __version__
    dirty: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()

    @classmethod
    def load(cls, path: Path) -> BaselineStore:
        """Read ``path``; a missing file is an empty store, a bad one a BaselineError."""
        text = read_text(
            path,
            BaselineError,
            what="baseline",
            fix="check its permissions or give another path with --energy-baseline",
        )
        if text is None:
            return cls()
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, path: Path) -> BaselineStore:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            hint = " (it contains merge-conflict markers)" if "<<<<<<<" in text else ""
            raise BaselineError(
                f"{path}: not valid JSON{hint}: {exc.msg} at line {exc.lineno}; repair it, "
                "or delete it and re-record with --energy-update-baseline"
            ) from None
        if not isinstance(data, Mapping) or "schema" not in data:
            raise BaselineError(
                f"{path}: not a pytest-energy baseline (no 'schema' field); "
                "point --energy-baseline at a baseline file, or delete it and re-record"
            )
        schema = data["schema"]
        if schema != SCHEMA_VERSION:
            newer = type(schema) is int and schema > SCHEMA_VERSION
            fix = (
                "upgrade pytest-energy"
                if newer
                else "delete it and re-record with --energy-update-baseline"
            )
            raise BaselineError(
                f"{path}: baseline schema {schema!r} is not readable by pytest-energy "
                f"{__version__} (schema {SCHEMA_VERSION}); {fix}"
            )
        raw_entries = data.get("entries", {})
        if not isinstance(raw_entries, Mapping):
            raise BaselineError(
                f"{path}: 'entries' must be an object keyed by test id; "
                "repair it, or delete the file and re-record with --energy-update-baseline"
            )
        entries: dict[str, BaselineEntry] = {}
        for key, raw in raw_entries.items():
            try:
                entries[key] = BaselineEntry.from_dict(raw)
            except ValueError as exc:
                raise BaselineError(f"{path}: entry {key!r}: {exc}; {_FIX_ENTRY}") from None
        version = data.get("plugin_version")
        return cls(entries=entries, plugin_version=str(version or __version__))

    def get(self, test_id: str) -> BaselineEntry | None:
        return self.entries.get(test_id)

    def updated(
        self, entries: Mapping[str, BaselineEntry]
    ) -> tuple[BaselineStore, BaselineChanges]:
        """A store with ``entries`` set (others kept), and how each one changed."""
        new: list[str] = []
        changed: list[str] = []
        same: list[str] = []
        for key, entry in entries.items():
            old = self.entries.get(key)
            (new if old is None else same if old == entry else changed).append(key)
        merged = {**self.entries, **entries}
        store = BaselineStore(
            merged, __version__, self.dirty | frozenset(entries), self.removed - set(entries)
        )
        return store, BaselineChanges(
            tuple(sorted(new)), tuple(sorted(changed)), tuple(sorted(same))
        )

    def without(self, keys: Iterable[str]) -> BaselineStore:
        """A store without ``keys`` (entries of tests that no longer exist)."""
        gone = frozenset(keys) & set(self.entries)
        kept = {k: v for k, v in self.entries.items() if k not in gone}
        return BaselineStore(kept, __version__, self.dirty - gone, self.removed | gone)

    def unused(self, ran_ids: Iterable[str]) -> tuple[str, ...]:
        """Entries no test of this run exercised."""
        ran = set(ran_ids)
        return tuple(sorted(key for key in self.entries if key not in ran))

    def to_text(self) -> str:
        envelope = {
            "schema": SCHEMA_VERSION,
            "plugin_version": self.plugin_version,
            "entries": {key: entry.to_dict() for key, entry in self.entries.items()},
        }
        return json.dumps(envelope, indent=2, sort_keys=True) + "\n"

    def write(self, path: Path, notify: Notify | None = None) -> BaselineStore:
        """Merge the dirty entries into the file as it is now (re-read under its lock, so
        sessions recording different tests keep each other's), atomically; returns it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.name == ".energy":  # the default folder: ignore the lock file in git
            ignore_lock_files(path.parent)
        with lock_beside(path, BaselineError, notify):
            current = BaselineStore.load(path) if path.exists() else self
            if not self.dirty and not self.removed and path.exists():
                return current
            entries = {k: v for k, v in current.entries.items() if k not in self.removed}
            entries.update({key: self.entries[key] for key in self.dirty})
            merged = BaselineStore(entries, __version__)
            write_text_atomic(path, merged.to_text())
        return merged


def baseline_mismatch(entry: BaselineEntry, result: EvalResult) -> str | None:
    """Why ``result`` cannot be compared with ``entry``, or None when it can."""
    if entry.estimated != result.estimated:
        kinds = {True: "estimated", False: "measured"}
        return (
            f"baseline energy is {kinds[entry.estimated]} ({entry.meter}) but this run's is "
            f"{kinds[result.estimated]} ({result.meter}); estimates are never compared with "
            "measurements: use the baseline's meter, or re-record with --energy-update-baseline"
        )
    diffs = hard_differences(entry.fingerprint, result.fingerprint)
    if entry.meter != result.meter and not any(d.startswith("meter:") for d in diffs):
        diffs.insert(0, f"meter: {entry.meter!r} -> {result.meter!r}")
    if not diffs:
        return None
    return (
        f"not compared: the baseline was recorded on a different setup ({'; '.join(diffs)}); "
        "run on the same hardware, or re-record with --energy-update-baseline"
    )


# -- helpers -------------------------------------------------------------------


def listed(keys: tuple[str, ...], most: int = 5) -> str:
    """Entry ids for a one-line message: the first ``most``, then an ellipsis."""
    return ", ".join(keys[:most]) + (" ..." if len(keys) > most else "")
