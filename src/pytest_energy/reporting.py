"""Session end on the controller: flush the baseline, print the table, write reports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    changes, unused = session.write_baseline()
    first = rows[0][0]
    header = HeaderInfo(
        meter=first.meter,
        device=device_label(first.fingerprint),
        baseline_path=_shown(settings.baseline_path, settings.rootdir),
        estimated=first.estimated,
    )
    tr.write_sep("=", "energy")
    table = render_terminal(rows, width=tr._tw.fullwidth, color=tr.hasmarkup, header=header)
    for line in table.rstrip("\n").splitlines():
        tr.write_line(line)
    if changes is not None:
        tr.write_line(changes.describe(settings.baseline_path))
    missing = sum(outcome.baseline == "missing" for _, outcome in rows)
    if missing and changes is None:
        tr.write_line(
            f"baseline: {missing} evaluation{'s' if missing > 1 else ''} without an entry in "
            f"{_shown(settings.baseline_path, settings.rootdir)}; record with "
            "pytest --energy-budget --energy-update-baseline and commit the file"
        )
    if unused:
        tr.write_line(
            f"baseline: {len(unused)} entr{'y' if len(unused) == 1 else 'ies'} not exercised "
            f"by this run (kept): {', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}"
        )
    if settings.json_path is not None:
        write_results(settings.json_path, rows, accepted_reason=settings.accept_reason)
        tr.write_line(f"energy results: {_shown(settings.json_path, settings.rootdir)}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if settings.report_path is None and not summary:
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
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
