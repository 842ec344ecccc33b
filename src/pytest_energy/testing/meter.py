"""A meter for tests: a cumulative counter advanced by hand."""

from __future__ import annotations


class FakeMeter:
    """A meter whose counter a test advances by hand: ``meter.advance(2.5)``."""

    def __init__(self, name: str = "fake", *, estimated: bool = False) -> None:
        self.name = name
        self.estimated = estimated
        self.total_j = 0.0

    def advance(self, joules: float) -> None:
        self.total_j += joules

    def read(self) -> float:
        return self.total_j

    def fingerprint(self) -> dict[str, str]:
        return {"device": "fake"}
