"""Measure the noise the gate sees on this runner: repeats within a session, drift between.

``benchmarks/gate_quality.py`` judges the gate at an assumed noise. This script
measures that noise on the machine it runs on, with the real model, the real
MMLU rows and the session's meter: it runs one energy test of the example suite
in ``--sessions`` separate pytest sessions (a new process each, as CI runs
them), ``--repeats`` repeats each (default 10, auto's maximum: drift within a
session is then measured over the span the simulation draws, not extrapolated),
and reads every repeat's joules from the results JSON. It estimates the fields
of gate_quality's noise model:

* per-repeat CV: the spread of the repeats inside each session around its
  trend (below), with outlying repeats set aside as the gate does (modified
  z-score > 3.5); the lowest and highest session give the range;
* outliers: the share of repeats set aside, and how much more they cost;
* drift within a session: the least-squares slope of log joules over the repeat
  index, per session; the model draws slopes in [0, max], so max is twice the
  mean positive slope;
* drift between sessions: the standard deviation of the sessions' log medians,
  less what per-repeat noise alone puts there (the variance of a median of n
  lognormal repeats, about pi/2 sigma^2 / n), floored at 0.

Writes ``benchmarks/results/session_drift.json``; ``python
benchmarks/gate_quality.py --noise benchmarks/results/session_drift.json`` then
adds the sequential rows at this measured noise. A handful of sessions gives a
rough estimate (the between-session sigma from 6 sessions is uncertain by
about +-30%), and a CPU runner shared with other work is far noisier than a GPU
with an energy counter: read the figures as this runner's, not the product's.

Usage: ``python benchmarks/session_drift.py --mmlu ../shared/mmlu [--sessions 6]
[--repeats 10] [--test 'test_strategy_energy[direct]']``, or ``--sessions-from
FILE`` to estimate again from an earlier run's JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_energy.stats import screen_outliers

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "example_suite"
OUT = Path(__file__).parent / "results" / "session_drift.json"


def run_session(index: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """One pytest session of the selected test; its first result from the JSON."""
    results = folder / f"session-{index}.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"test_mmlu_energy.py::{args.test}",
        "--energy-budget",
        "-q",
        "-p",
        "no:randomly",
        f"--energy-mmlu={args.mmlu}",
        f"--energy-repeats={args.repeats}",
        f"--energy-json={results}",
        # A baseline of its own: the committed one is neither compared nor touched.
        f"--energy-baseline={folder / 'baseline.json'}",
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=SUITE, capture_output=True, text=True, check=False)
    if not results.exists():
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise SystemExit(f"session {index}: pytest wrote no results\n" + "\n".join(tail))
    result = json.loads(results.read_text())["results"][0]
    return {
        "test_id": result["test_id"],
        "meter": result["meter"],
        "estimated": result["estimated"],
        "energy_j": [r["energy_j"] for r in result["repeats"]],
        "other_load": [r.get("other_load") for r in result["repeats"]],
        "wall_s": round(time.monotonic() - started, 1),
    }


def trend(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares line of log(value) over the repeat index: (slope, residual sd)."""
    xs = [x for x, _ in points]
    logs = [math.log(v) for _, v in points]
    x_mean, y_mean = statistics.fmean(xs), statistics.fmean(logs)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    b = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, logs, strict=True)) / sxx
    residuals = [y - y_mean - b * (x - x_mean) for x, y in zip(xs, logs, strict=True)]
    return b, math.sqrt(sum(r * r for r in residuals) / (len(points) - 2))


def estimate(sessions: list[list[float]]) -> dict[str, Any]:
    """gate_quality's noise fields from the repeats of each session."""
    cvs, excess, medians, slopes = [], [], [], []
    total = 0
    for values in sessions:
        kept = screen_outliers(values)
        centre = statistics.median(kept)
        excess += [v / centre - 1 for v in values if v not in kept and v > centre]
        total += len(values)
        # The trend and the noise around it apart: the model draws them apart.
        b, sd = trend([(i, v) for i, v in enumerate(values) if v in kept])
        slopes.append(b)
        cvs.append(sd)
        medians.append(math.log(centre))
    repeats = min(len(v) for v in sessions)
    within = statistics.fmean(c * c for c in cvs)
    between_raw = statistics.stdev(medians)
    between = math.sqrt(max(0.0, between_raw**2 - math.pi / 2 * within / repeats))
    mean_up = statistics.fmean(max(0.0, b) for b in slopes)
    return {
        "cv_low": round(min(cvs), 4),
        "cv_high": round(max(cvs), 4),
        "session_sigma": round(between, 4),
        "drift_max": round(2 * mean_up, 4),
        "outlier_p": round(len(excess) / total, 4),
        "outlier_low": round(min(excess), 4) if excess else 0.15,
        "outlier_high": round(max(excess), 4) if excess else 0.50,
        "observed": {
            "session_cvs": [round(c, 4) for c in cvs],
            "session_medians_relative": [
                round(math.exp(m - statistics.fmean(medians)) - 1, 4) for m in medians
            ],
            "between_sessions_raw_sigma": round(between_raw, 4),
            "slopes": [round(b, 4) for b in slopes],
        },
    }


def measure(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the sessions, printing one line for each."""
    if not args.mmlu:
        parser.error("--mmlu: the MMLU folder (or set PYTEST_ENERGY_MMLU)")
    if args.sessions < 3 or args.repeats < 3:
        parser.error("--sessions and --repeats: at least 3 each, for a spread to estimate")
    args.mmlu = str(Path(args.mmlu).resolve())
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.sessions):
            runs.append(run_session(i, args, Path(tmp)))
            values = runs[-1]["energy_j"]
            print(
                f"session {i + 1}/{args.sessions}: {runs[-1]['test_id']} "
                f"({runs[-1]['meter']}), {len(values)} repeats, median "
                f"{statistics.median(values):.2f} J, {runs[-1]['wall_s']} s",
                flush=True,
            )
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmlu", default=os.environ.get("PYTEST_ENERGY_MMLU"), required=False)
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--test", default="test_strategy_energy[direct]", help="a test of the example suite"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--sessions-from", type=Path, help="estimate again from an earlier run's JSON, running none"
    )
    args = parser.parse_args(argv)
    if args.sessions_from:
        earlier = json.loads(args.sessions_from.read_text())
        runs = earlier["sessions"]
        args.sessions, args.repeats, args.test = (
            earlier["settings"][k] for k in ("sessions", "repeats", "test")
        )
    else:
        runs = measure(parser, args)
    noise = estimate([r["energy_j"] for r in runs])
    print(
        f"per-repeat CV {noise['cv_low']:.1%}-{noise['cv_high']:.1%}; drift between "
        f"sessions sigma {noise['session_sigma']:.1%} (raw "
        f"{noise['observed']['between_sessions_raw_sigma']:.1%}); drift within a session "
        f"up to {noise['drift_max']:.2%}/repeat; outliers {noise['outlier_p']:.1%}"
    )
    print(
        "session medians against their mean: "
        + ", ".join(f"{m:+.1%}" for m in noise["observed"]["session_medians_relative"])
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "session_drift",
        "settings": {
            "sessions": args.sessions,
            "repeats": args.repeats,
            "test": args.test,
            "meter": runs[0]["meter"],
            "estimated": runs[0]["estimated"],
            "cpus": os.cpu_count(),
        },
        "noise": {"name": f"measured-{runs[0]['meter']}", **noise},
        "sessions": runs,
    }
    args.out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
