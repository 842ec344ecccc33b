"""Session end on the controller (or a plain run): flush the baseline, print the energy
table, write the markdown report, the results JSON and the job summary."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from pytest_energy.baseline import BaselineChanges, listed
from pytest_energy.baseline_entry import entry_from_result
from pytest_energy.errors import BaselineError
from pytest_energy.files import Output, shown_path, write_text_atomic
from pytest_energy.report import comparison_summary, device_label, tests_ran
from pytest_energy.report.markdown import render_markdown
from pytest_energy.report.plots import write_plots
from pytest_energy.report.results import write_results
from pytest_energy.report.terminal import HeaderInfo, render_terminal
from pytest_energy.session import EnergySession


def finish_session(session: EnergySession, tr: pytest.TerminalReporter) -> bool:
    """Write the baseline, print the table and write the reports; False when a file
    could not be written (each such problem is one ERROR line after the table)."""
    settings = session.settings
    rows = session.rows
    if not rows:
        return True
    problems: list[str] = []
    try:
        baseline = write_baseline(session)
    except (OSError, BaselineError) as exc:
        problems.append(
            _problem(Output("baseline", settings.baseline_path, "--energy-baseline"), exc)
        )
        baseline = BaselineSummary(None, (), (), partial=True)
    _print_table(session, tr)
    _print_baseline(session, baseline, tr)
    counts = comparison_summary([outcome for _, outcome in rows])
    if counts:
        tr.write_line(f"baseline comparisons: {counts}")
    for result, outcome in rows:
        if outcome.prompt_change:
            name = result.test_id.rpartition("::")[2] or result.test_id
            tr.write_line(f"prompt changed: {name}: {outcome.prompt_change}")
    interrupted = _interrupted(session)
    if interrupted is not None:
        ran = tests_ran(rows)
        tr.write_line(
            f"energy: interrupted: {ran} of {interrupted} energy tests ran; "
            "no baseline entry was written",
            yellow=True,
        )
    for output in settings.outputs():
        if output.what == "baseline":
            continue
        try:
            _write(output, session, tr)
        except OSError as exc:
            problems.append(_problem(output, exc))
    if settings.step_summary_path is not None:
        summary = Output("job summary", settings.step_summary_path, "GITHUB_STEP_SUMMARY")
        try:
            with summary.path.open("a", encoding="utf-8") as handle:
                markdown = render_markdown(
                    rows, accepted_reason=settings.accept_reason, interrupted=interrupted
                )
                handle.write(markdown + "\n")
        except OSError as exc:
            problems.append(_problem(summary, exc))
    for problem in problems:
        tr.write_line(f"ERROR: {problem}", red=True, bold=True)
    return not problems


@dataclass(frozen=True)
class BaselineSummary:
    """What the session end did to the baseline file, and what it left alone.

    ``changes`` is None without ``--energy-update-baseline``; ``unused`` are kept
    entries this run did not exercise; ``stale`` entries of deleted tests that
    remain (no update asked); ``partial``: the run did not select the whole suite.
    """

    changes: BaselineChanges | None
    unused: tuple[str, ...]
    stale: tuple[str, ...]
    partial: bool


def write_baseline(session: EnergySession) -> BaselineSummary:
    """Flush queued entries (with --energy-update-baseline), pruning those of tests
    that no longer exist when the run selected the whole suite."""
    ran = {r.test_id for r, _ in session.rows}
    selection = session.selection
    stale = selection.stale(session.baseline.entries, ran) if selection is not None else ()
    unused = tuple(k for k in session.baseline.unused(ran) if k not in stale)
    partial = selection is None or not selection.whole
    if session.interrupted or not session.settings.update_baseline or not (session.rows or stale):
        return BaselineSummary(None, unused, stale, partial)
    # A test that failed (its own assertion included) is no reference.
    entries = {r.test_id: entry_from_result(r) for r, o in session.rows if not o.test_failed}
    store, changes = session.baseline.without(stale).updated(entries)
    session.baseline = store.write(session.settings.baseline_path, session.notify)
    return BaselineSummary(replace(changes, removed=stale), unused, (), partial)


def _interrupted(session: EnergySession) -> int | None:
    """For an interrupted run, how many energy tests it selected (all its tests under
    xdist, whose controller sees ids only); None for a run that finished."""
    if not session.interrupted:
        return None
    if session.energy_tests is not None:
        return session.energy_tests
    selected = session.selection.collected if session.selection is not None else ()
    return len(selected) or len({r.test_id for r, _ in session.rows})


def _problem(output: Output, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return output.problem(exc.strerror or str(exc))
    return str(exc)


def _print_table(session: EnergySession, tr: pytest.TerminalReporter) -> None:
    settings = session.settings
    first = session.rows[0][0]
    header = HeaderInfo(
        meter=first.meter,
        device=device_label(first.fingerprint),
        baseline_path=shown_path(settings.baseline_path, settings.rootdir),
        estimated=first.estimated,
    )
    tr.write_sep("=", "energy")
    width = tr.config.get_terminal_writer().fullwidth
    table = render_terminal(session.rows, width=width, color=tr.hasmarkup, header=header)
    for line in table.rstrip("\n").splitlines():
        tr.write_line(line)


def _print_baseline(
    session: EnergySession, baseline: BaselineSummary, tr: pytest.TerminalReporter
) -> None:
    settings = session.settings
    if baseline.changes is not None:
        tr.write_line(baseline.changes.describe(settings.baseline_path))
    missing = sum(outcome.baseline == "missing" for _, outcome in session.rows)
    if missing and baseline.changes is None and not settings.update_baseline:
        tr.write_line(
            f"baseline: {missing} evaluation{'s' if missing > 1 else ''} without an entry in "
            f"{shown_path(settings.baseline_path, settings.rootdir)}; record with "
            "pytest --energy-budget --energy-update-baseline and commit the file"
        )
    if baseline.stale:
        tr.write_line(
            f"baseline: {_entries(baseline.stale)} of tests that no longer exist: "
            f"{listed(baseline.stale)}; remove with --energy-update-baseline"
        )
    if baseline.unused:
        why = (
            "a run of the whole suite with --energy-update-baseline removes those of deleted tests"
            if baseline.partial
            else "their tests exist"
        )
        tr.write_line(
            f"baseline: {_entries(baseline.unused)} not exercised by this run (kept; {why}): "
            f"{listed(baseline.unused)}"
        )


def _write(output: Output, session: EnergySession, tr: pytest.TerminalReporter) -> None:
    """Write the report or the results file; OSError is the caller's to report."""
    rows, settings = session.rows, session.settings
    if output.what == "results":
        write_results(output.path, rows, accepted_reason=settings.accept_reason)
    else:
        plots = write_plots(rows, output.path.parent, prefix=output.path.stem + "-")
        markdown = render_markdown(
            rows,
            accepted_reason=settings.accept_reason,
            plots=plots,
            interrupted=_interrupted(session),
        )
        write_text_atomic(output.path, markdown)
    tr.write_line(f"energy {output.what}: {shown_path(output.path, settings.rootdir)}")


def _entries(keys: tuple[str, ...]) -> str:
    return f"{len(keys)} entr{'y' if len(keys) == 1 else 'ies'}"
