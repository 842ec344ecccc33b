from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from factories import FINGERPRINT, make_result
from pytest_energy.baseline import SCHEMA_VERSION, BaselineStore, baseline_mismatch
from pytest_energy.baseline_entry import BaselineEntry, entry_from_result
from pytest_energy.errors import BaselineError
from pytest_energy.files import lock_beside
from pytest_energy.fingerprint import differing_fields, hard_differences, soft_changes
from pytest_energy.metrics import QuestionRecord


def store_with(**entries: BaselineEntry) -> BaselineStore:
    return BaselineStore().updated(entries)[0]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / ".energy" / "baseline.json"


# -- file format ------------------------------------------------------------------


def test_entry_round_trips_through_the_file(path: Path) -> None:
    entry = entry_from_result(make_result())
    store_with(a=entry).write(path)
    assert BaselineStore.load(path).get("a") == entry


def test_file_is_sorted_indented_versioned_and_ends_with_newline(path: Path) -> None:
    store_with(b=entry_from_result(make_result()), a=entry_from_result(make_result())).write(path)
    text = path.read_text()
    data = json.loads(text)
    assert text.endswith("}\n")
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert data["schema"] == SCHEMA_VERSION
    assert list(data["entries"]) == ["a", "b"]
    assert data["plugin_version"]


def test_floats_are_rounded_to_six_significant_digits(path: Path) -> None:
    store_with(a=entry_from_result(make_result((123.456789123, 120.0, 121.0)))).write(path)
    data = json.loads(path.read_text())["entries"]["a"]
    assert data["samples"]["energy_j"][0] == 123.457
    assert data["summary"]["energy_j"] == 121.0
    assert data["fingerprint"] == FINGERPRINT


def test_entry_keeps_samples_questions_and_provenance() -> None:
    # 4 questions, 3 right, 80 prompt tokens and 20, 21, 22, 23 output tokens.
    records = [QuestionRecord("anatomy", "A", "AAAB"[i], 80, 20 + i) for i in range(4)]
    entry = entry_from_result(make_result(records=records, estimated=True, meter="curve"))
    assert entry.samples["energy_j"] == (120.0, 121.0, 119.0)
    assert entry.samples["j_per_token"] == pytest.approx(
        (120 / 406, 121 / 406, 119 / 406), rel=1e-5
    )
    assert entry.samples["accuracy"] == (0.75,)
    assert entry.correct_vector == "1110"
    assert (entry.questions, entry.correct, entry.estimated, entry.meter) == (4, 3, True, "curve")
    assert entry.output_tokens_sd == pytest.approx(1.29099, rel=1e-5)


def test_result_without_measured_repeats_cannot_be_recorded() -> None:
    with pytest.raises(BaselineError, match="no finite measured repeats to record"):
        entry_from_result(make_result(()))
    with pytest.raises(BaselineError, match=r"tests/t\.py::test_a: no finite"):
        entry_from_result(make_result((float("nan"), 1.0, 1.0)))


# -- loading errors ----------------------------------------------------------------


def test_missing_file_is_an_empty_store(path: Path) -> None:
    assert BaselineStore.load(path).entries == {}


def test_corrupt_json_names_the_path_and_is_not_replaced(path: Path) -> None:
    path.parent.mkdir()
    path.write_text('{"schema": 1, "entries": {')
    with pytest.raises(BaselineError) as info:
        BaselineStore.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid JSON: ")
    assert "line 1" in message
    assert "re-record with --energy-update-baseline" in message
    with pytest.raises(BaselineError):
        store_with(a=entry_from_result(make_result())).write(path)
    assert path.read_text() == '{"schema": 1, "entries": {'


def test_merge_conflict_markers_are_named(path: Path) -> None:
    path.parent.mkdir()
    path.write_text('<<<<<<< HEAD\n{"schema": 1}\n=======\n{"schema": 1}\n>>>>>>> main\n')
    with pytest.raises(BaselineError, match="contains merge-conflict markers"):
        BaselineStore.load(path)


