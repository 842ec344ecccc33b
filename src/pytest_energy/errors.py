"""Typed errors. Each message is one line that names the thing and the fix."""

from __future__ import annotations


class EnergyError(Exception):
    """Base class of every error pytest-energy raises on purpose."""


class ConfigError(EnergyError):
    """A bad option, ini value, environment variable or budgets file."""


class DataError(EnergyError):
    """An MMLU source that is missing or malformed."""


class ModelError(EnergyError):
    """A model spec that cannot be resolved or loaded."""


class StrategyError(EnergyError):
    """A strategy spec that cannot be parsed."""


class MeterError(EnergyError):
    """A meter that cannot measure: missing hardware, permission, unsupported counter."""


class MeasurementError(MeterError):
    """A reading that cannot be a result: zero, negative, implausible, or a window too short."""


class BaselineError(EnergyError):
    """A baseline file that is corrupt, of a wrong schema version, or unwritable."""


class WindowTooShort(MeasurementError):
    """A window shorter than the meter can resolve: extend it by repeating the workload."""


class ServerError(EnergyError):
    """A served model (an OpenAI-compatible URL) that cannot be reached or answers unusably."""
