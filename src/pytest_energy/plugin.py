"""pytest wiring: options, the energy marker, fixture registration, hooks that delegate.

Importing this module is cheap: no torch, transformers or pynvml. The run's
state lives in :class:`pytest_energy.session.EnergySession`, stored under a
typed stash key; the fixtures live in :mod:`pytest_energy.fixtures`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

from pytest_energy import options

# Imported to register them as this plugin's fixtures.
from pytest_energy.fixtures import (  # noqa: F401
    SKIP_REASON,
    energy_curve,
    energy_eval,
    energy_meter,
    mmlu,
    pytest_make_collect_report,
    uses_energy,
)
from pytest_energy.outcome import failed_test_outcome
from pytest_energy.settings import Settings
from pytest_energy.stash import rows_key, session_key, settings_key

if TYPE_CHECKING:
    from pytest_energy.session import EnergySession

MARKER_DOC = (
    "energy(max_j_per_token=None, max_j_per_question=None, min_accuracy=None, "
    "max_output_tokens=None, tolerance=None): energy and accuracy budgets for the "
    "evaluations of this test (skipped without --energy-budget)"
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_energy import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_DOC)
    settings = Settings.from_pytest_config(config)
    config.stash[settings_key] = settings
    if not settings.enabled:
        return
    from pytest_energy.session import EnergySession

    session = EnergySession.start(config, settings)
    config.stash[session_key] = session
    config.pluginmanager.register(_SessionHooks(session, config), "energy-session")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(session_key, None)
    if session is not None:
        session.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(session_key, None)
    if session is None:
        return []
    return session.header_lines(config.get_terminal_writer().fullwidth)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash[settings_key].enabled:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if uses_energy(item):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    rows = item.stash.get(rows_key, None)
    if call.when == "call" and rows:
        if report.failed:
            rows = [{**row, "outcome": failed_test_outcome(row["outcome"])} for row in rows]
        # A plain attribute survives xdist's report serialisation, so workers'
        # results reach the controller the same way a plain run's do.
        report.energy_rows = rows  # type: ignore[attr-defined]
    return report


class _SessionHooks:
    """Hooks that need the session, registered only when energy testing is on."""

    def __init__(self, session: EnergySession, config: pytest.Config) -> None:
        self.session = session
        self.config = config
        self.deselected = False
        self.wrote_all = True

    def pytest_deselected(self) -> None:
        self.deselected = True

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._selected([item.nodeid for item in session.items])
        self.session.energy_tests = sum(map(uses_energy, session.items))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, ids: list[str]) -> None:
        self._selected(ids)  # the controller collects nothing itself; workers tell it

    def _selected(self, ids: list[str]) -> None:
        from pytest_energy.selection import Selection

        self.session.selection = Selection.of_run(self.config, ids, narrowed=self.deselected)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rows = getattr(report, "energy_rows", None)
        if rows and self.session.writes_files:
            self.session.collect_serialised(rows)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.session.writes_files:
            from pytest_energy.session_end import finish_session

            self.wrote_all = finish_session(self.session, terminalreporter)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(
        self, session: pytest.Session, exitstatus: int
    ) -> Generator[None, None, None]:
        # Outermost: the terminal summary (and so the file writes) runs inside.
        self.session.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        yield
        if not self.wrote_all and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