@pytest.mark.parametrize(
    ("schema", "fix"),
    [(2, "upgrade pytest-energy"), (0, "delete it and re-record"), ("1", "delete it")],
)
def test_wrong_schema_version_is_an_error(path: Path, schema: object, fix: str) -> None:
    path.parent.mkdir()
    path.write_text(json.dumps({"schema": schema, "entries": {}}))
    with pytest.raises(BaselineError) as info:
        BaselineStore.load(path)
    assert f"baseline schema {schema!r} is not readable" in str(info.value)
    assert fix in str(info.value)


def test_json_that_is_not_a_baseline_is_an_error(path: Path) -> None:
    path.parent.mkdir()
    path.write_text("[1, 2]")
    with pytest.raises(BaselineError, match="not a pytest-energy baseline"):
        BaselineStore.load(path)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda d: d.pop("samples"), "missing 'samples'"),
        (lambda d: d["samples"].update(energy_j=[]), "'samples.energy_j' must be a non-empty"),
        (lambda d: d["samples"].update(j_per_token=["x"]), "'samples.j_per_token' must be"),
        (lambda d: d.update(estimated="no"), "'estimated' must be true or false"),
        (lambda d: d["fingerprint"].update(gpu=3), "'fingerprint' must map names to strings"),
        (lambda d: d["questions"].update(correct=99), "'questions.count' and"),
        (lambda d: d["questions"].update(correct_vector="12"), "'questions.correct_vector'"),
        (lambda d: d.update(model=None), "'model' must be a string"),
        (lambda d: d["questions"].update(set=7), "'questions.set' must be a string"),
    ],
)
def test_malformed_entry_names_the_key_and_problem(
    path: Path, mutate: object, problem: str
) -> None:
    store_with(**{"tests/t.py::test_a": entry_from_result(make_result())}).write(path)
    data = json.loads(path.read_text())
    mutate(data["entries"]["tests/t.py::test_a"])  # type: ignore[operator]
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError) as info:
        BaselineStore.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: entry 'tests/t.py::test_a': ")
    assert problem in message
    assert message.endswith("re-record it with --energy-update-baseline")


# -- writing ---------------------------------------------------------------------


# What a written .energy folder holds: the file, its lock, and a .gitignore for the lock.
WRITTEN = [".gitignore", "baseline.json", "baseline.json.lock"]


def test_write_creates_the_folder_and_leaves_no_temporary_files(path: Path) -> None:
    store_with(a=entry_from_result(make_result())).write(path)
    assert sorted(os.listdir(path.parent)) == WRITTEN
    assert (path.parent / ".gitignore").read_text().splitlines()[1:] == ["*.lock", "*.tmp"]


def test_a_gitignore_of_the_user_is_left_alone(path: Path) -> None:
    path.parent.mkdir()
    (path.parent / ".gitignore").write_text("mine\n")
    store_with(a=entry_from_result(make_result())).write(path)
    assert (path.parent / ".gitignore").read_text() == "mine\n"


