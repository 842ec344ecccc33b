"""Session end on the controller (or a plain run): flush the baseline, print the energy
table, write the markdown report, the results JSON and the job summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_energy.baseline import listed
from pytest_energy.files import write_text_atomic
from pytest_energy.report import device_label
from pytest_energy.report.markdown import render_markdown
from pytest_energy.report.plots import write_plots
from pytest_energy.report.results import write_results
from pytest_energy.report.terminal import HeaderInfo, render_terminal
from pytest_energy.session import EnergySession


def finish_session(session: EnergySession, tr: pytest.TerminalReporter) -> None:
    settings = session.settings
    rows = session.rows
    if not rows:
        return
    baseline = session.write_baseline()
    first = rows[0][0]
    header = HeaderInfo(
        meter=first.meter,
        device=device_label(first.fingerprint),
        baseline_path=_shown(settings.baseline_path, settings.rootdir),
        estimated=first.estimated,
    )
    tr.write_sep("=", "energy")
    table = render_terminal(
        rows, width=tr.config.get_terminal_writer().fullwidth, color=tr.hasmarkup, header=header
    )
    for line in table.rstrip("\n").splitlines():
        tr.write_line(line)
    shown = _shown(settings.baseline_path, settings.rootdir)
    if baseline.changes is not None:
        tr.write_line(baseline.changes.describe(settings.baseline_path))
    missing = sum(outcome.baseline == "missing" for _, outcome in rows)
    if missing and baseline.changes is None:
        tr.write_line(
            f"baseline: {missing} evaluation{'s' if missing > 1 else ''} without an entry in "
            f"{shown}; record with "
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
    if settings.json_path is not None:
        write_results(settings.json_path, rows, accepted_reason=settings.accept_reason)
        tr.write_line(f"energy results: {_shown(settings.json_path, settings.rootdir)}")
    summary = settings.step_summary_path
    if settings.report_path is None and summary is None:
        return
    plots: list[str] = []
    if settings.report_path is not None:
        plots = write_plots(
            rows, settings.report_path.parent, prefix=settings.report_path.stem + "-"
        )
    markdown = render_markdown(rows, accepted_reason=settings.accept_reason, plots=plots)
    if settings.report_path is not None:
        write_text_atomic(settings.report_path, markdown)
        tr.write_line(f"energy report: {_shown(settings.report_path, settings.rootdir)}")
    if summary is not None:
        with summary.open("a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")


def _entries(keys: tuple[str, ...]) -> str:
    return f"{len(keys)} entr{'y' if len(keys) == 1 else 'ies'}"


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
