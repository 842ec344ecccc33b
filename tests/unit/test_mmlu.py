from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.errors import DataError
from pytest_energy.mmlu import CATEGORIES, MMLU, Question, load_mmlu, question_set_id

REAL_MMLU = Path("/work/shared/mmlu")

TRICKY_ROW = '"What, if ""any"", is\nthis?",one,"two, three","say ""hi""",four,C\n'


def write_rows(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "question": "2 + 2 = ?",
        "subject": "elementary_mathematics",
        "choices": ["3", "4", "5", "6"],
        "answer": 1,
    }
    base.update(overrides)
    return base


def synthetic(sizes: dict[str, int]) -> MMLU:
    questions = [
        Question(subject, f"{subject} #{i}", ("a", "b", "c", "d"), "A", f"mem:{subject}:{i}")
        for subject, size in sizes.items()
        for i in range(size)
    ]
    return MMLU(tuple(questions), "mem")


# -- Hendrycks CSV folders and files ------------------------------------------------


def test_folder_with_test_subfolder_takes_subject_from_file_name(tmp_path: Path) -> None:
    data = tmp_path / "data" / "test"
    data.mkdir(parents=True)
    (data / "astronomy_test.csv").write_text(TRICKY_ROW + "Why?,a,b,c,d,a\n", encoding="utf-8")
    write_rows(data / "virology_test.csv", [["Q?", "1", "2", "3", "4", "D"]])
    (data / "notes.txt").write_text("ignored", encoding="utf-8")

    mmlu = load_mmlu("data", rootdir=tmp_path)

    assert mmlu.subjects == ("astronomy", "virology")
    assert len(mmlu) == 3
    first, second, third = mmlu.questions
    assert first.question == 'What, if "any", is\nthis?'
    assert first.choices == ("one", "two, three", 'say "hi"', "four")
    assert first.answer == "C"
    assert first.source == "data/test/astronomy_test.csv:1"
    assert second.source == "data/test/astronomy_test.csv:3"  # the first record spans 2 lines
    assert second.answer == "A"
    assert third.subject == "virology"
    assert third.category == "other"
    assert mmlu.source == "data"


def test_folder_without_test_subfolder_reads_csvs_at_its_root(tmp_path: Path) -> None:
    write_rows(tmp_path / "anatomy_test.csv", [["Q?", "1", "2", "3", "4", "B"]])

    mmlu = load_mmlu(str(tmp_path))

    assert mmlu.subjects == ("anatomy",)
    assert mmlu.questions[0].answer == "B"


def test_single_hendrycks_csv_takes_subject_from_file_name(tmp_path: Path) -> None:
    path = tmp_path / "college_physics_test.csv"
    path.write_text(TRICKY_ROW, encoding="utf-8")

    mmlu = load_mmlu(str(path))

    assert mmlu.subjects == ("college_physics",)
    assert mmlu.questions[0].choices[1] == "two, three"


def test_csv_header_maps_columns_by_name_in_any_order(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "mine.csv",
        [
            ["Subject", "Answer", "Question", "A", "B", "C", "D"],
            ["sociology", "b", "Who?", "w", "x", "y", "z"],
            ["anatomy", "D", "Where?", "1", "2", "3", "4"],
        ],
    )

    mmlu = load_mmlu(str(path))

    assert [q.subject for q in mmlu.questions] == ["sociology", "anatomy"]
    assert mmlu.questions[0].answer == "B"
    assert mmlu.questions[0].choices == ("w", "x", "y", "z")
    assert mmlu.questions[1].source.endswith("mine.csv:3")


def test_headerless_csv_without_test_suffix_asks_for_a_subject_column(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "mine.csv", [["Q?", "1", "2", "3", "4", "A"]])

    with pytest.raises(DataError, match=r"mine\.csv:1: no header row .* subject is unknown"):
        load_mmlu(str(path))


def test_csv_header_without_choice_columns_is_rejected(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "mine.csv", [["question", "subject", "A", "B", "answer"]])

    with pytest.raises(DataError, match=r"mine\.csv:1: header lacks column\(s\) c, d"):
        load_mmlu(str(path))


