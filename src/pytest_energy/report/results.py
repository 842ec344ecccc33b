"""The results JSON document (``--energy-json PATH``), and exports built from it.

Schema ``pytest-energy/results``, version 1. One JSON object, keys sorted,
indented by two spaces, ending in a newline, written atomically::

    {
      "schema": "pytest-energy/results",
      "version": 1,
      "plugin_version": "0.1.0",            # pytest-energy that wrote the file
      "created_utc": "2025-05-01T12:00:00Z", # ISO 8601, UTC, seconds
      "accepted_reason": null,               # --energy-accept REASON of the run, or null
      "results": [                           # one entry per energy_eval, sorted by test_id
        {
          "test_id": "tests/test_llm.py::test_cot",
          "model": "smollm2-135m", "strategy": "cot", "meter": "nvml",
          "estimated": false,                # true: joules from a model of power, not a sensor
          "exclusive": true,                 # a served model's server served only us (false:
                                             # "shared" with other clients; null: unknown)
          "fingerprint": {"gpu": "...", ...}, # hardware and software the joules belong to
          "summary": {...},                  # every derived metric (EvalResult.summary())
          "repeats": [{"energy_j", "prefill_j", "decode_j", "duration_s", "other_load",
                       "exclusive", "other_tokens"}, ...],
          "records": [{"subject", "gold", "predicted", "input_tokens", "output_tokens",
                       "computed_input_tokens"}, ...],  # computed: shared prefixes once
          "details": {...},                  # strategy-specific extras
          "sampled": false,                  # the strategy samples (random answers)
          "prompt": {"name": "default", "fingerprint": "16 hex digits",
                     "fields": {...}},       # the prompt (pytest_energy.prompts.Prompt)
          "outcome": {                       # what the checks concluded (Outcome.to_dict())
            "status": "pass" | "fail" | "accepted",
            "baseline": "compared" | "missing" | "mismatch" | "estimated" | "noisy"
                        | "shared" | "updated" | "off",
            "attribution": ["transformers 5.24.0 -> 5.25.0", ...],  # soft fields changed
            "noise": "CV 31%",               # why a comparison was too noisy, or null
            "prompt_change": "shots 0 -> 5; input tokens per question 148 -> 612",  # or null
            "checks": [{"kind", "metric", "value", "limit", "passed", "message",
                        "change", "tolerance", "statistic", "improved"}, ...],
            "notes": [...], "accepted_reason": null
          }
        }
      ]
    }

``summary`` is derived data, written for readers and other tools; reading a
file rebuilds every metric from ``records`` and ``repeats``. A reader accepts
any version up to its own and refuses a newer one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pytest_energy import __version__
from pytest_energy.errors import EnergyError
from pytest_energy.files import dump_json, read_text, write_text_atomic
from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import Outcome
from pytest_energy.report import Row, sorted_rows

SCHEMA = "pytest-energy/results"
VERSION = 1
_STATUSES = ("pass", "fail", "accepted")
_BASELINE_STATES = (
    "compared",
    "missing",
    "mismatch",
    "estimated",
    "noisy",
    "shared",
    "updated",
    "off",
)


class ResultsError(EnergyError):
    """A results JSON file that cannot be read: missing, not JSON, wrong schema or entries."""


@dataclass(frozen=True)
class ResultsDocument:
    """A results file as read: its rows and the run-level fields of the envelope."""

    rows: tuple[Row, ...]
    accepted_reason: str | None = None
    plugin_version: str = ""
    created_utc: str = ""


def results_document(
    rows: Iterable[Row],
    *,
    accepted_reason: str | None = None,
    created_utc: datetime | None = None,
) -> dict[str, Any]:
    """The JSON-ready document for ``rows`` (see the module docstring for the schema)."""
    moment = (created_utc or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "plugin_version": __version__,
        "created_utc": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "accepted_reason": accepted_reason,
        "results": [
            {**result.to_dict(), "outcome": outcome.to_dict()}
            for result, outcome in sorted_rows(rows)
        ],
    }


def write_results(
    path: Path,
    rows: Iterable[Row],
    *,
    accepted_reason: str | None = None,
    created_utc: datetime | None = None,
) -> None:
    """Write the results document for ``rows`` to ``path`` atomically."""
    document = results_document(rows, accepted_reason=accepted_reason, created_utc=created_utc)
    write_text_atomic(Path(path), dump_json(document))


def read_results(path: Path) -> list[Row]:
    """The rows of a results file, sorted by test id; :class:`ResultsError` names a bad file."""
    return list(load_document(path).rows)


def load_document(path: Path) -> ResultsDocument:
    """Read and validate a results file written by :func:`write_results`."""
    path = Path(path)
    text = read_text(
        path,
        ResultsError,
        what="results file",
        fix="check its permissions",
        if_missing=f"run pytest with --energy-json {path}",
    )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"results file {path} is not valid JSON (line {exc.lineno}: {exc.msg}); "
            "regenerate it with --energy-json"
        ) from None
    return parse_document(data, source=str(path))


def parse_document(data: Any, *, source: str) -> ResultsDocument:
    """Validate a decoded results document; errors name ``source`` and the bad entry."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(
            f'{source} is not a pytest-energy results file (expected "schema": "{SCHEMA}"); '
            "give the file written by --energy-json"
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsError(f'{source}: "version" must be a positive integer, got {version!r}')
    if version > VERSION:
        raise ResultsError(
            f"{source} has results version {version}, newer than this pytest-energy "
            f"({__version__}) reads (up to {VERSION}); upgrade pytest-energy"
        )
    entries = data.get("results")
    if not isinstance(entries, list):
        raise ResultsError(f'{source}: "results" must be a list of result objects')
    accepted = data.get("accepted_reason")
    if accepted is not None and not isinstance(accepted, str):
        raise ResultsError(f'{source}: "accepted_reason" must be a string or null')
    rows = tuple(_parse_entry(entry, index, source) for index, entry in enumerate(entries))
    return ResultsDocument(
        rows=tuple(sorted_rows(rows)),
        accepted_reason=accepted,
        plugin_version=str(data.get("plugin_version", "")),
        created_utc=str(data.get("created_utc", "")),
    )


