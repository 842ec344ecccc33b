"""The ``pytest-energy`` console script: render, compare and merge results files.

``pytest-energy report RESULTS.json [--base BASE.json] [--format md|term|benchmark|
benchmark-accuracy] [-o OUT]`` renders a report; ``pytest-energy compare BASE.json
HEAD.json [--tolerance 10%]`` exits 1 when HEAD regressed against BASE;
``pytest-energy merge A.json B.json ... -o OUT.json`` joins the results of several
runners or shards. Exit status: 0 fine, 1 regression (compare), 2 usage or input
error, reported as one line on stderr.

Each subcommand is registered by one small function in :data:`SUBCOMMANDS`
that adds its parser and sets ``handler``; adding a command is a function and
one entry there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from pytest_energy import __version__
from pytest_energy.errors import EnergyError
from pytest_energy.fingerprint import differing_fields
from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Check
from pytest_energy.report import Row, describe_check, sorted_rows
from pytest_energy.settings import Tolerance

POOR_FIT_R2 = 0.9  # calibrate warns below it

Comparator = Callable[[EvalResult, EvalResult, Tolerance], Sequence[Check]]


class CliError(EnergyError):
    """A command that cannot run as asked (bad combination of options, missing module)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of the tool (argparse adds the usage).
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _tolerance(text: str) -> Tolerance:
    try:
        return Tolerance.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid tolerance {text!r}; give a percentage such as 10%"
        ) from None


def _load(path: str) -> Any:
    from pytest_energy.report.results import load_document

    return load_document(Path(path))


def _emit(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    from pytest_energy.files import write_text_atomic

    write_text_atomic(Path(out), text)


# -- report --------------------------------------------------------------------


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="render a results file as markdown or a terminal table")
    p.add_argument("results", metavar="RESULTS.json", help="file written by --energy-json")
    p.add_argument("--base", metavar="BASE.json", help="results of the base branch to compare")
    p.add_argument(
        "--format",
        choices=("md", "term", "benchmark", "benchmark-accuracy"),
        default="md",
        help="md (default), term, or github-action-benchmark JSON (energy or accuracy)",
    )
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    p.add_argument("--plots", action="store_true", help="md: write PNG plots beside OUT")
    p.add_argument("--max-chars", type=int, default=65000, help="md: length limit")
    p.add_argument("--width", type=int, default=None, help="term: width (default: terminal)")
    p.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    document = _load(args.results)
    rows = list(document.rows)
    if args.base is not None and args.format != "md":
        raise CliError("--base works with --format md only; drop --base or use --format md")
    if args.plots and (args.format != "md" or args.output is None):
        raise CliError("--plots needs --format md and -o OUT (the PNGs go beside OUT)")
    if args.format == "md":
        from pytest_energy.report.markdown import render_markdown

        plots: list[str] = []
        if args.plots:
            from pytest_energy.report.plots import write_plots

            out = Path(args.output)
            plots = write_plots(rows, out.parent, prefix=out.stem + "-")
        base = list(_load(args.base).rows) if args.base else None
        text = render_markdown(
            rows,
            base_rows=base,
            accepted_reason=document.accepted_reason,
            plots=plots,
            max_chars=args.max_chars,
        )
    elif args.format == "term":
        from pytest_energy.report.terminal import render_terminal

        width = args.width or shutil.get_terminal_size().columns
        color = args.output is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        text = render_terminal(rows, width=width, color=color)
    else:
        from pytest_energy.files import dump_json
        from pytest_energy.report.results import (
            benchmark_action_accuracy,
            benchmark_action_export,
        )

        export = (
            benchmark_action_export if args.format == "benchmark" else (benchmark_action_accuracy)
        )
        text = dump_json(export(rows))
    _emit(text, args.output)
    return 0


# -- compare -------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` found: lines to print and how many regressions."""

    lines: tuple[str, ...]
    regressions: int
    tests_regressed: int


