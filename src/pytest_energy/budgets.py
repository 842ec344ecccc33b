"""Energy and accuracy budgets: the YAML budgets file and ``@pytest.mark.energy``.

A budgets file looks like this::

    defaults: {tolerance: 10%, max_j_per_token: 0.05}
    tests:
      - match: "tests/test_mmlu.py::test_strategy[cot]"   # a test id or an fnmatch glob
        max_j_per_question: 40
      - model: smollm2-135m
        strategy: "vote:*"
        min_accuracy: 0.2

Budget keys: ``max_j_per_token``, ``max_j_per_question`` (joules), ``min_accuracy``
(a fraction 0..1 or a percentage such as ``"40%"``), ``max_output_tokens`` (mean
output tokens per question) and ``tolerance`` (the allowed baseline regression,
``"10%"``). A ``tests`` entry selects tests with any of ``match`` (the pytest node
id, exactly or as an fnmatch glob; note that ``[...]`` in a glob is a character
class, while an exact id always matches literally), ``model`` and ``strategy``
(exact or glob; a strategy pattern without ``:`` also matches the strategy's name,
so ``cot`` matches ``cot:max_tokens=256``). Every selector given must match.

A top-level ``prompts:`` mapping names prompts (``NAME: {shots: 5, ...}``, the
fields of :class:`pytest_energy.prompts.Prompt`) that tests select with
``prompt=NAME``.

Precedence, lowest first: ``defaults`` < matching ``tests`` entries in file order <
the marker's keyword arguments. A tolerance missing from all of them falls back
to ``--energy-tolerance``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from pytest_energy.budget_values import VALIDATORS, Where, kind_of
from pytest_energy.errors import ConfigError
from pytest_energy.files import read_text
from pytest_energy.prompts import Prompt, prompt_from_mapping
from pytest_energy.settings import Tolerance

BUDGET_KEYS = (
    "max_j_per_token",
    "max_j_per_question",
    "min_accuracy",
    "max_output_tokens",
    "tolerance",
)
SELECTOR_KEYS = ("match", "model", "strategy")
TOP_KEYS = ("defaults", "tests", "prompts")


@dataclass(frozen=True)
class Budgets:
    """The budgets that apply to one evaluation; ``None`` means no budget.

    Energy budgets are joules (``max_j_per_token``, ``max_j_per_question``);
    ``min_accuracy`` is a fraction; ``max_output_tokens`` bounds the mean output
    tokens per question; ``tolerance`` overrides ``--energy-tolerance``.
    """

    max_j_per_token: float | None = None
    max_j_per_question: float | None = None
    min_accuracy: float | None = None
    max_output_tokens: float | None = None
    tolerance: Tolerance | None = None

    def merged(self, override: Budgets) -> Budgets:
        """These budgets with every value that ``override`` sets replaced."""
        changes = {
            f.name: getattr(override, f.name)
            for f in fields(override)
            if getattr(override, f.name) is not None
        }
        return replace(self, **changes)

    def tolerance_or(self, default: Tolerance) -> Tolerance:
        """The tolerance to gate with: this one if set, else ``default`` (the option)."""
        return self.tolerance if self.tolerance is not None else default

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True)
class BudgetRule:
    """One ``tests`` entry: selectors (all given ones must match) and its budgets."""

    budgets: Budgets
    match: str | None = None
    model: str | None = None
    strategy: str | None = None

    def applies(self, test_id: str, model: str, strategy: str) -> bool:
        if self.match is not None and not _glob(test_id, self.match):
            return False
        if self.model is not None and not _glob(model, self.model):
            return False
        if self.strategy is None or _glob(strategy, self.strategy):
            return True
        # A bare name ("cot") also selects that strategy with options ("cot:max_tokens=64").
        return ":" not in self.strategy and _glob(strategy.partition(":")[0], self.strategy)


@dataclass(frozen=True)
class BudgetsFile:
    """A parsed budgets file (or none: ``BudgetsFile()`` has no budgets at all)."""

    path: Path | None = None
    defaults: Budgets = Budgets()
    rules: tuple[BudgetRule, ...] = ()
    # Named prompts (``prompts:``), by name; see pytest_energy.prompts.
    prompts: Mapping[str, Prompt] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> BudgetsFile:
        """Read and validate ``path``; every problem is a :class:`ConfigError`."""
        text = read_text(
            path,
            ConfigError,
            what="budgets file",
            fix="check the path given to --energy-budget",
            if_missing="check the path given to --energy-budget",
        )
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{path}: not valid YAML ({_yaml_problem(exc)}); fix the syntax"
            ) from None
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: Any, path: Path) -> BudgetsFile:
        """Validate already-loaded YAML data; ``path`` only names the file in errors."""
        if data is None:
            return cls(path=path)
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{path}: the budgets file must be a mapping with 'defaults' and/or 'tests', "
                f"got {kind_of(data)}; see the example in the pytest-energy README"
            )
        where = Where(str(path))
        for key in data:
            _check_key(where, str(key), TOP_KEYS)
        defaults = Budgets()
        if data.get("defaults") is not None:
            raw = data["defaults"]
            if not isinstance(raw, Mapping):
                raise where.error(
                    "defaults",
                    f"must be a mapping of budgets, got {kind_of(raw)}",
                    f"allowed keys: {', '.join(BUDGET_KEYS)}",
                )
            defaults = _parse_budgets(where, "defaults", raw, BUDGET_KEYS)
        rules: list[BudgetRule] = []
        tests = data.get("tests")
        if tests is not None:
            if not isinstance(tests, list):
                raise where.error(
                    "tests",
                    f"must be a list of entries, got {kind_of(tests)}",
                    "write each entry as '- match: ...' on its own line",
                )
            for index, raw in enumerate(tests):
                rules.append(_parse_rule(where, f"tests[{index}]", raw))
        return cls(path=path, defaults=defaults, rules=tuple(rules), prompts=_prompts(where, data))

    def budgets_for(
        self,
        test_id: str,
        model: str,
        strategy: str,
        marker_kwargs: Mapping[str, Any] | None = None,
    ) -> Budgets:
        """Budgets of one evaluation: defaults < matching entries in order < the marker."""
        merged = self.defaults
        for rule in self.rules:
            if rule.applies(test_id, model, strategy):
                merged = merged.merged(rule.budgets)
        if marker_kwargs:
            merged = merged.merged(marker_budgets(test_id, marker_kwargs))
        return merged


def marker_budgets(test_id: str, kwargs: Mapping[str, Any], args: Sequence[Any] = ()) -> Budgets:
    """Validate the arguments of ``@pytest.mark.energy`` on ``test_id``.

    Budgets are keyword arguments only: a positional one (``energy(0.5)``) names
    no budget, so it is an error rather than silently no budget at all.
    """
    where = Where(f"{test_id}: @pytest.mark.energy")
    if args:
        shown = ", ".join(repr(arg) for arg in args)
        plural = len(args) > 1
        first = args[0]
        example = (
            first
            if isinstance(first, (int, float)) and not isinstance(first, bool) and first > 0
            else 0.05
        )
        raise where.error(
            "",
            f"positional argument{'s' if plural else ''} {shown} "
            f"name{'' if plural else 's'} no budget",
            f"give budgets as keyword arguments, e.g. "
            f"@pytest.mark.energy(max_j_per_token={example!r}); "
            f"allowed keys: {', '.join(BUDGET_KEYS)}",
        )
    return _parse_budgets(where, "", kwargs, BUDGET_KEYS)


# -- validation --------------------------------------------------------------


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _check_key(where: Where, key: str, allowed: Sequence[str], prefix: str = "") -> None:
    if key in allowed:
        return
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise where.error(
        _join(prefix, key), f"unknown key{hint}", f"allowed keys: {', '.join(allowed)}"
    )


def _prompts(where: Where, data: Mapping[str, Any]) -> dict[str, Prompt]:
    raw = data.get("prompts")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise where.error(
            "prompts",
            f"must be a mapping of prompt names to fields, got {kind_of(raw)}",
            "write 'prompts:' then 'NAME: {shots: 5}' indented below it",
        )
    return {
        str(name): prompt_from_mapping(str(name), fields or {}, f"{where.source}: prompts.{name}")
        for name, fields in raw.items()
    }


def _parse_rule(where: Where, prefix: str, raw: Any) -> BudgetRule:
    allowed = SELECTOR_KEYS + BUDGET_KEYS
    if not isinstance(raw, Mapping):
        raise where.error(
            prefix, f"must be a mapping, got {kind_of(raw)}", f"allowed keys: {', '.join(allowed)}"
        )
    for key in raw:
        _check_key(where, str(key), allowed, prefix)
    selectors: dict[str, str] = {}
    for key in SELECTOR_KEYS:
        if key in raw:
            value = raw[key]
            if not isinstance(value, str) or not value.strip():
                raise where.error(
                    _join(prefix, key),
                    f"must be a non-empty string, got {value!r}",
                    "give a test id, model or strategy, or an fnmatch glob",
                )
            selectors[key] = value.strip()
    if not selectors:
        raise where.error(
            prefix,
            "selects no tests",
            "add at least one of match, model, strategy (use 'defaults' for all)",
        )
    budgets = _parse_budgets(where, prefix, raw, allowed)
    return BudgetRule(budgets=budgets, **selectors)


def _parse_budgets(
    where: Where, prefix: str, raw: Mapping[Any, Any], allowed: Sequence[str]
) -> Budgets:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key)
        _check_key(where, name, allowed, prefix)
        if name not in BUDGET_KEYS:
            continue
        values[name] = VALIDATORS[name](where, _join(prefix, name), value)
    return Budgets(**values)


def _glob(value: str, pattern: str) -> bool:
    return value == pattern or fnmatchcase(value, pattern)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or "syntax error"
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)