def _parse_entry(entry: Any, index: int, source: str) -> Row:
    where = f"{source}: results[{index}]"
    if not isinstance(entry, dict):
        raise ResultsError(f"{where} must be an object, got {type(entry).__name__}")
    if "test_id" in entry:
        where += f" ({entry['test_id']!r})"
    outcome_data = entry.get("outcome", {})
    if not isinstance(outcome_data, dict):
        raise ResultsError(f'{where}: "outcome" must be an object')
    status = outcome_data.get("status", "pass")
    if status not in _STATUSES:
        raise ResultsError(f"{where}: unknown outcome status {status!r}; use one of {_STATUSES}")
    state = outcome_data.get("baseline", "off")
    if state not in _BASELINE_STATES:
        raise ResultsError(f"{where}: unknown baseline state {state!r}")
    try:
        result = EvalResult.from_dict(entry)
        outcome = Outcome.from_dict(outcome_data)
        result.summary()  # every metric computes: token counts and joules are numbers
    except KeyError as exc:
        raise ResultsError(f"{where}: missing key {exc}; regenerate the file") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ResultsError(f"{where}: malformed entry ({exc}); regenerate the file") from None
    for check in outcome.checks:
        if not all(_is_number(x) for x in (check.value, check.limit)):
            raise ResultsError(f"{where}: check {check.metric!r} has a non-numeric value or limit")
    return result, outcome


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- merge ---------------------------------------------------------------------

Conflict = Literal["error", "suffix"]


