"""MMLU questions: load them from any supported source, sample them seeded and stratified.

``--energy-mmlu`` accepts (relative paths resolve against pytest's rootdir):

- a folder in Hendrycks' layout, ``FOLDER/test/*_test.csv`` or ``FOLDER/*_test.csv``;
  the subject is the file name without ``_test.csv``;
- one ``.csv`` file, either Hendrycks rows (question, A, B, C, D, answer letter, no
  header; subject from a ``SUBJECT_test.csv`` file name) or with a header row;
- a ``.jsonl`` or ``.parquet`` file with the ``cais/mmlu`` columns ``question``,
  ``subject``, ``choices`` (four strings) and ``answer`` (0-3, or a letter A-D);
- ``hf:cais/mmlu`` (or ``hf:OWNER/NAME``), config ``all``, split ``test``, through the
  ``datasets`` library.

Header rule for CSV files: the first non-blank row is a header when its cells,
stripped and lower-cased, include both ``question`` and ``answer``. Columns are
then found by name (``question``, ``subject``, ``a``, ``b``, ``c``, ``d``,
``answer``, any order, extra columns ignored). A Hendrycks data row cannot match,
because its last cell is an answer letter.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_energy.errors import DataError
from pytest_energy.files import read_text, shown_path
from pytest_energy.metrics import LETTERS
from pytest_energy.mmlu.questions import Question
from pytest_energy.mmlu.sampling import MMLU

_RECORD_FIELDS = ("question", "subject", "choices", "answer")
_LOCAL_HINT = "point --energy-mmlu at a local folder of *_test.csv files"


def load_mmlu(source: str, *, rootdir: Path | None = None) -> MMLU:
    """Load the questions of an ``--energy-mmlu`` source (see the module docstring).

    Raises ``DataError`` with a one-line message naming the file, the line or
    record, the problem and the fix.
    """
    text = source.strip()
    if not text:
        raise DataError(f"--energy-mmlu is empty; {_LOCAL_HINT}, a file or hf:cais/mmlu")
    if text.startswith("hf:"):
        return MMLU(tuple(_load_hf(text)), text)
    base = rootdir if rootdir is not None else Path.cwd()
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = base / path
    shown = shown_path(path, base)
    if path.is_dir():
        questions = _load_folder(path, shown, base)
    elif not path.exists():
        raise DataError(
            f"MMLU source {shown} does not exist; {_LOCAL_HINT}, a .csv/.jsonl/.parquet "
            "file or hf:cais/mmlu"
        )
    elif path.suffix.lower() == ".csv":
        questions = _read_csv(path, shown, _subject_from_name(path))
    elif path.suffix.lower() == ".jsonl":
        questions = _read_jsonl(path, shown)
    elif path.suffix.lower() == ".parquet":
        questions = _read_parquet(path, shown)
    else:
        raise DataError(
            f"MMLU source {shown} has an unsupported type {path.suffix or '(none)'!r}; "
            "use a folder of *_test.csv files, a .csv, .jsonl or .parquet file, or hf:NAME"
        )
    if not questions:
        raise DataError(f"MMLU source {shown} holds no questions; add rows or pick another")
    return MMLU(tuple(questions), shown)


def _subject_from_name(path: Path) -> str | None:
    for split in ("_test.csv", "_dev.csv"):
        if path.name.endswith(split):
            return path.name[: -len(split)]
    return None


def _split_files(path: Path, split: str) -> list[Path]:
    """``SUBJECT_<split>.csv`` files of a Hendrycks folder (in ``<split>/`` or flat)."""
    for folder in (path / split, path):
        files = sorted(folder.glob(f"*_{split}.csv")) if folder.is_dir() else []
        if files:
            return files
    return []


def _load_folder(path: Path, shown: str, base: Path) -> list[Question]:
    files = _split_files(path, "test")
    if not files:
        raise DataError(
            f"MMLU folder {shown} has no *_test.csv files (looked in {shown}/test and "
            f"{shown}); use the folder of Hendrycks' data.tar or a .csv/.jsonl/.parquet file"
        )
    questions: list[Question] = []
    for file in files:
        questions.extend(_read_csv(file, shown_path(file, base), _subject_from_name(file)))
    return questions


def _text(path: Path, shown: str) -> str:
    return read_text(
        path, DataError, what="MMLU file", shown=shown, fix="check its permissions", if_missing=""
    )


def _read_csv(path: Path, shown: str, subject: str | None) -> list[Question]:
    questions: list[Question] = []
    header: dict[str, int] | None = None
    width = 6
    line = 1  # a record may span lines: report the line where it starts
    try:
        reader = csv.reader(io.StringIO(_text(path, shown), newline=""))
        for row in reader:
            where = f"{shown}:{line}"
            line = reader.line_num + 1
            if not row:
                continue
            if not questions and header is None:
                if {c.strip().lower() for c in row} >= {"question", "answer"}:
                    header, width = _csv_header(row, where, subject), len(row)
                    continue
                if subject is None:
                    raise DataError(
                        f"{where}: no header row and the file name does not end in "
                        "_test.csv, so the subject is unknown; add the header "
                        "question,subject,A,B,C,D,answer or rename it SUBJECT_test.csv"
                    )
            if len(row) != width:
                raise DataError(_width_problem(where, row, width, header is None))
            questions.append(_csv_row(row, where, header, subject))
    except csv.Error as exc:
        raise DataError(f"{shown}:{line}: malformed CSV ({exc}); check the quoting") from None
    return questions


def _width_problem(where: str, row: list[str], width: int, hendrycks: bool) -> str:
    layout = "question,A,B,C,D,answer" if hendrycks else "as in the header"
    if len(row) < width:
        lacking = "a choice or the answer letter" if hendrycks else "a cell"
        return (
            f"{where}: {len(row)} of {width} cells ({layout}): {lacking} is missing; "
            "add it, or quote cells that contain commas or newlines"
        )
    return (
        f"{where}: {len(row)} cells, expected {width} ({layout}); "
        "quote cells that contain commas or newlines"
    )


def _csv_header(row: list[str], where: str, subject: str | None) -> dict[str, int]:
    columns = {cell.strip().lower(): i for i, cell in enumerate(row)}
    need = ["question", "a", "b", "c", "d", "answer"] + ([] if subject else ["subject"])
    missing = [name for name in need if name not in columns]
    if missing:
        raise DataError(
            f"{where}: header lacks column(s) {', '.join(missing)}; use the header "
            "question,subject,A,B,C,D,answer"
        )
    return columns


def _csv_row(
    row: list[str], where: str, header: dict[str, int] | None, subject: str | None
) -> Question:
    if header is None:
        return _question(subject or "", row[0], row[1:5], row[5], where)
    if "subject" in header:
        subject = row[header["subject"]].strip()
    choices = [row[header[letter]] for letter in "abcd"]
    return _question(subject or "", row[header["question"]], choices, row[header["answer"]], where)


def _read_jsonl(path: Path, shown: str) -> list[Question]:
    questions: list[Question] = []
    for number, text in enumerate(_text(path, shown).split("\n"), 1):
        if not text.strip():
            continue
        where = f"{shown}:{number}"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{where}: invalid JSON ({exc.msg}); write one JSON object per line"
            ) from None
        questions.append(_from_record(record, where))
    return questions


def _read_parquet(path: Path, shown: str) -> list[Question]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"reading {shown} needs pyarrow: pip install pyarrow "
            "(or pip install 'pytest-energy[parquet]')"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"cannot read {shown} as parquet ({_one_line(exc)})") from None
    missing = [name for name in _RECORD_FIELDS if name not in table.column_names]
    if missing:
        raise DataError(
            f"{shown}: missing column(s) {', '.join(missing)}; expected the cais/mmlu "
            "columns question, subject, choices, answer"
        )
    rows = table.select(list(_RECORD_FIELDS)).to_pylist()
    return [_from_record(row, f"{shown}:{i}") for i, row in enumerate(rows, 1)]


def load_shots(source: str, shots_from: str, *, rootdir: Path | None = None) -> MMLU:
    """The example rows few-shot prompts draw from, in file order.

    ``shots_from`` ``dev``: the dev split beside ``source`` (``dev/SUBJECT_dev.csv``
    next to ``test/`` in a Hendrycks folder, split ``dev`` of a ``hf:`` dataset);
    anything else is a file or folder of examples in any format ``load_mmlu`` reads.
    """
    if shots_from.strip() != "dev":
        return load_mmlu(shots_from, rootdir=rootdir)
    text = source.strip()
    if text.startswith("hf:"):
        return MMLU(tuple(_load_hf(text, split="dev")), f"{text} (dev)")
    base = rootdir if rootdir is not None else Path.cwd()
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    shown = shown_path(path, base)
    if not path.is_dir():
        raise DataError(
            f"MMLU source {shown} is a single file, so it has no dev split for few-shot "
            "examples; set the prompt's shots_from to a file of examples, or use a "
            "Hendrycks folder with dev/"
        )
    files = _split_files(path, "dev")
    if not files:
        raise DataError(
            f"MMLU folder {shown} has no dev split for few-shot examples (looked for "
            f"*_dev.csv in {shown}/dev and {shown}); add Hendrycks' dev/ folder or set the "
            "prompt's shots_from to a file of examples"
        )
    rows: list[Question] = []
    for file in files:
        rows.extend(_read_csv(file, shown_path(file, base), _subject_from_name(file)))
    return MMLU(tuple(rows), f"{shown}/dev")


def _load_hf(source: str, split: str = "test") -> list[Question]:
    name = source[len("hf:") :].strip()
    if not name:
        raise DataError(f"--energy-mmlu {source!r} names no dataset; write hf:cais/mmlu")
    try:
        from datasets import load_dataset
    except ImportError:
        raise DataError(
            f"--energy-mmlu {source} needs the datasets library: pip install datasets "
            f"(or pip install 'pytest-energy[hf]'), or {_LOCAL_HINT}"
        ) from None
    try:
        rows = load_dataset(name, "all", split=split)
    except Exception as exc:
        raise DataError(
            f"cannot load {source} (config 'all', split {split!r}): {_one_line(exc)}; "
            f"check the network or {_LOCAL_HINT}"
        ) from exc
    return [_from_record(row, f"{source}:{i}") for i, row in enumerate(rows, 1)]


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _from_record(record: Any, where: str) -> Question:
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: expected an object with {', '.join(_RECORD_FIELDS)}")
    missing = [name for name in _RECORD_FIELDS if name not in record]
    if missing:
        raise DataError(
            f"{where}: missing field(s) {', '.join(missing)}; each record needs "
            "question, subject, choices (4 strings) and answer (0-3 or A-D)"
        )
    choices = record["choices"]
    if isinstance(choices, str) or not isinstance(choices, Sequence):
        raise DataError(f"{where}: choices must be a list of 4 strings, got {choices!r}")
    subject, question = record["subject"], record["question"]
    if not isinstance(subject, str) or not isinstance(question, str):
        raise DataError(f"{where}: question and subject must be strings")
    return _question(subject.strip(), question, list(choices), record["answer"], where)


def _question(subject: str, question: str, choices: list[Any], answer: Any, where: str) -> Question:
    if not subject:
        raise DataError(f"{where}: empty subject; give every question a subject")
    if not question.strip():
        raise DataError(f"{where}: empty question; remove the row or fill in the question")
    if len(choices) != 4:
        raise DataError(f"{where}: {len(choices)} choices, MMLU needs exactly 4 (A-D)")
    if not all(isinstance(c, str) for c in choices):
        raise DataError(f"{where}: choices must be strings, got {choices!r}")
    return Question(
        subject=subject,
        question=question,
        choices=(choices[0], choices[1], choices[2], choices[3]),
        answer=_letter(answer, where),
        source=where,
    )


def _letter(answer: Any, where: str) -> str:
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer <= 3:
        return LETTERS[answer]
    if isinstance(answer, str) and answer.strip().upper() in LETTERS:
        return answer.strip().upper()
    raise DataError(
        f"{where}: answer {answer!r} is not one of A, B, C, D (or 0-3); "
        "give the letter of the correct choice"
    )