def test_an_update_keeps_the_mode_of_the_file_and_a_new_file_follows_the_umask(
    path: Path,
) -> None:
    old = os.umask(0o022)
    try:
        store_with(a=entry_from_result(make_result())).write(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o664)
        store_with(b=entry_from_result(make_result())).write(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_with(a=entry_from_result(make_result())).write(path)
    before = path.read_text()

    def refuse(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pytest_energy.files.os.replace", refuse)
    with pytest.raises(OSError, match="No space"):
        store_with(b=entry_from_result(make_result())).write(path)
    assert path.read_text() == before
    assert sorted(os.listdir(path.parent)) == WRITTEN


def test_two_writers_recording_different_tests_keep_both(path: Path) -> None:
    store_with(old=entry_from_result(make_result())).write(path)
    first = BaselineStore.load(path).updated({"a": entry_from_result(make_result())})[0]
    second = BaselineStore.load(path).updated({"b": entry_from_result(make_result())})[0]
    first.write(path)
    second.write(path)
    assert sorted(BaselineStore.load(path).entries) == ["a", "b", "old"]


def test_concurrent_writers_lose_no_entry(path: Path) -> None:
    entry = entry_from_result(make_result())
    errors: list[BaseException] = []

    def record(key: str) -> None:
        try:
            BaselineStore.load(path).updated({key: entry})[0].write(path)
        except BaseException as exc:  # reported below
            errors.append(exc)

    path.parent.mkdir()
    threads = [threading.Thread(target=record, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(BaselineStore.load(path).entries) == [f"t{i}" for i in range(8)]
    assert sorted(os.listdir(path.parent)) == WRITTEN


# A writer that stops inside its atomic write (the temporary file written, not yet
# renamed) until it is killed.
STUCK_WRITER = """
import sys, time
from pathlib import Path
import pytest_energy.files as files
from pytest_energy.baseline import BaselineStore

def stuck(fd):
    print("writing", flush=True)
    time.sleep(120)

files.os.fsync = stuck
path = Path(sys.argv[1])
BaselineStore.load(path).without(["a"]).write(path)
"""


def test_kill_9_during_a_write_leaves_the_file_and_the_next_writer_goes_on_at_once(
    path: Path,
) -> None:
    store_with(a=entry_from_result(make_result())).write(path)
    before = path.read_text()
    writer = subprocess.Popen(
        [sys.executable, "-c", STUCK_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "writing"
        assert any(name.endswith(".tmp") for name in os.listdir(path.parent))
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    assert path.read_text() == before

    started = time.monotonic()
    store_with(c=entry_from_result(make_result())).write(path)
    assert time.monotonic() - started < 2
    assert sorted(os.listdir(path.parent)) == WRITTEN
    assert sorted(BaselineStore.load(path).entries) == ["a", "c"]


def test_a_held_baseline_lock_is_announced_with_its_holder(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_with(a=entry_from_result(make_result())).write(path)
    monkeypatch.setattr("pytest_energy.locking.NOTICE_AFTER_S", 0.1)
    monkeypatch.setattr("pytest_energy.files.LOCK_TIMEOUT_S", 0.5)
    notices: list[str] = []
    with lock_beside(path, BaselineError), pytest.raises(BaselineError) as caught:
        store_with(b=entry_from_result(make_result())).write(path, notices.append)
    holder = f"pid {os.getpid()} on {socket.gethostname()}"
    assert notices == [f"waiting for {path} held by {holder}"]
    assert str(caught.value).startswith(f"{path} has been held by {holder} for over 0.5 s")


def test_partial_run_keeps_entries_it_did_not_run(path: Path) -> None:
    store_with(a=entry_from_result(make_result()), b=entry_from_result(make_result())).write(path)
    refreshed = entry_from_result(make_result((200.0, 201.0, 202.0)))
    BaselineStore.load(path).updated({"a": refreshed})[0].write(path)
    loaded = BaselineStore.load(path)
    assert loaded.get("a") == refreshed
    assert loaded.get("b") == entry_from_result(make_result())


# -- classification ----------------------------------------------------------------


def test_update_classifies_new_updated_and_unchanged(path: Path) -> None:
    store_with(same=entry_from_result(make_result()), moved=entry_from_result(make_result())).write(
        path
    )
    store = BaselineStore.load(path)
    _, changes = store.updated(
        {
            "same": entry_from_result(make_result()),
            "moved": entry_from_result(make_result((150.0, 151.0, 152.0))),
            "fresh": entry_from_result(make_result()),
        }
    )
    assert (changes.new, changes.updated, changes.unchanged) == (("fresh",), ("moved",), ("same",))
    assert changes.describe(path) == f"baseline {path}: 1 new, 1 updated, 1 unchanged"


def test_unused_lists_entries_no_test_ran() -> None:
    store = store_with(a=entry_from_result(make_result()), b=entry_from_result(make_result()))
    assert store.unused(["a", "c"]) == ("b",)


def test_write_without_changes_leaves_the_file_alone(path: Path) -> None:
    store_with(a=entry_from_result(make_result())).write(path)
    path.write_text(path.read_text().replace('"plugin_version": "', '"plugin_version": "old-'))
    before = path.read_text()
    BaselineStore.load(path).write(path)
    assert path.read_text() == before


# -- comparability --------------------------------------------------------------------


def test_hard_differences_name_each_differing_hardware_field() -> None:
    head = {**FINGERPRINT, "gpu": "H100", "power_limit_w": "700"}
    del head["dtype"]
    assert hard_differences(FINGERPRINT, head) == [
        "dtype: 'bfloat16' -> missing",
        "gpu: 'A100' -> 'H100'",
        "power_limit_w: missing -> '700'",
    ]


def test_mismatch_message_says_what_differs_and_what_to_do() -> None:
    entry = entry_from_result(make_result())
    head = make_result(fingerprint={**FINGERPRINT, "gpu": "H100"})
    assert baseline_mismatch(entry, head) == (
        "not compared: the baseline was recorded on a different setup (gpu: 'A100' -> 'H100'); "
        "run on the same hardware, or re-record with --energy-update-baseline"
    )
    assert baseline_mismatch(entry, make_result()) is None


@pytest.mark.parametrize(
    "field", ["gpu", "gpu_count", "power_limit_w", "cpu", "device", "dtype", "backend", "meter"]
)
def test_a_hard_field_makes_the_comparison_meaningless(field: str) -> None:
    entry = entry_from_result(make_result())
    message = baseline_mismatch(entry, make_result(fingerprint={**FINGERPRINT, field: "other"}))
    assert message is not None
    assert f"{field}: " in message


def test_library_driver_and_plugin_versions_are_compared_and_attributed() -> None:
    base = {**FINGERPRINT, "transformers": "5.24.0", "torch": "2.13.0", "pytest_energy": "0.1.0"}
    head = {**base, "transformers": "5.25.0", "driver": "550.54", "pytest_energy": "0.2.0"}
    head["nvidia_driver"] = "570.1"  # not recorded in the base: no change to report
    entry = entry_from_result(make_result(fingerprint=base))
    assert baseline_mismatch(entry, make_result(fingerprint=head)) is None
    assert soft_changes(base, head) == [
        "pytest-energy 0.1.0 -> 0.2.0",
        "transformers 5.24.0 -> 5.25.0",
    ]


def test_meter_change_is_a_mismatch_even_outside_the_fingerprint() -> None:
    entry = entry_from_result(make_result())
    message = baseline_mismatch(entry, make_result(meter="rapl"))
    assert message is not None
    assert "meter: 'nvml' -> 'rapl'" in message


def test_estimated_energy_is_never_compared_with_measured() -> None:
    measured = entry_from_result(make_result())
    estimated = make_result(estimated=True, meter="cpu-estimate")
    message = baseline_mismatch(measured, estimated)
    assert message is not None
    assert message.startswith(
        "baseline energy is measured (nvml) but this run's is estimated (cpu-estimate); "
        "estimates are never compared with measurements"
    )
    reverse = baseline_mismatch(entry_from_result(estimated), make_result())
    assert reverse is not None
    assert reverse.startswith("baseline energy is estimated (cpu-estimate)")


def test_another_card_of_the_same_model_is_not_a_fingerprint_mismatch() -> None:
    a = {"gpu": "NVIDIA H200", "gpu_uuid": "GPU-aaaa", "power_limit_w": "700"}
    b = {"gpu": "NVIDIA H200", "gpu_uuid": "GPU-bbbb", "power_limit_w": "700"}
    assert hard_differences(a, b) == []
    assert hard_differences(a, {**b, "power_limit_w": "500"}) == ["power_limit_w: '700' -> '500'"]
    # The same rule for the reports and ``energy compare``, which list field names.
    assert differing_fields(a, b) == []
    assert differing_fields(a, {**b, "cpu": "EPYC", "torch": "2"}) == ["cpu", "torch"]


def test_cpu_isa_tells_cpus_of_one_family_apart_and_spares_older_baselines() -> None:
    avx2 = {"cpu": "AMD EPYC", "cpu_isa": "avx2", "meter": "cpu-estimate"}
    assert hard_differences(avx2, {**avx2, "cpu_isa": "avx512"}) == ["cpu_isa: 'avx2' -> 'avx512'"]
    # A baseline written before the field existed still compares after an upgrade...
    older = {"cpu": "AMD EPYC", "meter": "cpu-estimate"}
    assert hard_differences(older, avx2) == []
    assert differing_fields(avx2, older) == []
    # ...while any other field missing on one side still differs.
    assert hard_differences(older, {**avx2, "cpu_count": "2"}) == ["cpu_count: missing -> '2'"]