def test_a_row_with_too_few_cells_says_a_choice_is_missing(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "anatomy_test.csv",
        [["Q?", "1", "2", "3", "4", "A"], ["Q?", "1", "2", "3", "A"]],
    )

    with pytest.raises(
        DataError,
        match=r"anatomy_test\.csv:2: 5 of 6 cells .*a choice or the answer letter is missing",
    ):
        load_mmlu(str(path))


def test_a_row_with_too_many_cells_asks_for_quoting(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "anatomy_test.csv", [["Q", "with", "comma", "1", "2", "3", "4", "A"]]
    )

    with pytest.raises(DataError, match=r"anatomy_test\.csv:1: 8 cells, expected 6 .*quote cells"):
        load_mmlu(str(path))


def test_unterminated_quote_is_reported_at_the_line_where_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "anatomy_test.csv"
    path.write_text('Q1,1,2,3,4,A\n"Q2,1,2,3,4,B\nQ3,1,2,3,4,C\n', encoding="utf-8")

    with pytest.raises(DataError, match=r"anatomy_test\.csv:2: 1 of 6 cells"):
        load_mmlu(str(path))


def test_oversized_csv_field_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "anatomy_test.csv"
    path.write_text("Q1,1,2,3,4,A\n" + "x" * (csv.field_size_limit() + 1), encoding="utf-8")

    with pytest.raises(DataError, match=r"anatomy_test\.csv:2: malformed CSV"):
        load_mmlu(str(path))


def test_csv_answer_outside_a_to_d_is_rejected(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "anatomy_test.csv", [["Q?", "1", "2", "3", "4", "E"]])

    with pytest.raises(DataError, match=r"anatomy_test\.csv:1: answer 'E' is not one of A, B"):
        load_mmlu(str(path))


def test_empty_question_is_rejected(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "anatomy_test.csv",
        [["Q?", "1", "2", "3", "4", "A"], ["  ", "1", "2", "3", "4", "A"]],
    )

    with pytest.raises(DataError, match=r"anatomy_test\.csv:2: empty question"):
        load_mmlu(str(path))


def test_blank_lines_are_skipped_and_a_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "anatomy_test.csv"
    path.write_text("\ufeffQ1,1,2,3,4,A\n\nQ2,1,2,3,4,B\n", encoding="utf-8")

    mmlu = load_mmlu(str(path))

    assert [q.question for q in mmlu.questions] == ["Q1", "Q2"]
    assert mmlu.questions[1].source.endswith(":3")


# -- JSONL and parquet ----------------------------------------------------------------


def test_jsonl_accepts_index_and_letter_answers(tmp_path: Path) -> None:
    path = tmp_path / "mmlu.jsonl"
    path.write_text(
        json.dumps(record(question='He said "a, b"\nthen left'))
        + "\n\n"
        + json.dumps(record(subject="virology", answer="d"))
        + "\n",
        encoding="utf-8",
    )

    mmlu = load_mmlu("mmlu.jsonl", rootdir=tmp_path)

    assert [q.answer for q in mmlu.questions] == ["B", "D"]
    assert mmlu.questions[0].question == 'He said "a, b"\nthen left'
    assert mmlu.questions[1].source == "mmlu.jsonl:3"
    assert mmlu.subjects == ("elementary_mathematics", "virology")


def test_jsonl_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mmlu.jsonl"
    path.write_text(json.dumps(record()) + "\n{not json\n", encoding="utf-8")

    with pytest.raises(DataError, match=r"mmlu\.jsonl:2: invalid JSON"):
        load_mmlu(str(path))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"choices": ["1", "2", "3"]}, "3 choices, MMLU needs exactly 4"),
        ({"choices": ["1", "2", "3", "4", "5"]}, "5 choices, MMLU needs exactly 4"),
        ({"choices": "1234"}, "choices must be a list of 4 strings"),
        ({"choices": ["1", "2", "3", 4]}, "choices must be strings"),
        ({"answer": 4}, "answer 4 is not one of A, B, C, D"),
        ({"answer": True}, "answer True is not one of A, B, C, D"),
        ({"answer": "E"}, "answer 'E' is not one of A, B, C, D"),
        ({"question": ""}, "empty question"),
        ({"subject": ""}, "empty subject"),
        ({"subject": None}, "question and subject must be strings"),
    ],
)
def test_jsonl_malformed_record_names_file_and_line(
    tmp_path: Path, bad: dict[str, Any], message: str
) -> None:
    path = write_jsonl(tmp_path / "mmlu.jsonl", [record(), record(**bad)])

    with pytest.raises(DataError, match=rf"mmlu\.jsonl:2: {message}"):
        load_mmlu(str(path))


