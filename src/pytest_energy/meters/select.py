"""Building the session's meter from ``--energy-meter``.

``auto`` tries ``nvml``, then ``rapl``, then falls back to ``cpu-estimate`` with
one :class:`EnergyEstimateWarning` that says why each real meter was unavailable.
``dcgm`` (DCGM exporters of the nodes that serve a model) is never picked by
``auto``: it needs ``energy_dcgm_urls``. A meter asked for by name never falls
back: it works or raises a one-line :class:`~pytest_energy.errors.MeterError`
with the fix.

Shortest window: a stepped counter read at two arbitrary moments is off by up to
one update period at each end, so a window of ``k`` periods carries at most
``1/k`` relative error (about ``0.4/k`` typically). :data:`MIN_WINDOW_PERIODS`
= 10 bounds it at 10% worst case, about 4% typical, which the repeats and the
gate's noise estimate absorb; shorter windows are refused.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from pytest_energy.errors import MeterError
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.cpu_estimate import CpuEstimateMeter
from pytest_energy.meters.dcgm import DcgmMeter
from pytest_energy.meters.nvml import NvmlMeter
from pytest_energy.meters.rapl import RaplMeter
from pytest_energy.settings import MeterName, Settings

MIN_WINDOW_PERIODS = 10


class EnergyEstimateWarning(UserWarning):
    """``--energy-meter auto`` found no sensor and measures with an estimate instead."""


def create_meter(name: MeterName, settings: Settings, *, nvml_module: Any = None) -> EnergyMeter:
    """The session's meter for ``name``; call :func:`close_meter` on it at session end."""
    if name == "auto":
        return _auto(settings, nvml_module)
    if name == "nvml":
        return _nvml(settings, nvml_module)
    if name == "rapl":
        return _rapl(settings)
    if name == "cpu-estimate":
        return _cpu_estimate(settings)
    if name == "curve":
        return _curve(settings)
    if name == "dcgm":
        return _dcgm(settings)
    raise MeterError(
        f"unknown meter {name!r}; choose auto, nvml, rapl, cpu-estimate, curve or dcgm"
    )


def close_meter(meter: EnergyMeter) -> None:
    """Stop background threads and release the library of the wrapped meter, if it has any."""
    close = getattr(meter.meter, "close", None)
    if callable(close):
        close()


def _nvml(settings: Settings, nvml_module: Any) -> EnergyMeter:
    device = settings.device
    devices = [int(device[5:])] if device.startswith("cuda:") else None
    meter = NvmlMeter(devices, nvml=nvml_module)
    return EnergyMeter(meter, min_window_s=MIN_WINDOW_PERIODS * meter.update_period_s)


def _rapl(settings: Settings) -> EnergyMeter:
    meter = RaplMeter(settings.powercap_root)
    return EnergyMeter(meter, min_window_s=MIN_WINDOW_PERIODS * meter.update_period_s)


def _dcgm(settings: Settings) -> EnergyMeter:
    meter = DcgmMeter(
        settings.dcgm_urls, select=settings.dcgm_select, timeout_s=settings.request_timeout_s
    )
    return EnergyMeter(meter, min_window_s=MIN_WINDOW_PERIODS * meter.collect_interval_s)


def _curve(settings: Settings) -> EnergyMeter:
    factory = importlib.import_module("pytest_energy.meters.curve").create_curve_meter
    created = factory(settings)
    return created if isinstance(created, EnergyMeter) else EnergyMeter(created)


def _auto(settings: Settings, nvml_module: Any) -> EnergyMeter:
    reasons: list[str] = []
    if settings.device == "cpu":
        reasons.append("nvml: skipped, the model runs on the CPU (energy_device=cpu)")
    else:
        try:
            return _nvml(settings, nvml_module)
        except MeterError as exc:
            reasons.append(f"nvml: {exc}")
    try:
        return _rapl(settings)
    except MeterError as exc:
        reasons.append(f"rapl: {exc}")
    warnings.warn(
        EnergyEstimateWarning(
            "no energy sensor available, energy is estimated by cpu-estimate "
            f"({settings.watts_per_core:g} W per busy core) and never compared with measured "
            f"baselines ({'; '.join(reasons)})"
        ),
        stacklevel=2,
    )
    return _cpu_estimate(settings)


def _cpu_estimate(settings: Settings) -> EnergyMeter:
    """This process's CPU time, and that of the server ``energy_server_pid`` names."""
    return EnergyMeter(CpuEstimateMeter(settings.watts_per_core, server_pid=settings.server_pid))
