"""Engine throughput against a naive reference measured in the same run.

Questions per second on SmolLM2-135M for ``direct`` (letter scoring), ``cot``
(max 128 tokens) and ``vote:k=5``, with the engine (batched, cache pruning,
shared vote prefill) and with a naive loop (one question at a time: a full
forward for letter scoring, ``model.generate`` for CoT, k separate
``generate`` calls for a vote). Both sides put each question to the model as
the library renders it: the built-in ``default`` prompt through
:class:`~pytest_energy.rendering.Renderer`. Also cold and warm model load,
plugin start-up cost and meter overhead. Prints a table and writes JSON with
every figure as a ratio against its same-run baseline.

``fiveshot``: MMLU 5-shot prompts (the built-in ``mmlu-5shot`` prompt, shots
from ``dev/``), 16 seeded questions from each of four subjects, in float32:
direct letter scoring with shared prefixes against the engine with sharing off
and against a naive loop over full prompts, and greedy CoT (max 64 tokens) with
shared prefixes against ``model.generate`` per question. Targets: direct at
least 3x naive, CoT at least 4x naive.

The naive loop is slow (about 12 output tokens/s on 2 CPU cores), so it runs on
``--naive-questions`` of the sampled questions (a stratified subset of the
same sample); questions per second are comparable, absolute times are not.

Usage: python benchmarks/engine.py --mmlu ../shared/mmlu [--questions 64]
       python benchmarks/engine.py --mmlu ../shared/mmlu --only fiveshot
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from fiveshot import (  # benchmarks/ is on sys.path when this script runs
    FIVESHOT_SUBJECTS,
    LETTER_CANDIDATES,
    fiveshot,
)

from pytest_energy.engine import Engine, Ledger
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.cpu_estimate import CpuEstimateMeter
from pytest_energy.mmlu import Question, load_mmlu
from pytest_energy.models import resolve_model
from pytest_energy.prompts import resolve_prompt
from pytest_energy.rendering import Renderer
from pytest_energy.strategies import StrategyContext, build_strategy, parse_strategy
from pytest_energy.strategies.voting import majority

OUT = Path(__file__).parent / "results" / "engine.json"
CASES = ("direct", "cot", "vote", "fiveshot", "load", "startup", "meter")
# The zero-shot cases, naive loops and engine strategies alike, render with this.
DEFAULT = Renderer(resolve_prompt("default", {}))


def naive_direct(engine: Engine, questions: list[Question]) -> list[str]:
    model, tok = engine.model, engine.tokenizer
    ids = [tok(c, add_special_tokens=False)["input_ids"][0] for c in LETTER_CANDIDATES]
    answers = []
    for q in questions:
        enc = tok(DEFAULT.direct(engine, q), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            logits = model(**enc).logits[0, -1]
        answers.append("ABCD"[int(torch.stack([logits[i] for i in ids]).argmax())])
    return answers


def naive_generate(
    engine: Engine,
    questions: list[Question],
    max_tokens: int,
    k: int = 1,
    temperature: float = 0.0,
) -> list[str | None]:
    model, tok = engine.model, engine.tokenizer
    answers: list[str | None] = []
    for q in questions:
        enc = tok(DEFAULT.cot(engine, q), return_tensors="pt", add_special_tokens=False)
        votes = []
        for _ in range(k):
            sampling: dict[str, Any] = (
                {"do_sample": True, "temperature": temperature}
                if temperature > 0
                else {"do_sample": False}
            )
            with torch.inference_mode():
                out = model.generate(
                    **enc, max_new_tokens=max_tokens, pad_token_id=tok.pad_token_id, **sampling
                )
            text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            votes.append(DEFAULT.answer(text, q.choices))
        answers.append(majority(votes))
    return answers


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def stratified_subset(questions: list[Question], n: int) -> list[Question]:
    step = max(1, len(questions) // n)
    return questions[::step][:n]


def load_times(spec_name: str) -> dict[str, float]:
    """Cold load (de-quantise the GGUF) against warm load (the on-disk cache)."""
    cache = Path(tempfile.mkdtemp(prefix="pytest-energy-bench-"))
    code = (
        "import time,sys; from pathlib import Path; t=time.perf_counter();"
        "from pytest_energy.models import resolve_model, load_model;"
        f"load_model(resolve_model({spec_name!r}), device='cpu', cache_dir=Path({str(cache)!r}));"
        "print(time.perf_counter()-t)"
    )
    try:
        cold = float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        warm = float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"cold_s": cold, "warm_s": warm, "warm_over_cold": warm / cold}


def startup_cost(runs: int = 7) -> dict[str, float]:
    """pytest start-up with the plugin (unused) against pytest without it."""
    tmp = Path(tempfile.mkdtemp(prefix="pytest-energy-start-"))
    (tmp / "test_x.py").write_text("def test_x():\n    pass\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    def run(*extra: str) -> float:
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--collect-only",
                *extra,
                str(tmp),
            ],
            capture_output=True,
            env=env,
            check=True,
        )
        return time.perf_counter() - start

    try:
        with_plugin = statistics.median(run() for _ in range(runs))
        without = statistics.median(run("-p", "no:energy") for _ in range(runs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest_energy.plugin"],
        capture_output=True,
        text=True,
    )
    heavy = sorted(
        {
            line.rsplit("|", 1)[-1].strip()
            for line in imports.stderr.splitlines()
            if line.rsplit("|", 1)[-1].strip() in ("torch", "transformers", "pynvml")
        }
    )
    return {
        "pytest_with_plugin_s": with_plugin,
        "pytest_without_plugin_s": without,
        "overhead_fraction": with_plugin / without - 1,
        "heavy_imports": heavy,
    }


def meter_overhead(engine: Engine, questions: list[Question]) -> dict[str, float]:
    """Time spent in the meter (readings, window bookkeeping) against the evaluation.

    Timing the evaluation with and without windows would drown a sub-percent
    cost in run-to-run noise; instead count the windows one evaluation opens,
    time that many empty windows, and divide.
    """
    meter = engine.meter
    opened = 0
    original = meter.window

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        opened += 1
        return original(*args, **kwargs)

    runner = build_strategy(parse_strategy("cot:max_tokens=32"), _context(engine), DEFAULT)
    meter.window = counting  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        runner.run(engine, questions, Ledger(), seed=0)
        evaluation_s = time.perf_counter() - start
    finally:
        meter.window = original  # type: ignore[method-assign]
    reps = 2000
    start = time.perf_counter()
    for _ in range(reps):
        with meter.window(engine.sync, strict=False):
            pass
    per_window_s = (time.perf_counter() - start) / reps
    return {
        "windows": opened,
        "per_window_s": per_window_s,
        "evaluation_s": evaluation_s,
        "overhead_fraction": opened * per_window_s / evaluation_s,
    }


def prompt_tokens_computed(engine: Engine, questions: list[Question]) -> float:
    """Prompt tokens the model really ran for vote:k=5, over the prompts' own tokens."""
    computed = 0

    def count(_module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        nonlocal computed
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:  # a prompt pass, not a decode step
            computed += int(kwargs["attention_mask"][:, -ids.shape[1] :].sum())

    prompts = [DEFAULT.cot(engine, q) for q in questions]
    hook = engine.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        engine.generate(prompts, Ledger(), max_new_tokens=2, samples=5, temperature=0.7)
    finally:
        hook.remove()
    return computed / sum(engine.count_tokens(p) for p in prompts)


def _context(engine: Engine) -> StrategyContext:
    def unavailable(*_: Any) -> Any:
        raise RuntimeError("curves and routing are not part of the engine benchmark")

    return StrategyContext(engines=lambda _: engine, curve=unavailable, mmlu=unavailable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmlu", required=True)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--naive-questions", type=int, default=16)
    parser.add_argument("--cot-tokens", type=int, default=128)
    parser.add_argument("--vote-tokens", type=int, default=64)
    parser.add_argument("--skip", nargs="*", default=[], choices=CASES, help=" ".join(CASES))
    parser.add_argument(
        "--only", nargs="*", default=None, choices=CASES, help="run only these cases"
    )
    parser.add_argument(
        "--fiveshot-subjects",
        type=lambda text: text.split(","),
        default=list(FIVESHOT_SUBJECTS),
        help=f"subjects of the 5-shot case (default {','.join(FIVESHOT_SUBJECTS)})",
    )
    parser.add_argument("--fiveshot-per-subject", type=int, default=16)
    parser.add_argument("--fiveshot-cot-tokens", type=int, default=64)
    parser.add_argument(
        "--dtypes",
        type=lambda text: text.split(","),
        default=["auto", "float32"],
        help="engine dtypes to measure (default auto,float32; the first is the main one)",
    )
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args()
    if args.only is not None:
        args.skip = [case for case in CASES if case not in args.only]

    questions = list(load_mmlu(args.mmlu).sample(args.questions, seed=0))
    subset = stratified_subset(questions, args.naive_questions)
    meter = EnergyMeter(CpuEstimateMeter(10.0))
    spec = resolve_model("smollm2-135m")
    # The naive loop is what a user writes with plain transformers: the model as
    # loaded by default (float32), one question at a time.
    plain = Engine.load(spec, device="cpu", meter=meter, dtype="float32")
    engines = {d: Engine.load(spec, device="cpu", meter=meter, dtype=d) for d in args.dtypes}
    engine = engines[args.dtypes[0]]
    report: dict[str, Any] = {
        "machine": {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__},
        "questions": args.questions,
        "naive_questions": len(subset),
        "naive_dtype": "float32",
        "engine_dtypes": {d: str(e.model.dtype) for d, e in engines.items()},
        "batch_size": engine.batch_size,
    }

    def compare(name: str, strategy: str, naive: Any) -> None:
        naive_s, _ = timed(naive)
        naive_qps = len(subset) / naive_s
        report[name] = {"strategy": strategy, "naive_qps": naive_qps}
        for dtype, eng in engines.items():
            runner = build_strategy(parse_strategy(strategy), _context(eng), DEFAULT)
            start = time.perf_counter()
            runner.run(eng, questions, Ledger(), seed=0)
            ours_s = time.perf_counter() - start
            ours_qps = len(questions) / ours_s
            report[name][f"engine_{dtype}_qps"] = ours_qps
            report[name][f"speedup_{dtype}"] = ours_qps / naive_qps
            print(
                f"{name:7s} engine[{dtype}] {ours_qps:7.3f} q/s  naive {naive_qps:7.3f} q/s  "
                f"speedup {ours_qps / naive_qps:5.2f}x",
                flush=True,
            )

    if "direct" not in args.skip:
        compare("direct", "direct", lambda: naive_direct(plain, subset))
    if "cot" not in args.skip:
        compare(
            "cot",
            f"cot:max_tokens={args.cot_tokens}",
            lambda: naive_generate(plain, subset, args.cot_tokens),
        )
    if "vote" not in args.skip:
        compare(
            "vote",
            f"vote:k=5,max_tokens={args.vote_tokens}",
            lambda: naive_generate(plain, subset, args.vote_tokens, k=5, temperature=0.7),
        )
        report["vote"]["prompt_tokens_computed_over_prompt"] = prompt_tokens_computed(
            engine, subset
        )
    if "fiveshot" not in args.skip:
        report["fiveshot"] = fiveshot(
            plain,
            args.mmlu,
            args.fiveshot_subjects,
            args.fiveshot_per_subject,
            args.naive_questions,
            args.fiveshot_cot_tokens,
        )
    if "load" not in args.skip:
        report["load"] = load_times("smollm2-135m")
        print(
            f"load    cold {report['load']['cold_s']:.1f} s  warm {report['load']['warm_s']:.1f} s"
            f"  warm/cold {report['load']['warm_over_cold']:.2f}",
            flush=True,
        )
    if "startup" not in args.skip:
        report["startup"] = startup_cost()
        print(
            f"startup plugin overhead {report['startup']['overhead_fraction']:+.1%} "
            f"heavy imports: {report['startup']['heavy_imports'] or 'none'}",
            flush=True,
        )
    if "meter" not in args.skip:
        report["meter"] = meter_overhead(engine, questions)
        print(f"meter   overhead {report['meter']['overhead_fraction']:+.1%}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
