"""Check the nvml meter on a real NVIDIA GPU; prints one JSON document (under 5 minutes).

    python benchmarks/gpu_check.py [--device N] [--idle-s 2] [--windows 5,30] [--mmlu DIR]

Reports the energy counter's update period, the agreement between the counter
and integrated instantaneous power over busy windows (bf16 matmuls with torch),
idle power, other processes on the GPU, :func:`model_section` (the SmolLM2
joules-per-token part), :func:`backends_section` (the same J/token through the
transformers and the in-process vLLM backends, whose start adds a minute or two;
skipped, with the reason printed, without vllm), and then runs the ``tests/gpu``
folder (:func:`tests_section`, with skips turned into failures). Needs torch with
CUDA and nvidia-ml-py.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.idle import measure_idle_power_w
from pytest_energy.meters.nvml import NvmlMeter
from pytest_energy.meters.select import MIN_WINDOW_PERIODS

if TYPE_CHECKING:
    from pytest_energy.session import EnergySession

MATRIX = 8192


def busy_window(
    torch: Any, device: str, seconds: float, counter: NvmlMeter, polled: NvmlMeter
) -> dict[str, Any]:
    """Keep the GPU busy with matmuls for ``seconds`` and read both meters around it."""
    a = torch.randn(MATRIX, MATRIX, device=device, dtype=torch.bfloat16)
    b = torch.randn(MATRIX, MATRIX, device=device, dtype=torch.bfloat16)
    out = torch.empty_like(a)
    torch.cuda.synchronize(device)
    start_s = time.monotonic()
    counter_start, polled_start = counter.read(), polled.read()
    matmuls = 0
    while time.monotonic() - start_s < seconds:
        for _ in range(8):
            torch.matmul(a, b, out=out)
        torch.cuda.synchronize(device)
        matmuls += 8
    counter_j = counter.read() - counter_start
    polled_j = polled.read() - polled_start
    duration_s = time.monotonic() - start_s
    return {
        "target_s": seconds,
        "duration_s": round(duration_s, 4),
        "counter_j": round(counter_j, 3),
        "polled_j": round(polled_j, 3),
        "counter_mean_w": round(counter_j / duration_s, 2),
        "polled_mean_w": round(polled_j / duration_s, 2),
        "polled_vs_counter": round((polled_j - counter_j) / counter_j, 5),
        "matmuls": matmuls,
        "tflop_per_s": round(2 * MATRIX**3 * matmuls / duration_s / 1e12, 1),
    }


def meter_section(args: argparse.Namespace) -> tuple[dict[str, Any], NvmlMeter]:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA device; run it on an NVIDIA machine")
    device = f"cuda:{args.device}"
    torch.cuda.init()
    counter = NvmlMeter([args.device])
    polled = NvmlMeter([args.device], source="polled", poll_interval_s=args.poll_s)
    energy_meter = EnergyMeter(counter, min_window_s=MIN_WINDOW_PERIODS * counter.update_period_s)
    result: dict[str, Any] = {
        "benchmark": "gpu_check",
        "fingerprint": counter.fingerprint(),
        "clocks_at_start": counter.current_clocks_mhz(),
        "counter_source": counter.sources,
        "polled_source": polled.sources,
        "update_period_s": round(counter.update_period_s, 5),
        "min_window_s": round(energy_meter.min_window_s, 4),
        "poll_interval_s": args.poll_s,
        "other_processes": [asdict(p) for p in counter.other_processes()],
    }
    result["idle_power_w"] = round(
        measure_idle_power_w(energy_meter, duration_s=args.idle_s) or 0.0, 2
    )
    busy_window(torch, device, 2.0, counter, polled)  # warm-up: clocks and temperature settle
    result["windows"] = [
        busy_window(torch, device, seconds, counter, polled) for seconds in args.windows
    ]
    result["clocks_after_busy"] = counter.current_clocks_mhz()
    polled.close()
    return result, counter


def nvml_session(args: argparse.Namespace) -> EnergySession:
    """A plugin session without pytest: the nvml meter on ``--device``, MMLU from ``--mmlu``."""
    from pytest_energy.session import EnergySession
    from pytest_energy.settings import Settings

    settings = Settings(
        enabled=True,
        meter="nvml",
        mmlu=args.mmlu,
        device=f"cuda:{args.device}",
        rootdir=Path.cwd(),
    )
    return EnergySession(settings, writes_files=False)


def measured_row(session: EnergySession, model: str, strategy: str, n: int) -> dict[str, Any]:
    """One evaluation of ``strategy`` on ``n`` seeded questions: what it measured."""
    started = time.monotonic()
    r = session.evaluate(model, strategy, n=n, subjects=None, seed=0, generation={})
    return {
        "backend": r.fingerprint.get("backend", "transformers"),
        "model": r.model,
        "dtype": r.fingerprint.get("dtype"),
        "questions": r.questions,
        "accuracy": r.accuracy,
        "input_tokens": r.input_tokens,
        "computed_input_tokens": r.computed_input_tokens,
        "output_tokens": r.output_tokens,
        "energy_j": r.energy_j,
        "prefill_j": r.prefill_j,
        "decode_j": r.decode_j,
        "j_per_token": r.j_per_token,
        "j_per_output_token": r.j_per_output_token,
        "duration_s": r.duration_s,
        "wall_s": round(time.monotonic() - started, 2),
        "phase_split": r.details.get("phase_split"),
        "runs_per_window": r.details.get("runs_per_window", 1),
    }


def model_section(result: dict[str, Any], args: argparse.Namespace) -> None:
    """SmolLM2 joules per token with the engine and the nvml meter: batch 1 and 16,
    direct and cot (max 128 tokens), on ``--questions`` real MMLU questions."""
    session = nvml_session(args)
    rows: list[dict[str, Any]] = []
    try:
        from pytest_energy.engine import Engine

        engine = session.engine("smollm2-135m")
        assert isinstance(engine, Engine)  # the transformers engine: its batch size is set
        for batch_size in (1, 16):
            engine.batch_size = batch_size
            for strategy in ("direct", "cot:max_tokens=128"):
                rows.append(
                    {
                        "batch_size": batch_size,
                        "strategy": strategy,
                        **measured_row(session, "smollm2-135m", strategy, args.questions),
                    }
                )
    finally:
        session.close()
    result["model"] = {"model": "smollm2-135m", "rows": rows}


BACKENDS = ("vllm:smollm2-135m", "smollm2-135m")  # vLLM first: it claims most GPU memory


def backends_section(result: dict[str, Any], args: argparse.Namespace) -> None:
    """J/token for direct and cot (max 128 tokens) on SmolLM2 at the transformers
    backend and the in-process vLLM backend: the same ``--questions`` real MMLU
    questions, one session, one nvml meter. Skipped (the reason printed to
    stderr and recorded) without vllm or CUDA."""
    import torch

    reason = None
    if find_spec("vllm") is None:
        reason = "vllm is not installed (pip install 'pytest-energy[vllm]')"
    elif not torch.cuda.is_available():
        reason = "torch sees no CUDA device"
    elif args.device != 0:
        reason = "vLLM runs on the first visible GPU: use CUDA_VISIBLE_DEVICES, not --device"
    if reason is not None:
        print(f"gpu_check: backends: skipped: {reason}", file=sys.stderr)
        result["backends"] = {"skipped": reason}
        return
    # What the earlier sections left in torch's cache would count against vLLM's share.
    gc.collect()
    torch.cuda.empty_cache()
    session = nvml_session(args)
    rows: list[dict[str, Any]] = []
    try:
        for model in BACKENDS:
            for strategy in ("direct", "cot:max_tokens=128"):
                rows.append(
                    {"strategy": strategy, **measured_row(session, model, strategy, args.questions)}
                )
        meter = session.meter.fingerprint()
    finally:
        session.close()
        # vLLM's engine stops when its LLM is collected; tests/gpu starts its own.
        gc.collect()
        torch.cuda.empty_cache()
    result["backends"] = {"model": "smollm2-135m", "meter": meter.get("meter"), "rows": rows}


def tests_section(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Run ``tests/gpu`` in a child pytest, a GPU required, and record its counts."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTEST_ENERGY_REQUIRE_GPU": "1", "PYTEST_ENERGY_TEST_MMLU": args.mmlu}
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "gpu-tests.xml"
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/gpu", "-q", f"--junitxml={junit}"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        suite = ElementTree.parse(junit).getroot().find("testsuite") if junit.exists() else None
    counts = {} if suite is None else {k: int(suite.get(k, 0)) for k in _JUNIT_COUNTS}
    result["gpu_tests"] = {
        "exit_code": run.returncode,
        **counts,
        "wall_s": round(time.monotonic() - started, 1),
        "output_tail": run.stdout[-2000:] + run.stderr[-1000:],
    }


_JUNIT_COUNTS = ("tests", "failures", "errors", "skipped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=int, default=0, help="CUDA ordinal (default 0)")
    parser.add_argument("--idle-s", type=float, default=2.0, help="idle window (default 2 s)")
    parser.add_argument("--poll-s", type=float, default=0.02, help="power poll interval")
    parser.add_argument(
        "--windows",
        type=lambda text: [float(part) for part in text.split(",")],
        default=[5.0, 30.0],
        help="busy windows in seconds (default 5,30)",
    )
    parser.add_argument("--mmlu", default="../shared/mmlu", help="MMLU folder (Hendrycks CSVs)")
    parser.add_argument("--questions", type=int, default=32, help="MMLU questions per run")
    parser.add_argument("--no-tests", action="store_true", help="skip running tests/gpu")
    args = parser.parse_args(argv)
    started_s = time.monotonic()
    result, counter = meter_section(args)
    try:
        model_section(result, args)
        backends_section(result, args)
    finally:
        counter.close()
    if not args.no_tests:
        tests_section(result, args)
    result["total_s"] = round(time.monotonic() - started_s, 1)
    json.dump(result, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0 if result.get("gpu_tests", {}).get("exit_code", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