def test_jsonl_missing_field_is_named(tmp_path: Path) -> None:
    incomplete = record()
    del incomplete["subject"]
    path = write_jsonl(tmp_path / "mmlu.jsonl", [incomplete])

    with pytest.raises(DataError, match=r"mmlu\.jsonl:1: missing field\(s\) subject"):
        load_mmlu(str(path))


def test_jsonl_line_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mmlu.jsonl", [[1, 2]])

    with pytest.raises(DataError, match=r"mmlu\.jsonl:1: expected an object"):
        load_mmlu(str(path))


def test_parquet_with_cais_columns_loads(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [record(), record(subject="anatomy", answer=3, question='Bone, or "not"?')]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")

    mmlu = load_mmlu("test.parquet", rootdir=tmp_path)

    assert [q.answer for q in mmlu.questions] == ["B", "D"]
    assert mmlu.questions[1].question == 'Bone, or "not"?'
    assert mmlu.questions[1].choices == ("3", "4", "5", "6")
    assert mmlu.questions[1].source == "test.parquet:2"


def test_parquet_missing_column_is_named(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"question": ["Q?"], "answer": [0]}), tmp_path / "t.parquet")

    with pytest.raises(DataError, match=r"t\.parquet: missing column\(s\) subject, choices"):
        load_mmlu(str(tmp_path / "t.parquet"))


def test_parquet_without_pyarrow_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)

    with pytest.raises(DataError, match=r"needs pyarrow: pip install pyarrow .*\[parquet\]"):
        load_mmlu(str(tmp_path / "t.parquet"))


def test_corrupt_parquet_is_a_data_error(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow.parquet")
    (tmp_path / "t.parquet").write_bytes(b"not parquet at all")

    with pytest.raises(DataError, match=r"cannot read .*t\.parquet as parquet"):
        load_mmlu(str(tmp_path / "t.parquet"))


# -- Hugging Face -----------------------------------------------------------------------


def test_hf_without_datasets_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)

    with pytest.raises(DataError, match=r"needs the datasets library: pip install datasets"):
        load_mmlu("hf:cais/mmlu")


def fake_datasets(monkeypatch: pytest.MonkeyPatch, load: Any) -> None:
    module = types.ModuleType("datasets")
    module.load_dataset = load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hf_download_failure_suggests_a_local_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("no route to\nhuggingface.co")

    fake_datasets(monkeypatch, offline)

    with pytest.raises(DataError) as info:
        load_mmlu("hf:cais/mmlu")

    message = str(info.value)
    assert "cannot load hf:cais/mmlu" in message
    assert "ConnectionError: no route to huggingface.co" in message
    assert "point --energy-mmlu at a local folder" in message


def test_hf_rows_are_converted_from_the_all_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def load(name: str, config: str, *, split: str) -> list[dict[str, Any]]:
        calls.append((name, config, split))
        return [record(), record(subject="marketing", answer=0)]

    fake_datasets(monkeypatch, load)

    mmlu = load_mmlu("hf:OTHER/name")

    assert calls == [("OTHER/name", "all", "test")]
    assert mmlu.source == "hf:OTHER/name"
    assert [q.answer for q in mmlu.questions] == ["B", "A"]
    assert mmlu.questions[1].source == "hf:OTHER/name:2"


def test_hf_without_a_name_is_rejected() -> None:
    with pytest.raises(DataError, match="names no dataset"):
        load_mmlu("hf:")


# -- missing, empty and unknown sources -------------------------------------------------


def test_missing_path_is_named_relative_to_rootdir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"MMLU source nowhere/mmlu does not exist"):
        load_mmlu("nowhere/mmlu", rootdir=tmp_path)