def compare_rows(
    base_rows: Sequence[Row],
    head_rows: Sequence[Row],
    tolerance: Tolerance,
    comparator: Comparator,
    *,
    ignore_fingerprint: bool = False,
) -> Comparison:
    """Compare each HEAD result with the BASE result of the same test id.

    Tests only in HEAD are new (no failure); an estimated figure is never
    compared with a measured one; a different hardware fingerprint is not
    compared unless ``ignore_fingerprint``.
    """
    base = {r.test_id: r for r, _ in base_rows}
    lines: list[str] = []
    regressions = tests_regressed = 0
    for head, _ in sorted_rows(head_rows):
        before = base.get(head.test_id)
        if before is None:
            lines.append(f"new       {head.test_id}: not in the base results")
            continue
        if before.estimated != head.estimated:
            lines.append(f"skipped   {head.test_id}: estimated and measured energy differ")
            continue
        drift = differing_fields(before.fingerprint, head.fingerprint)
        if drift and not ignore_fingerprint:
            lines.append(
                f"skipped   {head.test_id}: fingerprint differs in {', '.join(drift)} "
                "(--ignore-fingerprint compares anyway)"
            )
            continue
        checks = comparator(head, before, tolerance)
        failed = [c for c in checks if not c.passed]
        regressions += len(failed)
        tests_regressed += bool(failed)
        word = "REGRESSED" if failed else "ok       "
        shown = failed or list(checks)
        detail = "; ".join(describe_check(c) for c in shown) or "no comparable metric"
        lines.append(f"{word} {head.test_id}: {detail}")
    head_ids = {r.test_id for r, _ in head_rows}
    lines += [f"missing   {t}: in the base results only" for t in sorted(set(base) - head_ids)]
    return Comparison(tuple(lines), regressions, tests_regressed)


def gate_comparator() -> Comparator:
    """The plugin's own gate: ``gate.compare(result, baseline.entry_from_result(base), tol)``."""
    from pytest_energy.baseline_entry import entry_from_result
    from pytest_energy.gate import compare

    def comparator(head: EvalResult, base: EvalResult, tolerance: Tolerance) -> Sequence[Check]:
        return compare(head, entry_from_result(base), tolerance)

    return comparator


