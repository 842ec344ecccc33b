"""pytest wiring: options, the energy marker, fixtures, and hooks that delegate.

Importing this module is cheap: no torch, transformers or pynvml. The
session's state lives in :class:`pytest_energy.session.EnergySession`,
stored under a typed stash key.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_energy import settings as settings_module
from pytest_energy.errors import EnergyError
from pytest_energy.settings import Settings

if TYPE_CHECKING:
    from pytest_energy.curves import Curve
    from pytest_energy.meters.base import EnergyMeter
    from pytest_energy.metrics import EvalResult
    from pytest_energy.mmlu import MMLU
    from pytest_energy.session import EnergySession

T = TypeVar("T")
SKIP_REASON = "run with --energy-budget"
ENERGY_FIXTURES = frozenset({"energy_eval", "mmlu", "energy_meter", "energy_curve"})
MARKER_DOC = (
    "energy(max_j_per_token=None, max_j_per_question=None, min_accuracy=None, "
    "max_output_tokens=None, tolerance=None): energy and accuracy budgets for the "
    "evaluations of this test (skipped without --energy-budget)"
)

session_key = pytest.StashKey["EnergySession"]()
settings_key = pytest.StashKey[Settings]()
rows_key = pytest.StashKey[list[dict[str, Any]]]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_energy import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    settings_module.register(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_DOC)
    settings = Settings.from_pytest_config(config)
    config.stash[settings_key] = settings
    if not settings.enabled:
        return
    from pytest_energy.session import EnergySession

    worker = hasattr(config, "workerinput")
    controller = not worker and getattr(config.option, "dist", "no") != "no"
    try:
        session = EnergySession(
            settings,
            writes_files=not worker,
            custom_meter=lambda: config.hook.pytest_energy_make_meter(settings=settings),
        )
        if not controller:
            # Fail fast on a meter that cannot work (no RAPL, no NVML), as a usage error.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                session.meter  # noqa: B018
            for warning in caught:
                message = warning.message
                if isinstance(message, Warning):
                    config.issue_config_time_warning(message, stacklevel=2)
    except EnergyError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[session_key] = session
    config.pluginmanager.register(_SessionHooks(session), "energy-session")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(session_key, None)
    if session is not None:
        session.close()


def pytest_report_header(config: pytest.Config) -> str | None:
    session = config.stash.get(session_key, None)
    if session is None or session._meter is None:
        return None
    from pytest_energy.report import device_label
    from pytest_energy.report.terminal import render_header

    meter = session.meter
    return render_header(
        meter.name,
        device_label(meter.fingerprint()),
        session.settings.baseline_path,
        meter.estimated,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash[settings_key].enabled:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("energy") is not None or names & ENERGY_FIXTURES:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    rows = item.stash.get(rows_key, None)
    if call.when == "call" and rows:
        # A plain attribute survives xdist's report serialisation, so workers'
        # results reach the controller the same way a plain run's do.
        report.energy_rows = rows  # type: ignore[attr-defined]
    return report


class _SessionHooks:
    """Hooks that need the session, registered only when energy testing is on."""

    def __init__(self, session: EnergySession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rows = getattr(report, "energy_rows", None)
        if not rows or not self.session.writes_files:
            return
        from pytest_energy.metrics import EvalResult
        from pytest_energy.outcome import Outcome

        self.session.collect(
            [(EvalResult.from_dict(r["result"]), Outcome.from_dict(r["outcome"])) for r in rows]
        )

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.session.writes_files:
            return
        from pytest_energy.reporting import finish_session

        finish_session(self.session, terminalreporter)


# -- fixtures -------------------------------------------------------------------


def _energy_session(config: pytest.Config) -> EnergySession:
    session = config.stash.get(session_key, None)
    if session is None:
        pytest.skip(SKIP_REASON)
    return session


@pytest.fixture(scope="session")
def energy_meter(request: pytest.FixtureRequest) -> EnergyMeter:
    """The session's meter: ``with energy_meter.window() as w: ...`` then ``w.energy_j``."""
    return _guarded(lambda: _energy_session(request.config).meter)


@pytest.fixture(scope="session")
def mmlu(request: pytest.FixtureRequest) -> MMLU:
    """The MMLU questions of ``--energy-mmlu``; ``mmlu.sample(n, subjects, seed)`` samples them."""
    return _guarded(lambda: _energy_session(request.config).mmlu)


@pytest.fixture(scope="session")
def energy_curve(request: pytest.FixtureRequest) -> Callable[[str], Curve]:
    """``energy_curve(model)``: the model's operating curve E(n_in, n_out), from the
    ``energy_curve`` file or calibrated once per session with the session's meter."""
    session = _energy_session(request.config)
    return lambda model: _guarded(lambda: session.curve(session.engine(model)))


class EnergyEval:
    """The ``energy_eval`` fixture: ``energy_eval(model, strategy, *, n, subjects, seed, **gen)``.

    Runs the evaluation, checks the budgets of the ``energy`` marker and the
    budgets file, compares with the baseline, records the result for the
    reports and returns the :class:`~pytest_energy.metrics.EvalResult`. A
    breach or a regression fails the test with one line saying what exceeded what.
    """

    def __init__(self, session: EnergySession, item: pytest.Item) -> None:
        self._session = session
        self._item = item
        self._calls = 0

    def __call__(
        self,
        model: str,
        strategy: str = "direct",
        *,
        n: int | None = 32,
        subjects: str | Sequence[str] | None = None,
        seed: int = 0,
        **generation: Any,
    ) -> EvalResult:
        __tracebackhide__ = True
        self._calls += 1
        test_id = self._item.nodeid + ("" if self._calls == 1 else f"#{self._calls}")
        marker = self._item.get_closest_marker("energy")
        session = self._session

        def run() -> tuple[EvalResult, Any]:
            if marker is not None:
                from pytest_energy.budgets import marker_budgets

                # A misspelt budget fails before minutes of evaluation, not after.
                marker_budgets(test_id, marker.kwargs)
            result = session.evaluate(
                model,
                strategy,
                n=n,
                subjects=subjects,
                seed=seed,
                generation=generation,
                test_id=test_id,
            )
            return result, session.judge(result, marker.kwargs if marker else None)

        result, outcome = _guarded(run)
        self._item.stash.setdefault(rows_key, []).append(
            {"result": result.to_dict(), "outcome": outcome.to_dict()}
        )
        from pytest_energy.report.results import junit_properties

        self._item.user_properties.extend(junit_properties(result, outcome))
        message = session.failure(outcome)
        if message is not None:
            pytest.fail(message, pytrace=False)
        return result


@pytest.fixture
def energy_eval(request: pytest.FixtureRequest) -> EnergyEval:
    """Evaluate a model with a test-time strategy on MMLU, measured and checked."""
    return EnergyEval(_energy_session(request.config), request.node)


def _guarded(fn: Callable[[], T]) -> T:
    """Run ``fn``; a known problem (bad data, model, meter) fails the test with its one line."""
    __tracebackhide__ = True
    try:
        return fn()
    except EnergyError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


__all__ = ["EnergyEval", "energy_curve", "energy_eval", "energy_meter", "mmlu"]