def test_folder_without_test_csvs_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "anatomy_dev.csv").write_text("Q,1,2,3,4,A\n", encoding="utf-8")

    with pytest.raises(DataError, match=r"has no \*_test\.csv files"):
        load_mmlu(str(tmp_path))


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "anatomy_test.csv").write_text("", encoding="utf-8")

    with pytest.raises(DataError, match="holds no questions"):
        load_mmlu(str(tmp_path / "anatomy_test.csv"))


def test_unsupported_file_type_lists_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "mmlu.txt").write_text("x", encoding="utf-8")

    with pytest.raises(DataError, match=r"unsupported type '\.txt'.*\.csv, \.jsonl or \.parquet"):
        load_mmlu(str(tmp_path / "mmlu.txt"))


def test_non_utf8_csv_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "anatomy_test.csv").write_bytes(b"Caf\xe9?,1,2,3,4,A\n")

    with pytest.raises(DataError, match=r"anatomy_test\.csv is not UTF-8"):
        load_mmlu(str(tmp_path / "anatomy_test.csv"))


# -- categories and the real data set ---------------------------------------------------


def test_categories_follow_the_hendrycks_grouping() -> None:
    assert len(CATEGORIES) == 57
    assert Counter(CATEGORIES.values()) == {
        "stem": 18,
        "humanities": 13,
        "social_sciences": 12,
        "other": 14,
    }
    assert CATEGORIES["abstract_algebra"] == "stem"
    assert CATEGORIES["professional_law"] == "humanities"
    assert CATEGORIES["econometrics"] == "social_sciences"
    assert CATEGORIES["anatomy"] == "other"


@pytest.fixture(scope="module")
def real_mmlu() -> MMLU:
    if not (REAL_MMLU / "test").is_dir():
        pytest.skip(f"{REAL_MMLU} is absent")
    return load_mmlu(str(REAL_MMLU))


def test_real_folder_loads_all_subjects_quickly() -> None:
    if not (REAL_MMLU / "test").is_dir():
        pytest.skip(f"{REAL_MMLU} is absent")
    start = time.perf_counter()
    mmlu = load_mmlu(str(REAL_MMLU))
    elapsed_s = time.perf_counter() - start

    assert len(mmlu.subjects) == 57
    assert len(mmlu) == 14042
    assert elapsed_s < 1.0


def test_categories_cover_every_real_subject(real_mmlu: MMLU) -> None:
    assert set(real_mmlu.subjects) == set(CATEGORIES)


def test_real_sample_is_proportional_to_subject_size(real_mmlu: MMLU) -> None:
    sizes = Counter(q.subject for q in real_mmlu.questions)
    n = 1404

    picked = Counter(q.subject for q in real_mmlu.sample(n, seed=3))

    assert sum(picked.values()) == n
    for subject, size in sizes.items():
        assert abs(picked[subject] - n * size / len(real_mmlu)) < 1


def test_real_category_sample_stays_in_its_category(real_mmlu: MMLU) -> None:
    batch = real_mmlu.sample(40, subjects="humanities", seed=5)

    assert len(batch) == 40
    assert {q.category for q in batch} == {"humanities"}


# -- sampling ---------------------------------------------------------------------------


def test_same_arguments_give_the_same_sample() -> None:
    mmlu = synthetic({"anatomy": 40, "virology": 25, "astronomy": 30})

    assert mmlu.sample(20, seed=7) == mmlu.sample(20, seed=7)


def test_different_seed_gives_a_different_sample() -> None:
    mmlu = synthetic({"anatomy": 40, "virology": 25, "astronomy": 30})

    assert mmlu.sample(20, seed=1) != mmlu.sample(20, seed=2)


SAMPLE_SCRIPT = """
import sys
from pytest_energy.mmlu import load_mmlu
batch = load_mmlu(sys.argv[1]).sample(7, subjects=["stem", "virology"], seed=11)
print(" ".join(q.source for q in batch))
"""


