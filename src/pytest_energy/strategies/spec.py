"""Strategy specs, ``name[:option=value,flag,...]``, checked against a registry.

Each strategy module declares what it is in a module-level ``STRATEGIES``
tuple of :class:`StrategyType`: its name, its typed options with defaults,
whether a given set of options samples (random answers), and how to build its
runner. :func:`parse_strategy` finds the types by importing the modules of this
package, so adding a strategy touches its own module and its test. Every
strategy also takes ``prompt=NAME`` (the prompt under test, see
:mod:`pytest_energy.prompts`).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from pytest_energy.errors import StrategyError

if TYPE_CHECKING:
    from pytest_energy.rendering import Renderer
    from pytest_energy.strategies import Strategy, StrategyContext


@dataclass(frozen=True)
class Option:
    """One strategy option: its type, default, and (for text) the values allowed.

    Numbers must be positive (``zero_ok``: 0 allowed too, as for a temperature).
    """

    kind: type
    default: Any = None
    choices: tuple[str, ...] = ()
    zero_ok: bool = False

    def convert(self, strategy: str, key: str, value: Any) -> Any:
        """``value`` (text from the spec or a keyword) as this option's type, or StrategyError."""
        kind = self.kind
        if isinstance(value, bool) and kind is not bool:
            raise StrategyError(f"strategy {strategy}: option {key} needs a value, e.g. {key}=...")
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise StrategyError(
                f"strategy {strategy}: option {key}={value!r} must be a whole number"
            )
        try:
            converted = _as_bool(value) if kind is bool else kind(value)
        except (TypeError, ValueError):
            raise StrategyError(
                f"strategy {strategy}: option {key}={value!r} is not a valid {kind.__name__}"
            ) from None
        if self.choices and converted not in self.choices:
            raise StrategyError(
                f"strategy {strategy}: option {key}={value!r} must be one of "
                f"{', '.join(self.choices)}"
            )
        if kind in (int, float):
            if not math.isfinite(converted):
                raise StrategyError(
                    f"strategy {strategy}: option {key}={value!r} must be a finite number"
                )
            if converted < 0 or (converted == 0 and not self.zero_ok):
                raise StrategyError(
                    f"strategy {strategy}: option {key} must be positive, got {value!r}"
                )
        return converted


def _as_bool(value: Any) -> bool:
    if value is True or str(value).lower() in ("1", "true", "yes"):
        return True
    if value is False or str(value).lower() in ("0", "false", "no"):
        return False
    raise ValueError(value)


# Options every strategy takes.
COMMON_OPTIONS: dict[str, Option] = {"prompt": Option(str)}


@dataclass(frozen=True)
class StrategyType:
    """A strategy as the registry knows it (see the module docstring).

    ``build(spec, context, renderer)`` returns the runner; ``sampled(options)``
    says whether answers are random for these options (the gate then compares
    accuracy and output tokens as samples, not as exact counts).
    """

    name: str
    options: Mapping[str, Option]
    build: Callable[[StrategySpec, StrategyContext, Renderer], Strategy]
    sampled: Callable[[Mapping[str, Any]], bool] = lambda options: False


@dataclass(frozen=True)
class StrategySpec:
    """A parsed strategy: its name, typed options (defaults filled in), the options
    the user gave, and whether it samples (decided here, once)."""

    name: str
    options: Mapping[str, Any]
    given: tuple[str, ...] = ()
    sampled: bool = False

    def __str__(self) -> str:
        """The canonical text: the options the user gave, sorted (a label for reports;
        baselines are keyed by test id, so spelling does not split them)."""
        parts = []
        for key in sorted(self.given):
            value = self.options[key]
            if value is True:
                parts.append(key)
            elif isinstance(value, float):
                parts.append(f"{key}={value:.15g}")
            else:
                parts.append(f"{key}={value}")
        return self.name + (":" + ",".join(parts) if parts else "")

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    @property
    def type(self) -> StrategyType:
        return strategy_types()[self.name]


@cache
def strategy_types() -> dict[str, StrategyType]:
    """Every registered strategy, by name (the modules of this package that declare some)."""
    import pytest_energy.strategies as package

    found: dict[str, StrategyType] = {}
    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        for kind in getattr(module, "STRATEGIES", ()):
            if kind.name in found:
                raise RuntimeError(f"strategy {kind.name!r} is registered twice")
            found[kind.name] = kind
    return dict(sorted(found.items()))


def parse_strategy(text: str, overrides: Mapping[str, Any] | None = None) -> StrategySpec:
    """Parse ``text`` and apply keyword overrides from ``energy_eval(..., max_tokens=64)``."""
    name, _, rest = text.strip().partition(":")
    name = name.strip().lower()
    types = strategy_types()
    if name not in types:
        raise StrategyError(f"unknown strategy {name!r} in {text!r}; use one of {', '.join(types)}")
    kind = types[name]
    allowed = {**kind.options, **COMMON_OPTIONS}
    raw: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        raw[key.strip()] = value.strip() if eq else True
    raw.update(overrides or {})
    options = {key: option.default for key, option in allowed.items()}
    for key, value in raw.items():
        if key not in allowed:
            raise StrategyError(
                f"strategy {name} has no option {key!r} (in {text!r}); "
                f"options: {', '.join(allowed)}"
            )
        options[key] = allowed[key].convert(name, key, value)
    return StrategySpec(name, options, tuple(raw), kind.sampled(options))
