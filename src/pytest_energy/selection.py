"""Which tests a run selected, so baseline entries of deleted or renamed tests can be pruned.

An entry is *stale* when its test no longer exists: the run looked at the test's
file (it lies under the paths the run collected from) without any narrowing
(``-k``, ``-m``, ``--deselect``, ``--lf``, a ``path::test`` argument), and no
collected test has that id. Only such a run may delete entries; a partial run
cannot tell a deleted test from one it did not select.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Selection:
    """What a run collected: the test ids, and the folders and files it covered whole.

    ``scopes`` are absolute paths (folders or files) whose tests were all
    collected; empty when the run narrowed its selection.
    """

    rootdir: Path
    scopes: tuple[Path, ...] = ()
    collected: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of_run(
        cls, config: pytest.Config, collected: Iterable[str], *, narrowed: bool
    ) -> Selection:
        """The selection of this run; ``narrowed`` when items were deselected."""
        option = config.option
        narrowing = narrowed or any(
            getattr(option, name, None)
            for name in ("keyword", "markexpr", "deselect", "lf", "stepwise")
        )
        here = Path(config.invocation_params.dir)
        scopes = () if narrowing else _scopes(config.args, here)
        return cls(Path(config.rootpath), scopes, frozenset(collected))

    @property
    def whole(self) -> bool:
        """Whether the run selected everything under its paths (nothing narrowed)."""
        return bool(self.scopes)

    def stale(self, entry_ids: Iterable[str], evaluated: Collection[str]) -> tuple[str, ...]:
        """Entries whose test is gone: in scope but not collected.

        An entry id is a test id, with ``#N`` for the N-th ``energy_eval`` call of a
        test; ``evaluated`` are the entry ids this run produced. An ``#N`` entry of a
        test that ran but made fewer calls is stale too.
        """
        out = []
        ran_tests = {entry.partition("#")[0] for entry in evaluated}
        for entry in entry_ids:
            test = entry.partition("#")[0]
            if not self._covers(test):
                continue
            gone = test not in self.collected
            fewer_calls = test in ran_tests and entry not in evaluated
            if gone or fewer_calls:
                out.append(entry)
        return tuple(sorted(out))

    def _covers(self, test_id: str) -> bool:
        path = (self.rootdir / test_id.partition("::")[0]).resolve()
        return any(path == scope or scope in path.parents for scope in self.scopes)


def _scopes(args: Sequence[str], here: Path) -> tuple[Path, ...]:
    scopes = []
    for arg in args:
        if "::" in arg:
            continue  # one test or class of a file: the rest of the file was not looked at
        scopes.append((here / arg).resolve())
    return tuple(scopes)
