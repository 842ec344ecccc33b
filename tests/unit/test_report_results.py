"""The results JSON document: round trip, house format, errors, merge, exports."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from factories import baseline_check, make_row, outcome
from pytest_energy.metrics import QuestionRecord
from pytest_energy.outcome import Outcome
from pytest_energy.report import Row
from pytest_energy.report.results import (
    SCHEMA,
    ResultsDocument,
    ResultsError,
    benchmark_action_accuracy,
    benchmark_action_export,
    junit_properties,
    load_document,
    merge_documents,
    read_results,
    results_document,
    write_results,
)

MOMENT = datetime(2025, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def row(
    test_id: str = "t::a",
    *,
    energy_j: float = 10.0,
    outcome: Outcome | None = None,
    estimated: bool = False,
) -> Row:
    records = (
        QuestionRecord("anatomy", "A", "A", 100, 5),
        QuestionRecord("virology", "B", None, 90, 7),
    )
    return make_row(
        energy_j,
        outcome=outcome,
        records=records,
        prefill_share=0.3,
        duration_s=1.5,
        estimated=estimated,
        fingerprint={"gpu": "H200", "driver": "560.35"},
        test_id=test_id,
        details={"k": 5},
    )


FAILED = outcome(
    baseline_check(
        change=0.25,
        base=0.04,
        message="J/token +25% beyond 10%",
        statistic="median of 3",
    ),
    notes=("n",),
)


def test_written_results_read_back_equal(tmp_path: Path) -> None:
    rows = [row("t::b", outcome=FAILED), row("t::a", estimated=True)]
    path = tmp_path / "out" / "results.json"
    write_results(path, rows, accepted_reason="why not", created_utc=MOMENT)
    back = load_document(path)
    assert back.accepted_reason == "why not"
    assert back.created_utc == "2025-05-01T12:00:00Z"
    assert [(r.to_dict(), o.to_dict()) for r, o in back.rows] == [
        (r.to_dict(), o.to_dict()) for r, o in sorted(rows, key=lambda x: x[0].test_id)
    ]
    assert read_results(path)[1][1] == FAILED


def test_file_is_sorted_indented_and_ends_with_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_results(path, [row("t::z"), row("t::a")], created_utc=MOMENT)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert data["schema"] == SCHEMA
    assert data["version"] == 1
    assert [e["test_id"] for e in data["results"]] == ["t::a", "t::z"]
    assert data["results"][0]["outcome"]["status"] == "pass"
    assert data["results"][0]["summary"]["invalid"] == 1


def test_write_replaces_atomically_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("old", encoding="utf-8")
    write_results(path, [row()], created_utc=MOMENT)
    assert json.loads(path.read_text(encoding="utf-8"))["schema"] == SCHEMA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_document_is_deterministic_for_a_given_time() -> None:
    rows = [row("t::b"), row("t::a")]
    one = results_document(rows, created_utc=MOMENT)
    two = results_document(list(reversed(rows)), created_utc=MOMENT)
    assert one == two


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON (line 1"),
        ('{"schema": "other"}', "is not a pytest-energy results file"),
        (json.dumps({"schema": SCHEMA, "version": 2, "results": []}), "upgrade pytest-energy"),
        (json.dumps({"schema": SCHEMA, "version": "1", "results": []}), "positive integer"),
        (json.dumps({"schema": SCHEMA, "version": 1, "results": {}}), '"results" must be a list'),
        (
            json.dumps({"schema": SCHEMA, "version": 1, "results": [3]}),
            "results[0] must be an object",
        ),
        (
            json.dumps({"schema": SCHEMA, "version": 1, "results": [{"test_id": "t::x"}]}),
            "results[0] ('t::x'): missing key 'model'",
        ),
    ],
)
def test_invalid_files_are_errors_that_name_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ResultsError, match=r"bad\.json") as info:
        read_results(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def _entry(**changes: object) -> dict[str, object]:
    result, outcome = row()
    entry = {**result.to_dict(), "outcome": outcome.to_dict()}
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_entry(outcome={"status": "maybe"}), "unknown outcome status 'maybe'"),
        (_entry(outcome={"baseline": "lost"}), "unknown baseline state 'lost'"),
        (_entry(records=[{"subject": "a"}]), "malformed entry"),
        (
            _entry(
                records=[
                    {
                        "subject": "a",
                        "gold": "A",
                        "predicted": "A",
                        "input_tokens": "many",
                        "output_tokens": 1,
                    }
                ]
            ),
            "malformed entry",
        ),
        (
            _entry(
                outcome={
                    "checks": [
                        {
                            "kind": "budget",
                            "metric": "accuracy",
                            "value": "high",
                            "limit": 0.5,
                            "passed": True,
                            "message": "",
                        }
                    ]
                }
            ),
            "check 'accuracy' has a non-numeric value",
        ),
    ],
)
def test_malformed_entries_are_errors_that_name_the_entry(
    tmp_path: Path, entry: object, message: str
) -> None:
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps({"schema": SCHEMA, "version": 1, "results": [entry]}), encoding="utf-8"
    )
    with pytest.raises(ResultsError, match=r"r\.json: results\[0\] \('t::a'\)") as info:
        read_results(path)
    assert message in str(info.value)


def test_a_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="does not exist; run pytest with --energy-json"):
        read_results(tmp_path / "nope.json")


def _doc(*rows: Row, reason: str | None = None) -> ResultsDocument:
    return ResultsDocument(rows=tuple(rows), accepted_reason=reason)


def test_merging_disjoint_shards_keeps_every_result_sorted() -> None:
    merged = merge_documents([("a", _doc(row("t::c"), row("t::a"))), ("b", _doc(row("t::b")))])
    assert [r.test_id for r, _ in merged.rows] == ["t::a", "t::b", "t::c"]


def test_identical_duplicates_are_kept_once() -> None:
    merged = merge_documents([("a", _doc(row("t::a"))), ("b", _doc(row("t::a")))])
    assert len(merged.rows) == 1


def test_different_results_for_one_test_id_are_an_error_by_default() -> None:
    with pytest.raises(ResultsError, match="'t::a' has different results in gpu-a, gpu-b"):
        merge_documents([("gpu-a", _doc(row("t::a"))), ("gpu-b", _doc(row("t::a", energy_j=11)))])


def test_suffix_keeps_both_results_labelled_by_source() -> None:
    merged = merge_documents(
        [("h100", _doc(row("t::a"))), ("a100", _doc(row("t::a", energy_j=20), row("t::b")))],
        on_conflict="suffix",
    )
    ids = [r.test_id for r, _ in merged.rows]
    assert ids == ["t::a @a100", "t::a @h100", "t::b"]
    assert merged.rows[0][0].energy_j == 20


def test_merge_joins_the_distinct_accept_reasons() -> None:
    merged = merge_documents(
        [
            ("a", _doc(row("t::a"), reason="r2")),
            ("b", _doc(row("t::b"), reason="r1")),
            ("c", _doc(row("t::c"), reason="r1")),
        ]
    )
    assert merged.accepted_reason == "r1; r2"


def test_benchmark_export_lists_energy_metrics_smaller_is_better() -> None:
    export = benchmark_action_export([row("t::a", estimated=True)])
    assert [(e["name"], e["unit"]) for e in export] == [
        ("t::a [j_per_token]", "J/token"),
        ("t::a [j_per_question]", "J/question"),
    ]
    assert export[0]["value"] == pytest.approx(10.0 / 202)
    assert export[1]["value"] == pytest.approx(5.0)
    assert "meter=nvml (estimated)" in export[0]["extra"]
    assert set(export[0]) == {"name", "unit", "value", "extra"}


def test_accuracy_export_is_a_percentage_with_its_interval() -> None:
    (entry,) = benchmark_action_accuracy([row()])
    assert entry["unit"] == "%"
    assert entry["value"] == 50.0
    assert entry["range"].count("-") == 1


def test_junit_properties_carry_metrics_and_failures() -> None:
    props = dict(junit_properties(*row(outcome=FAILED)))
    assert props["energy_meter"] == "nvml"
    assert props["energy_estimated"] == "false"
    assert float(props["energy_j_per_token"]) == pytest.approx(10.0 / 202)
    assert props["energy_j"] == "10.0"
    assert props["energy_status"] == "fail"
    assert props["energy_regression_j_per_token"] == "J/token +25% beyond 10%"
    assert all(name.startswith("energy_") for name in props)
