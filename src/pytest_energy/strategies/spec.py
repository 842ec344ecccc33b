"""Strategy specs: ``name[:option=value,flag,...]``, validated against each strategy's options."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_energy.errors import StrategyError

# strategy -> option -> (converter name, default or None)
OPTIONS: dict[str, dict[str, tuple[type, Any]]] = {
    "direct": {"generate": (bool, False), "max_tokens": (int, 8)},
    "cot": {"max_tokens": (int, 256), "budget_j": (float, None)},
    "vote": {"k": (int, 5), "temperature": (float, 0.7), "max_tokens": (int, 256)},
    # Route options are validated by pytest_energy.routing.parse_route_options.
    "route": {
        "candidates": (str, None),
        "target_accuracy": (str, None),
        "lambda": (str, None),
        "calibration": (str, None),
    },
}


@dataclass(frozen=True)
class StrategySpec:
    """A parsed strategy: its name and typed options (defaults filled in)."""

    name: str
    options: Mapping[str, Any]
    given: tuple[str, ...] = ()

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


def parse_strategy(text: str, overrides: Mapping[str, Any] | None = None) -> StrategySpec:
    """Parse ``text`` and apply keyword overrides from ``energy_eval(..., max_tokens=64)``."""
    name, _, rest = text.strip().partition(":")
    name = name.strip().lower()
    if name not in OPTIONS:
        raise StrategyError(
            f"unknown strategy {name!r} in {text!r}; use one of {', '.join(OPTIONS)}"
        )
    allowed = OPTIONS[name]
    raw: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        raw[key.strip()] = value.strip() if eq else True
    raw.update(overrides or {})
    options = {key: default for key, (_, default) in allowed.items()}
    for key, value in raw.items():
        if key not in allowed:
            raise StrategyError(
                f"strategy {name} has no option {key!r} (in {text!r}); "
                f"options: {', '.join(allowed)}"
            )
        options[key] = _convert(name, key, value, allowed[key][0])
    return StrategySpec(name, options, tuple(raw))


def _convert(name: str, key: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise StrategyError(f"strategy {name}: option {key} needs a value, e.g. {key}=...")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise StrategyError(f"strategy {name}: option {key}={value!r} must be a whole number")
    try:
        if kind is bool:
            if value is True or str(value).lower() in ("1", "true", "yes"):
                return True
            if str(value).lower() in ("0", "false", "no"):
                return False
            raise ValueError
        converted = kind(value)
    except (TypeError, ValueError):
        raise StrategyError(
            f"strategy {name}: option {key}={value!r} is not a valid {kind.__name__}"
        ) from None
    if kind in (int, float) and not math.isfinite(converted):
        raise StrategyError(f"strategy {name}: option {key}={value!r} must be a finite number")
    if kind in (int, float) and converted <= 0 and not (key == "temperature" and converted == 0):
        raise StrategyError(f"strategy {name}: option {key} must be positive, got {value!r}")
    return converted
