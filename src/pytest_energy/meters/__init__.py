"""Energy meters. See :mod:`pytest_energy.meters.base` for the protocol."""

from __future__ import annotations

from pytest_energy.meters.base import EnergyMeter, Meter, Window

__all__ = ["EnergyMeter", "Meter", "Window"]
