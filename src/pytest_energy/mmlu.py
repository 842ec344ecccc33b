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
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pytest_energy.errors import DataError
from pytest_energy.metrics import LETTERS

Category = Literal["stem", "humanities", "social_sciences", "other"]

# The grouping of Hendrycks et al. (2021), as in their categories.py.
_GROUPS: dict[Category, str] = {
    "stem": """abstract_algebra astronomy college_biology college_chemistry
        college_computer_science college_mathematics college_physics computer_security
        conceptual_physics electrical_engineering elementary_mathematics high_school_biology
        high_school_chemistry high_school_computer_science high_school_mathematics
        high_school_physics high_school_statistics machine_learning""",
    "humanities": """formal_logic high_school_european_history high_school_us_history
        high_school_world_history international_law jurisprudence logical_fallacies
        moral_disputes moral_scenarios philosophy prehistory professional_law world_religions""",
    "social_sciences": """econometrics high_school_geography
        high_school_government_and_politics high_school_macroeconomics
        high_school_microeconomics high_school_psychology human_sexuality
        professional_psychology public_relations security_studies sociology
        us_foreign_policy""",
    "other": """anatomy business_ethics clinical_knowledge college_medicine global_facts
        human_aging management marketing medical_genetics miscellaneous nutrition
        professional_accounting professional_medicine virology""",
}

CATEGORIES: Mapping[str, Category] = MappingProxyType(
    {subject: category for category, names in _GROUPS.items() for subject in names.split()}
)
"""Every one of the 57 MMLU subjects mapped to its category."""