def _add_compare(sub: Any) -> None:
    p = sub.add_parser("compare", help="exit 1 when HEAD regressed against BASE")
    p.add_argument("base", metavar="BASE.json")
    p.add_argument("head", metavar="HEAD.json")
    p.add_argument("--tolerance", type=_tolerance, default=Tolerance(0.10), help="default 10%%")
    p.add_argument(
        "--ignore-fingerprint",
        action="store_true",
        help="compare results measured on different hardware or software",
    )
    p.set_defaults(handler=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    base, head = _load(args.base), _load(args.head)
    result = compare_rows(
        base.rows,
        head.rows,
        args.tolerance,
        gate_comparator(),
        ignore_fingerprint=args.ignore_fingerprint,
    )
    for line in result.lines:
        print(line)
    if result.regressions:
        print(
            f"{result.regressions} regression(s) in {result.tests_regressed} test(s) "
            f"beyond tolerance {args.tolerance}"
        )
        return 1
    print(f"no regression beyond tolerance {args.tolerance}")
    return 0


# -- merge ---------------------------------------------------------------------


def _add_merge(sub: Any) -> None:
    p = sub.add_parser("merge", help="join results files of several runners or shards")
    p.add_argument("inputs", nargs="+", metavar="RESULTS.json")
    p.add_argument("-o", "--output", required=True, metavar="OUT.json")
    p.add_argument(
        "--on-conflict",
        choices=("error", "suffix"),
        default="error",
        help="one test id with different results: error (default), or keep every one "
        "with ' @<file stem>' appended to its test id",
    )
    p.set_defaults(handler=_run_merge)


def _run_merge(args: argparse.Namespace) -> int:
    from pytest_energy.report.results import merge_documents, write_results

    paths = [Path(p) for p in args.inputs]
    stems = [p.stem for p in paths]
    labels = [p.stem if stems.count(p.stem) == 1 else str(p) for p in paths]
    merged = merge_documents(
        [(label, _load(str(path))) for label, path in zip(labels, paths, strict=True)],
        on_conflict=args.on_conflict,
    )
    write_results(Path(args.output), merged.rows, accepted_reason=merged.accepted_reason)
    print(f"merged {len(merged.rows)} result(s) from {len(paths)} file(s) into {args.output}")
    return 0


def _add_calibrate(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate", help="measure and fit the operating curve E(n_in, n_out) of a model"
    )
    p.add_argument("--model", required=True, help="model spec, e.g. smollm2-135m")
    p.add_argument("--meter", default="auto", help="auto, nvml, rapl, cpu-estimate or dcgm")
    p.add_argument(
        "--grid", default="small", help="small, medium, large, or 'in=32,128,512;out=1,16,64'"
    )
    p.add_argument("--repeats", type=int, default=1, help="measurements per grid point")
    p.add_argument("--mmlu", required=True, help="MMLU source whose text fills the prompts")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--server-pid",
        type=int,
        metavar="PID",
        help="a served model's server on this machine, whose CPU time cpu-estimate counts "
        "(as energy_server_pid)",
    )
    p.add_argument("--plot", metavar="PNG", help="also draw measured points against the fit")
    p.add_argument("-o", "--output", required=True, metavar="CURVE.json")
    p.set_defaults(handler=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    from pytest_energy.calibration import calibrate, filler_text
    from pytest_energy.curves import CurveStore, default_grid, grid_from_spec
    from pytest_energy.report.curve_plot import plot_fit
    from pytest_energy.session import EnergySession
    from pytest_energy.settings import METER_NAMES, Settings

    if args.meter not in METER_NAMES or args.meter == "curve":
        raise CliError(f"--meter {args.meter!r}: use auto, nvml, rapl, cpu-estimate or dcgm")
    grid = (
        default_grid(args.grid)
        if args.grid in ("small", "medium", "large")
        else (grid_from_spec(args.grid))
    )
    settings = Settings(
        enabled=True,
        meter=args.meter,
        mmlu=args.mmlu,
        device=args.device,
        rootdir=Path.cwd(),
        server_pid=args.server_pid,
    )
    session = EnergySession(settings, writes_files=False)
    try:
        engine = session.engine(args.model)
        text = filler_text(session.mmlu.sample(8, seed=0))
        curve, points = calibrate(engine, grid, text, repeats=args.repeats, progress=print)
    finally:
        session.close()
    out = Path(args.output)
    store = CurveStore.load(out, missing_ok=True)
    store.put(curve)
    store.write(out)
    print(
        f"E(n_in, n_out) = {curve.c0_j:.4g} J + {curve.c1_j_per_in:.4g} J/in * n_in"
        f" + {curve.c2_j_per_out:.4g} J/out * n_out"
        f" + {curve.c3_j_per_in_out:.4g} J/(in*out) * n_in * n_out"
    )
    print(
        f"fit: R^2 = {curve.r2:.4f}, rmse {curve.rmse_j:.4g} J, max residual "
        f"{curve.max_abs_residual_j:.4g} J over {curve.n_points} points "
        f"(meter {curve.meter}{', estimated' if curve.estimated else ''})"
    )
    if curve.r2 is not None and curve.r2 < POOR_FIT_R2:
        # Budgets read from such a curve would be noise: say so where CI logs show it.
        print(
            f"warning: poor fit (R^2 {curve.r2:.2f} < {POOR_FIT_R2}): other work on the "
            "machine or a coarse meter; calibrate again on a quiet runner or with --repeats 3",
            file=sys.stderr,
        )
    if args.plot and plot_fit(curve, points, Path(args.plot)) is None:
        print("plot skipped: matplotlib is not installed (pip install 'pytest-energy[plots]')")
    print(f"curve written to {out}")
    return 0


# -- main ----------------------------------------------------------------------

_DESCRIPTION = "Render, compare and merge pytest-energy results; calibrate operating curves."
SUBCOMMANDS: list[Callable[[Any], None]] = [
    _add_report,
    _add_compare,
    _add_merge,
    _add_calibrate,
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pytest-energy", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"pytest-energy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except (EnergyError, OSError) as exc:
        print(f"pytest-energy {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
