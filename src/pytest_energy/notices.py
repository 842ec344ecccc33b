"""Lines for the user while a run waits (for a device lock, a baseline lock)."""

from __future__ import annotations

import sys

import pytest

from pytest_energy.locking import Notify


def to_stderr(message: str) -> None:
    if sys.__stderr__ is not None:
        sys.__stderr__.write(f"energy: {message}\n")
        sys.__stderr__.flush()


def to_terminal(config: pytest.Config) -> Notify:
    """Notices on pytest's terminal, past output capturing (stderr on xdist workers,
    whose terminal output nobody reads)."""

    def notify(message: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if hasattr(config, "workerinput") or reporter is None or capture is None:
            to_stderr(message)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"energy: {message}")

    return notify
