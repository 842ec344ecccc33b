"""Options, their ini twins and environment variables, validated once into Settings.

Precedence: command line > environment (``PYTEST_ENERGY_<NAME>``) > ini
(``energy_<name>``) > default. Every bad value is a ``pytest.UsageError`` that
names the option, the value and the fix; hooks never read options again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from pytest_energy.files import Output
from pytest_energy.options import DEFAULT_BUDGETS_FILE, dest

MeterName = Literal["auto", "nvml", "rapl", "cpu-estimate", "curve", "dcgm"]
METER_NAMES: tuple[MeterName, ...] = ("auto", "nvml", "rapl", "cpu-estimate", "curve", "dcgm")
DEFAULT_BASELINE = ".energy/baseline.json"
DEFAULT_MMLU = "hf:cais/mmlu"
# A modern server core under inference load draws roughly 5-15 W (package TDP
# divided by cores); 10 W is the documented middle. Configure it for your CPU.
DEFAULT_WATTS_PER_CORE = 10.0
DEFAULT_LOCK_TIMEOUT_S = 600.0
DEFAULT_CONCURRENCY = 16
DEFAULT_REQUEST_TIMEOUT_S = 300.0
# Five repeats per side let the gate tell a 20% regression from meter noise
# (>= 95% detected, <= 1% false alarms in benchmarks/gate_quality.py); with one
# the tolerance alone decides. Lower it where evaluations are slow.
DEFAULT_REPEATS = 5
# --energy-repeats auto: the most repeats it may take (pytest_energy.sequential).
DEFAULT_MAX_REPEATS = 10

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

T = TypeVar("T")


@dataclass(frozen=True)
class Tolerance:
    """A one-sided allowed change: relative (``rel=0.10`` is 10%) and an absolute floor.

    A change smaller than ``abs`` in the metric's own unit is ignored whatever
    its relative size (so 0.001 J -> 0.0012 J is not a 20% regression).
    """

    rel: float
    abs: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.rel < 10) or self.abs < 0:
            raise ValueError(f"tolerance must be between 0% and 1000%, got {self.rel:.0%}")

    @classmethod
    def parse(cls, text: str | float) -> Tolerance:
        """``"10%"``, ``"10"`` (percent) or ``0.1`` (a float below 1 is a fraction)."""
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            value = float(text)
            return cls(value if value < 1 else value / 100)
        raw = str(text).strip()
        number = raw[:-1].strip() if raw.endswith("%") else raw
        value = float(number)  # ValueError is turned into a usage error by the caller
        return cls(value / 100)

    def __str__(self) -> str:
        return f"{self.rel * 100:g}%"


@dataclass(frozen=True)
class Settings:
    """Every energy option, validated and converted to its unit."""

    enabled: bool = False
    budgets_file: Path | None = None
    meter: MeterName = "auto"
    baseline_path: Path = Path(DEFAULT_BASELINE)
    update_baseline: bool = False
    tolerance: Tolerance = field(default_factory=lambda: Tolerance(0.10))
    repeats: int | Literal["auto"] = DEFAULT_REPEATS
    max_repeats: int = DEFAULT_MAX_REPEATS
    prompt: str | None = None
    warmup: int = 0
    mmlu: str = DEFAULT_MMLU
    report_path: Path | None = None
    json_path: Path | None = None
    accept_reason: str | None = None
    watts_per_core: float = DEFAULT_WATTS_PER_CORE
    strict_baseline: bool = False
    batch_size: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: Path | None = None
    curve_path: Path | None = None
    powercap_root: Path = Path("/sys/class/powercap")
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    # Served backends (an http(s):// model spec) and where their energy is read.
    concurrency: int = DEFAULT_CONCURRENCY
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    dcgm_urls: tuple[str, ...] = ()
    dcgm_select: str | None = None
    server_pid: int | None = None
    rootdir: Path = Path(".")
    # GitHub Actions' job summary ($GITHUB_STEP_SUMMARY): the markdown report is appended.
    step_summary_path: Path | None = None

    def outputs(self) -> list[Output]:
        """The files this run will write at its end, with the option naming each."""
        out = []
        if self.update_baseline:
            out.append(Output("baseline", self.baseline_path, "--energy-baseline"))
        if self.json_path is not None:
            out.append(Output("results", self.json_path, "--energy-json"))
        if self.report_path is not None:
            out.append(Output("report", self.report_path, "--energy-report"))
        return out

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> Settings:
        return cls.from_sources(
            cli=lambda name: config.getoption(dest(name), None),
            env=os.environ,
            ini=lambda name: config.getini(f"energy_{name.replace('-', '_')}"),
            rootdir=Path(config.rootpath),
            invocation_dir=Path(config.invocation_params.dir),
        )

    @classmethod
    def from_sources(
        cls,
        *,
        cli: Callable[[str], Any],
        env: Mapping[str, str],
        ini: Callable[[str], Any],
        rootdir: Path,
        invocation_dir: Path | None = None,
    ) -> Settings:
        # Paths on the command line or in the environment are relative to where
        # pytest was invoked; paths in the ini file are relative to rootdir.
        here = invocation_dir or rootdir

        def raw(name: str) -> tuple[Any, str] | None:
            value = cli(name)
            if value is not None:
                return _anchored(name, value, here), f"--energy-{name}"
            env_name = "PYTEST_ENERGY_" + name.upper().replace("-", "_")
            if env_name in env:
                return _anchored(name, env[env_name], here), env_name
            ini_value = ini(name)
            if ini_value not in (None, "", []):
                return ini_value, f"energy_{name.replace('-', '_')} (ini)"
            return None

        def get(name: str, convert: Callable[[Any], T], default: T, fix: str) -> T:
            found = raw(name)
            if found is None:
                return default
            value, where = found
            try:
                return convert(value)
            except (ValueError, TypeError) as exc:
                detail = f" ({exc})" if str(exc) else ""
                raise pytest.UsageError(
                    f"{where}: invalid value {value!r}{detail}; {fix}"
                ) from None

        def path(value: Any) -> Path:
            p = Path(str(value)).expanduser()
            return p if p.is_absolute() else rootdir / p

        no_budget: tuple[bool, Path | None] = (False, None)
        enabled, budgets_file = get(
            "budget",
            _budget_value,
            no_budget,
            "give a YAML budgets file, or true/false to switch energy testing on/off",
        )
        if enabled and budgets_file is not None:
            budgets_file = path(budgets_file)
            if not budgets_file.is_file():
                found = raw("budget")
                where = found[1] if found else "--energy-budget"
                raise pytest.UsageError(
                    f"{where}: budgets file {budgets_file} does not exist; "
                    "create it or run --energy-budget without a file"
                )
        elif enabled and (rootdir / DEFAULT_BUDGETS_FILE).is_file():
            budgets_file = rootdir / DEFAULT_BUDGETS_FILE

        return cls(
            enabled=enabled,
            budgets_file=budgets_file,
            meter=get("meter", _meter_name, "auto", f"choose one of {', '.join(METER_NAMES)}"),
            baseline_path=get(
                "baseline", path, rootdir / DEFAULT_BASELINE, "give a path to a JSON baseline file"
            ),
            update_baseline=get("update-baseline", _flag, False, "use true or false"),
            tolerance=get(
                "tolerance", Tolerance.parse, Tolerance(0.10), "give a percentage such as 10%"
            ),
            repeats=get(
                "repeats",
                _repeats,
                DEFAULT_REPEATS,
                "give a whole number of at least 1, or auto",
            ),
            max_repeats=get(
                "max-repeats",
                _positive_int,
                DEFAULT_MAX_REPEATS,
                "give a whole number of at least 1 (the most repeats --energy-repeats auto takes)",
            ),
            warmup=get("warmup", _count, 0, "give a whole number of runs, 0 or more"),
            prompt=get(
                "prompt",
                _nonempty,
                None,
                "name a prompt from the budgets file's prompts: or default or mmlu-5shot",
            ),
            mmlu=get(
                "mmlu",
                _nonempty,
                DEFAULT_MMLU,
                "give a folder of MMLU CSVs, a JSONL/CSV/parquet file or hf:cais/mmlu",
            ),
            report_path=get("report", path, None, "give a path for the markdown report"),
            json_path=get("json", path, None, "give a path for the JSON results"),
            accept_reason=get(
                "accept",
                _nonempty,
                None,
                "give a reason, e.g. --energy-accept 'bigger model, see #12'",
            ),
            watts_per_core=get(
                "cpu-watts-per-core",
                _positive_float,
                DEFAULT_WATTS_PER_CORE,
                "give the watts one busy core draws, e.g. 10",
            ),
            strict_baseline=get("strict-baseline", _flag, False, "use true or false"),
            batch_size=get("batch-size", _batch_size, None, "give a whole number or auto"),
            device=get("device", _device, "auto", "use auto, cpu, cuda or cuda:N"),
            dtype=get("dtype", _dtype, "auto", "use auto, float32, bfloat16 or float16"),
            cache_dir=get("cache-dir", path, None, "give a folder for cached models"),
            curve_path=get(
                "curve", path, None, "give a curve JSON file from 'pytest-energy calibrate'"
            ),
            powercap_root=get(
                "powercap-root",
                path,
                Path("/sys/class/powercap"),
                "give the powercap folder, normally /sys/class/powercap",
            ),
            lock_timeout_s=get(
                "lock-timeout",
                _positive_float,
                DEFAULT_LOCK_TIMEOUT_S,
                "give a number of seconds, e.g. 600",
            ),
            concurrency=get(
                "concurrency",
                _positive_int,
                DEFAULT_CONCURRENCY,
                "give the most requests in flight to a served model, e.g. 16",
            ),
            request_timeout_s=get(
                "request-timeout",
                _positive_float,
                DEFAULT_REQUEST_TIMEOUT_S,
                "give the seconds one request to a served model may take, e.g. 300",
            ),
            dcgm_urls=get(
                "dcgm-urls",
                _url_list,
                (),
                "give DCGM exporter URLs such as http://node1:9400/metrics, separated by "
                "commas or spaces",
            ),
            dcgm_select=get(
                "dcgm-select",
                _nonempty,
                None,
                "give label filters such as Hostname=node1,gpu=0 (comma-separated)",
            ),
            server_pid=get(
                "server-pid", _positive_int, None, "give the process id of the model server"
            ),
            rootdir=rootdir,
            step_summary_path=Path(env["GITHUB_STEP_SUMMARY"])
            if env.get("GITHUB_STEP_SUMMARY")
            else None,
        )


_PATH_OPTIONS = frozenset(
    {"baseline", "report", "json", "cache-dir", "curve", "powercap-root", "mmlu", "budget"}
)


def _anchored(name: str, value: Any, base: Path) -> Any:
    text = str(value)
    if name not in _PATH_OPTIONS or text.startswith("hf:") or text.lower() in _TRUE | _FALSE:
        return value
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else base / path)


def _budget_value(value: Any) -> tuple[bool, Path | None]:
    text = str(value).strip()
    if text.lower() in _TRUE:
        return True, None
    if text.lower() in _FALSE:
        return False, None
    return True, Path(text)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean")


def _meter_name(value: Any) -> MeterName:
    text = str(value).strip().lower()
    if text not in METER_NAMES:
        raise ValueError("unknown meter")
    return text  # narrowed to MeterName by the membership test


def _positive_int(value: Any) -> int:
    number = int(str(value).strip())
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _repeats(value: Any) -> int | Literal["auto"]:
    text = str(value).strip().lower()
    return "auto" if text == "auto" else _positive_int(text)


def _url_list(value: Any) -> tuple[str, ...]:
    urls = tuple(u for u in str(value).replace(",", " ").split() if u)
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if not urls or bad:
        raise ValueError(f"not an http(s) URL: {bad[0]}" if bad else "no URL")
    return urls


def _count(value: Any) -> int:
    number = int(str(value).strip())
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _positive_float(value: Any) -> float:
    number = float(str(value).strip())
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError("must be a positive number")
    return number


def _nonempty(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("empty")
    return text


def _batch_size(value: Any) -> int | None:
    text = str(value).strip().lower()
    return None if text == "auto" else _positive_int(text)


def _dtype(value: Any) -> str:
    text = str(value).strip().lower()
    if text in ("auto", "float32", "bfloat16", "float16"):
        return text
    raise ValueError("unknown dtype")


def _device(value: Any) -> str:
    text = str(value).strip().lower()
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise ValueError("unknown device")
