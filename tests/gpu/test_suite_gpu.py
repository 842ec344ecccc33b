"""The plugin end to end on the GPU: SmolLM2 on cuda:0, measured by nvml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SUITE = """
def test_direct(energy_eval):
    energy_eval("smollm2-135m", "direct", n=16, subjects="world_religions")
"""


def test_energy_suite_on_the_gpu_is_measured_by_nvml_and_recorded(
    pytester: pytest.Pytester, mmlu: Path
) -> None:
    pytester.makepyfile(test_gpu=SUITE)
    result = pytester.runpytest_subprocess(
        "--energy-budget",
        "--energy-meter=nvml",
        f"--energy-mmlu={mmlu}",
        "--energy-update-baseline",
        "--energy-json=results.json",
        "-o",
        "energy_device=cuda:0",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["energy: meter nvml (measured)*"])
    (row,) = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))["results"]
    assert row["meter"] == "nvml"
    assert row["estimated"] is False
    assert row["fingerprint"].get("gpu")
    assert row["summary"]["j_per_token"] > 0
    baseline = json.loads((pytester.path / ".energy" / "baseline.json").read_text("utf-8"))
    assert list(baseline["entries"]) == ["test_gpu.py::test_direct"]