def test_sample_is_identical_across_processes_with_different_hash_seeds(
    tmp_path: Path,
) -> None:
    for subject in ("anatomy", "virology", "astronomy", "machine_learning", "sociology"):
        rows = [[f"{subject} {i}?", "1", "2", "3", "4", "A"] for i in range(9)]
        write_rows(tmp_path / "test" / f"{subject}_test.csv", rows)

    outputs = {
        subprocess.run(
            [sys.executable, "-c", SAMPLE_SCRIPT, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        ).stdout
        for hash_seed in ("1", "2")
    }

    assert len(outputs) == 1
    assert len(outputs.pop().split()) == 7


def test_n_equal_to_total_returns_every_question_in_source_order() -> None:
    mmlu = synthetic({"anatomy": 4, "astronomy": 3})

    assert mmlu.sample(7, seed=9) == tuple(sorted(mmlu.questions, key=lambda q: q.subject))
    assert mmlu.sample() == mmlu.sample(7)


def test_allocation_is_proportional_to_subject_size() -> None:
    mmlu = synthetic({"anatomy": 60, "astronomy": 30, "virology": 10})

    picked = Counter(q.subject for q in mmlu.sample(10, seed=4))

    assert picked == {"anatomy": 6, "astronomy": 3, "virology": 1}


def test_largest_remainder_ties_are_broken_by_the_seed() -> None:
    mmlu = synthetic({"anatomy": 5, "astronomy": 3, "virology": 2})  # n=5: 2.5, 1.5, 1.0
    allocations = set()
    for seed in range(20):
        picked = Counter(q.subject for q in mmlu.sample(5, seed=seed))
        allocations.add((picked["anatomy"], picked["astronomy"], picked["virology"]))

    assert allocations == {(3, 1, 1), (2, 2, 1)}


def test_fewer_questions_than_subjects_picks_distinct_subjects_by_seed() -> None:
    mmlu = synthetic({f"s{i}": 5 for i in range(10)})

    batches = [mmlu.sample(3, seed=seed) for seed in range(10)]

    for batch in batches:
        assert len({q.subject for q in batch}) == 3
    assert len({frozenset(q.subject for q in b) for b in batches}) > 1


def test_sample_is_ordered_by_subject_then_source_position() -> None:
    mmlu = synthetic({"virology": 20, "anatomy": 20})

    batch = mmlu.sample(10, seed=2)
    positions = [mmlu.questions.index(q) for q in batch]

    assert [q.subject for q in batch] == ["anatomy"] * 5 + ["virology"] * 5
    assert positions[:5] == sorted(positions[:5])
    assert positions[5:] == sorted(positions[5:])


def test_category_and_subject_names_can_be_mixed_without_duplicates() -> None:
    mmlu = synthetic({"anatomy": 3, "astronomy": 2, "machine_learning": 2, "sociology": 4})

    batch = mmlu.sample(subjects=["stem", "anatomy", "astronomy"])

    assert Counter(q.subject for q in batch) == {
        "anatomy": 3,
        "astronomy": 2,
        "machine_learning": 2,
    }
    assert {q.subject for q in mmlu.sample(subjects="social_sciences")} == {"sociology"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subjects": "astrology"}, "unknown subject or category 'astrology' in mem"),
        ({"subjects": "humanities"}, "category 'humanities' has no subjects in mem"),
        ({"subjects": []}, r"subjects=\[\] selects no questions"),
        ({"n": 6, "subjects": "anatomy"}, "n=6 exceeds the 5 questions"),
        ({"n": 0}, "n=0 is not a positive number"),
        ({"n": -3}, "n=-3 is not a positive number"),
    ],
)
def test_bad_sample_arguments_are_data_errors(kwargs: dict[str, Any], message: str) -> None:
    mmlu = synthetic({"anatomy": 5, "astronomy": 5})

    with pytest.raises(DataError, match=message):
        mmlu.sample(**kwargs)


def test_question_set_id_follows_the_questions_and_their_order() -> None:
    a = Question("anatomy", "Q1?", ("1", "2", "3", "4"), "A", "f:1")
    b = Question("anatomy", "Q2?", ("1", "2", "3", "4"), "B", "f:2")
    moved = Question("anatomy", "Q1?", ("1", "2", "3", "4"), "A", "elsewhere:9")
    assert question_set_id([a, b]) == question_set_id([moved, b])  # where it was read is no part
    assert question_set_id([a, b]) != question_set_id([b, a])
    assert question_set_id([a]) != question_set_id([a, b])
    assert len(question_set_id([a])) == 16
