"""What a user can set: the ``--energy-*`` options and their ini twins.

Every name here is also an ini key ``energy_<name>`` and an environment variable
``PYTEST_ENERGY_<NAME>``; :class:`pytest_energy.settings.Settings` reads them.
"""

from __future__ import annotations

import pytest

DEFAULT_BUDGETS_FILE = "energy-budgets.yaml"

# name -> (help, takes a value?)
OPTIONS: dict[str, tuple[str, bool]] = {
    "meter": (
        "energy meter: auto (default), nvml, rapl, cpu-estimate, curve, or dcgm (DCGM "
        "exporters in energy_dcgm_urls; never chosen by auto)",
        True,
    ),
    "baseline": ("baseline file (default .energy/baseline.json under rootdir)", True),
    "update-baseline": ("record or refresh baseline entries of the tests that ran", False),
    "tolerance": ("allowed regression before failing (default 10%)", True),
    "repeats": (
        "measured repeats per evaluation (default 5: the gate's noise estimate), or auto: "
        "stop as soon as the baseline comparison is decided",
        True,
    ),
    "mmlu": ("MMLU source: CSV folder, JSONL/CSV/parquet file, or hf:cais/mmlu", True),
    "report": ("write a markdown report (for a pull-request comment)", True),
    "json": ("write machine-readable results", True),
    "accept": ("report regressions without failing; the reason is printed", True),
}
# ini/env-only settings: name -> help
INI_ONLY: dict[str, str] = {
    "cpu-watts-per-core": "cpu-estimate meter: watts drawn by one busy core (default 10)",
    "warmup": "unmeasured runs of each evaluation before its repeats (kernel compilation, "
    "caches; default 0)",
    "prompt": "the prompt of every test that picks none: a name under prompts: in the "
    "budgets file, default or mmlu-5shot (default: default)",
    "max-repeats": "the most repeats --energy-repeats auto measures (default 10)",
    "strict-baseline": "fail tests that have no baseline entry (default false)",
    "batch-size": "evaluation batch size (default auto)",
    "device": "model device: auto, cpu, cuda, cuda:N (default auto)",
    "dtype": "model dtype: auto (bfloat16 on GPUs and CPUs with native bf16, else "
    "float32), float32, bfloat16, float16",
    "cache-dir": "folder for cached de-quantised models",
    "curve": "operating-curve JSON for the curve meter and cot:budget_j",
    "powercap-root": "powercap sysfs folder for the rapl meter",
    "concurrency": "requests in flight to a served model (an http(s):// model spec; default 16)",
    "request-timeout": "seconds one request to a served model may take (default 300)",
    "dcgm-urls": "dcgm meter: DCGM exporter /metrics URLs of every node that serves "
    "(separated by commas or spaces)",
    "dcgm-select": "dcgm meter: label filters for the GPUs to count, e.g. Hostname=node1,gpu=0",
    "server-pid": "cpu-estimate meter: count this server process's CPU time (default: the "
    "whole machine's when the model is served)",
    "lock-timeout": "seconds to wait for a device another run is measuring before failing "
    "(default 600)",
}


def dest(name: str) -> str:
    return "energy_" + name.replace("-", "_")


def register(parser: pytest.Parser) -> None:
    group = parser.getgroup("energy", "energy per token (pytest-energy)")
    group.addoption(
        "--energy-budget",
        dest=dest("budget"),
        nargs="?",
        const="true",
        default=None,
        metavar="FILE",
        help="turn energy testing on; optional YAML budgets file "
        f"(default {DEFAULT_BUDGETS_FILE} at rootdir, if present)",
    )
    parser.addini("energy_budget", "turn energy testing on (true) or give a budgets file")
    for name, (text, takes_value) in OPTIONS.items():
        if takes_value:
            group.addoption(f"--energy-{name}", dest=dest(name), default=None, help=text)
        else:
            group.addoption(
                f"--energy-{name}",
                dest=dest(name),
                action="store_const",
                const="true",
                default=None,
                help=text,
            )
        parser.addini(dest(name), text)
    for name, text in INI_ONLY.items():
        parser.addini(dest(name), text)