def merge_documents(
    documents: Sequence[tuple[str, ResultsDocument]], *, on_conflict: Conflict = "error"
) -> ResultsDocument:
    """Merge the results of several runners or shards into one document.

    ``documents`` pairs a label (the source file's name) with its document. One
    test id in several documents is kept once when the entries are identical
    (a file merged twice, a test re-run unchanged). Different entries for one
    test id are an error by default: shards of one run are disjoint, so a
    clash means the same test measured twice and one figure would silently
    hide the other. With ``on_conflict="suffix"`` (several runners on purpose,
    e.g. one per GPU type) every clashing entry is kept and its test id gets
    `` @label`` appended. Accepted reasons of the inputs are joined with ``; ``.
    """
    by_id: dict[str, list[tuple[str, Row]]] = {}
    for label, document in documents:
        for row in document.rows:
            entries = by_id.setdefault(row[0].test_id, [])
            if not any(_same(row, kept) for _, kept in entries):
                entries.append((label, row))
    merged: list[Row] = []
    for test_id, entries in by_id.items():
        if len(entries) == 1:
            merged.append(entries[0][1])
            continue
        labels = [label for label, _ in entries]
        if on_conflict == "error":
            raise ResultsError(
                f"test {test_id!r} has different results in {', '.join(labels)}; "
                "merge shards of one run only, or pass --on-conflict suffix to keep both"
            )
        if len(set(labels)) != len(labels):
            raise ResultsError(
                f"test {test_id!r} has different results within {labels[0]}; "
                "the file holds one test id twice, regenerate it"
            )
        for label, (result, outcome) in entries:
            merged.append((_relabel(result, f"{test_id} @{label}"), outcome))
    reasons = sorted({d.accepted_reason for _, d in documents if d.accepted_reason})
    return ResultsDocument(
        rows=tuple(sorted_rows(merged)),
        accepted_reason="; ".join(reasons) if reasons else None,
        plugin_version=__version__,
    )


def _same(a: Row, b: Row) -> bool:
    return a[0].to_dict() == b[0].to_dict() and a[1].to_dict() == b[1].to_dict()


def _relabel(result: EvalResult, test_id: str) -> EvalResult:
    return EvalResult.from_dict({**result.to_dict(), "test_id": test_id})


# -- exports -------------------------------------------------------------------


def benchmark_action_export(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Energy metrics in github-action-benchmark's ``customSmallerIsBetter`` format.

    One entry per test and metric (``j_per_token``, ``j_per_question``), named
    ``<test id> [<metric>]``; ``extra`` records model, strategy, meter and
    whether the joules are estimated. Undefined ratios are left out.
    """
    out: list[dict[str, Any]] = []
    for result, _ in sorted_rows(rows):
        for metric, unit in (("j_per_token", "J/token"), ("j_per_question", "J/question")):
            value = result.metric(metric)
            if value is not None:
                out.append(_bench_entry(result, metric, unit, value))
    return out


def benchmark_action_accuracy(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Accuracy in github-action-benchmark's ``customBiggerIsBetter`` format (percent)."""
    out = []
    for result, _ in sorted_rows(rows):
        entry = _bench_entry(result, "accuracy", "%", round(result.accuracy * 100, 4))
        low, high = result.accuracy_ci
        entry["range"] = f"{low * 100:.1f}-{high * 100:.1f}"
        out.append(entry)
    return out


def _bench_entry(result: EvalResult, metric: str, unit: str, value: float) -> dict[str, Any]:
    provenance = "estimated" if result.estimated else "measured"
    return {
        "name": f"{result.test_id} [{metric}]",
        "unit": unit,
        "value": value,
        "extra": (
            f"model={result.model} strategy={result.strategy} meter={result.meter} "
            f"({provenance}) questions={result.questions}"
        ),
    }


def junit_properties(result: EvalResult, outcome: Outcome) -> list[tuple[str, str]]:
    """``(name, value)`` pairs for ``record_property`` (JUnit XML ``<property>`` elements).

    Every name starts with ``energy_``; floats are written with ``repr`` (exact).
    """
    props: list[tuple[str, str]] = [
        ("energy_model", result.model),
        ("energy_strategy", result.strategy),
        ("energy_meter", result.meter),
        ("energy_estimated", str(result.estimated).lower()),
        ("energy_status", outcome.status),
        ("energy_baseline", outcome.baseline),
        ("energy_questions", str(result.questions)),
        ("energy_input_tokens", str(result.input_tokens)),
        ("energy_output_tokens", str(result.output_tokens)),
    ]
    for name in ("accuracy", "energy_j", "j_per_token", "j_per_question", "j_per_output_token"):
        value = result.metric(name)
        if value is not None:
            props.append((f"energy_{name}" if name != "energy_j" else name, repr(value)))
    props.extend(
        (f"energy_regression_{check.metric}", check.message) for check in outcome.regressions
    )
    props.extend(
        (f"energy_budget_breach_{check.metric}", check.message) for check in outcome.budget_breaches
    )
    return props
