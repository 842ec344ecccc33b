"""The fixtures ``energy_eval``, ``mmlu``, ``energy_meter`` and ``energy_curve``.

Each reaches the run's :class:`~pytest_energy.session.EnergySession` through
the config stash; without ``--energy-budget`` there is none and the test is
skipped. A known problem (bad data, model or meter) fails the test with its
one-line message, never a traceback.

The ``energy`` marker is checked when tests are collected (the hook
:func:`pytest_make_collect_report`, which ``plugin.py`` imports to register it):
a bad marker is a collection error naming the test, before anything is measured.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_energy.errors import ConfigError, EnergyError
from pytest_energy.stash import rows_key, session_key

if TYPE_CHECKING:
    from pytest_energy.curves import Curve
    from pytest_energy.meters.base import EnergyMeter
    from pytest_energy.metrics import EvalResult
    from pytest_energy.mmlu import MMLU
    from pytest_energy.prompts import Prompt
    from pytest_energy.session import EnergySession

T = TypeVar("T")
SKIP_REASON = "run with --energy-budget"
ENERGY_FIXTURES = frozenset({"energy_eval", "mmlu", "energy_meter", "energy_curve"})


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
    """The ``energy_eval`` fixture: ``energy_eval(model, strategy, *, n, subjects, seed, prompt,
    **gen)``; ``prompt`` is a name (``prompts:`` in the budgets file, or built in) or a
    :class:`~pytest_energy.prompts.Prompt`.

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
        prompt: str | Prompt | None = None,
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

                # A misspelt budget fails before minutes of evaluation, not after
                # (collection catches it first; a marker applied at run time gets here).
                marker_budgets(test_id, marker.kwargs, marker.args)
            result = session.evaluate(
                model,
                strategy,
                n=n,
                subjects=subjects,
                seed=seed,
                generation=generation,
                test_id=test_id,
                marker_kwargs=marker.kwargs if marker else None,
                prompt=prompt,
            )
            return result, session.judge(result, marker.kwargs if marker else None)

        result, outcome = _guarded(run)
        self._item.stash.setdefault(rows_key, []).append(
            {"result": result.to_dict(), "outcome": outcome.to_dict()}
        )
        from pytest_energy.report.results import junit_properties

        self._item.user_properties.extend(junit_properties(result, outcome))
        from pytest_energy.verdict import failure_message

        message = failure_message(outcome)
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


def uses_energy(item: pytest.Item) -> bool:
    """Whether ``item`` is an energy test (the ``energy`` marker or an energy fixture)."""
    names = set(getattr(item, "fixturenames", ()))
    return item.get_closest_marker("energy") is not None or bool(names & ENERGY_FIXTURES)


def energy_marker_problem(item: pytest.Item) -> str | None:
    """The one-line problem with ``item``'s ``energy`` markers (its own or its
    class's or module's), or None when every one is valid."""
    markers = list(item.iter_markers("energy"))
    if not markers:
        return None
    from pytest_energy.budgets import marker_budgets

    for marker in markers:
        try:
            marker_budgets(item.nodeid, marker.kwargs, marker.args)
        except ConfigError as exc:
            return str(exc)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A module or class holding a test with a bad ``energy`` marker fails to collect.

    A collection error (not a UsageError, which an xdist worker turns into an
    internal error) shows the one-line problem per test and, in a plain run,
    stops the run before any measurement; under xdist the bad tests never run.
    """
    report = yield
    if report.passed and report.result:
        problems = [
            problem
            for node in report.result
            if isinstance(node, pytest.Item)
            and (problem := energy_marker_problem(node)) is not None
        ]
        if problems:
            report.outcome = "failed"
            report.longrepr = "\n".join(problems)
            report.result = []
    return report