_CATEGORY_NAMES: tuple[Category, ...] = tuple(_GROUPS)
_RECORD_FIELDS = ("question", "subject", "choices", "answer")
_LOCAL_HINT = "point --energy-mmlu at a local folder of *_test.csv files"


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; ``source`` is ``FILE:LINE`` (or record number)."""

    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: str
    source: str

    @property
    def category(self) -> Category | None:
        """The MMLU category of the subject, or None for a subject outside MMLU."""
        return CATEGORIES.get(self.subject)


@dataclass(frozen=True)
class MMLU:
    """A loaded question set (the ``mmlu`` fixture), with seeded, stratified sampling."""

    questions: tuple[Question, ...]
    source: str

    @property
    def subjects(self) -> tuple[str, ...]:
        """The subjects present, sorted."""
        return tuple(sorted({q.subject for q in self.questions}))

    def __len__(self) -> int:
        return len(self.questions)

    def sample(
        self,
        n: int | None = None,
        subjects: str | Sequence[str] | None = None,
        seed: int = 0,
    ) -> tuple[Question, ...]:
        """Pick ``n`` questions (None: all) from ``subjects``, reproducibly.

        ``subjects`` is a subject, a category (``stem``, ``humanities``,
        ``social_sciences``, ``other``), or a list mixing both; None selects all.
        Each subject gets a share of ``n`` proportional to its size (largest
        remainder; ties broken by the seeded RNG). When ``n`` is smaller than the
        number of subjects, ``n`` subjects drawn with the seeded RNG get one
        question each. The result is ordered by subject, then by position in the
        source, so equal ``(n, subjects, seed)`` give equal batches in any process.
        """
        groups: dict[str, list[int]] = {}
        for index, q in enumerate(self.questions):
            groups.setdefault(q.subject, []).append(index)
        chosen = self._select(subjects, groups)
        total = sum(len(groups[s]) for s in chosen)
        if n is None:
            picks = {s: groups[s] for s in chosen}
        else:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise DataError(f"n={n!r} is not a positive number of questions; pass n >= 1")
            if n > total:
                raise DataError(
                    f"n={n} exceeds the {total} questions of the selected subjects in "
                    f"{self.source}; pass n <= {total} or select more subjects"
                )
            rng = random.Random(seed)
            shares = _allocate(n, {s: len(groups[s]) for s in chosen}, rng)
            picks = {s: rng.sample(groups[s], k) for s, k in shares.items()}
        return tuple(self.questions[i] for s in sorted(picks) for i in sorted(picks[s]))

    def _select(
        self, subjects: str | Sequence[str] | None, groups: Mapping[str, list[int]]
    ) -> list[str]:
        if subjects is None:
            return sorted(groups)
        names = [subjects] if isinstance(subjects, str) else list(subjects)
        if not names:
            raise DataError("subjects=[] selects no questions; pass None for all subjects")
        chosen: set[str] = set()
        for name in names:
            if name in groups:
                chosen.add(name)
            elif name in _CATEGORY_NAMES:
                members = {s for s in groups if CATEGORIES.get(s) == name}
                if not members:
                    raise DataError(
                        f"category {name!r} has no subjects in {self.source}; "
                        "select another category or load a source that has them"
                    )
                chosen |= members
            else:
                known = ", ".join(sorted(groups)[:3])
                raise DataError(
                    f"unknown subject or category {name!r} in {self.source}; use a loaded "
                    f"subject (e.g. {known}) or one of {', '.join(_CATEGORY_NAMES)}"
                )
        return sorted(chosen)


def _allocate(n: int, sizes: Mapping[str, int], rng: random.Random) -> dict[str, int]:
    """Split ``n`` over subjects in proportion to ``sizes`` (largest-remainder method)."""
    names = sorted(sizes)
    if n < len(names):
        return dict.fromkeys(rng.sample(names, n), 1)
    total = sum(sizes.values())
    # Integer arithmetic keeps the quotas exact, so no float rounding decides a tie.
    shares = {s: n * sizes[s] // total for s in names}
    order = list(names)
    rng.shuffle(order)
    order.sort(key=lambda s: n * sizes[s] % total, reverse=True)  # stable: shuffled ties
    for s in order[: n - sum(shares.values())]:
        shares[s] += 1
    return {s: k for s, k in shares.items() if k}


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
    shown = _shown(path, base)
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


def _shown(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _subject_from_name(path: Path) -> str | None:
    name = path.name
    return name[: -len("_test.csv")] if name.endswith("_test.csv") else None


def _load_folder(path: Path, shown: str, base: Path) -> list[Question]:
    for folder in (path / "test", path):
        files = sorted(folder.glob("*_test.csv")) if folder.is_dir() else []
        if files:
            break
    else:
        raise DataError(
            f"MMLU folder {shown} has no *_test.csv files (looked in {shown}/test and "
            f"{shown}); use the folder of Hendrycks' data.tar or a .csv/.jsonl/.parquet file"
        )
    questions: list[Question] = []
    for file in files:
        questions.extend(_read_csv(file, _shown(file, base), _subject_from_name(file)))
    return questions


@contextmanager
def _reading(shown: str) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError:
        raise DataError(f"{shown} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"cannot read {shown} ({exc.strerror}); check its permissions") from None


def _read_csv(path: Path, shown: str, subject: str | None) -> list[Question]:
    questions: list[Question] = []
    header: dict[str, int] | None = None
    width = 6
    line = 1  # a record may span lines: report the line where it starts
    try:
        with _reading(shown), path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
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
                    layout = "question,A,B,C,D,answer" if header is None else "as in the header"
                    raise DataError(
                        f"{where}: expected {width} columns ({layout}), found {len(row)}; "
                        "quote cells that contain commas or newlines"
                    )
                questions.append(_csv_row(row, where, header, subject))
    except csv.Error as exc:
        raise DataError(f"{shown}:{line}: malformed CSV ({exc}); check the quoting") from None
    return questions


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
    with _reading(shown), path.open(encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, 1):
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


def _load_hf(source: str) -> list[Question]:
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
        rows = load_dataset(name, "all", split="test")
    except Exception as exc:
        raise DataError(
            f"cannot load {source} (config 'all', split 'test'): {_one_line(exc)}; "
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
