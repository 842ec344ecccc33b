"""One measurement per device at a time, across processes and accounts."""

from __future__ import annotations

import multiprocessing
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_energy import locking
from pytest_energy.errors import MeterError
from pytest_energy.locking import device_lock, worker_device

# A second process that takes the lock of a device with the plugin's own code
# and holds it until killed.
HOLDER = """
import sys, time
from pathlib import Path
from pytest_energy.locking import device_lock
with device_lock(sys.argv[1], folder=Path(sys.argv[2])):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A live process holding the ``cuda:0`` lock in ``tmp_path``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "cuda:0", str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    with proc.stdout:
        assert proc.stdout.readline().strip() == "held"
        yield proc
        proc.kill()
        proc.wait()


def _hold(folder: str, device: str, log: str, tag: str) -> None:
    with device_lock(device, folder=Path(folder)):
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{tag} in {time.monotonic():.6f}\n")
        time.sleep(0.3)
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{tag} out {time.monotonic():.6f}\n")


def _run_two(tmp_path: Path, first: str, second: str) -> list[str]:
    log = tmp_path / "log.txt"
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_hold, args=(str(tmp_path), dev, str(log), tag))
        for tag, dev in (("a", first), ("b", second))
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    lines = sorted(log.read_text().splitlines(), key=lambda line: float(line.split()[2]))
    return [" ".join(line.split()[:2]) for line in lines]


def test_two_processes_never_measure_one_device_at_the_same_time(tmp_path: Path) -> None:
    order = _run_two(tmp_path, "cuda:0", "cuda:0")
    # Whoever enters first leaves before the other enters.
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


def test_different_devices_measure_in_parallel(tmp_path: Path) -> None:
    order = _run_two(tmp_path, "cuda:0", "cuda:1")
    assert order[:2] in (["a in", "b in"], ["b in", "a in"])


def test_workers_are_pinned_round_robin_to_gpus() -> None:
    assert worker_device(4, "gw0") == "cuda:0"
    assert worker_device(4, "gw5") == "cuda:1"
    assert worker_device(1, "gw3") == "cuda:0"
    assert worker_device(2, "") == "cuda:0"  # not under xdist


def test_a_held_device_says_who_holds_it_and_gives_up_in_one_line(
    tmp_path: Path, holder: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locking, "NOTICE_AFTER_S", 0.2)
    notices: list[str] = []
    started = time.monotonic()
    lock = device_lock("cuda:0", folder=tmp_path, timeout_s=1.0, notify=notices.append)
    with pytest.raises(MeterError) as caught, lock:
        pytest.fail("the lock was taken while another process held it")
    assert 1.0 <= time.monotonic() - started < 5
    who = f"pid {holder.pid} on {socket.gethostname()}"
    assert notices == [f"waiting for cuda:0 {'held by ' + who}"]
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cuda:0 has been held by {who} for over 1 s (lock {tmp_path}/")
    assert message.endswith("wait for that run to finish, or raise energy_lock_timeout (seconds)")


def test_the_lock_of_a_killed_holder_is_taken_at_once(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    holder.kill()  # SIGKILL: no cleanup runs; the kernel drops the flock
    holder.wait()
    started = time.monotonic()
    with device_lock("cuda:0", folder=tmp_path, timeout_s=5):
        pass
    assert time.monotonic() - started < 1


def test_the_lock_folder_is_usable_by_every_account_whatever_the_first_umask(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pytest-energy-locks"
    folder.mkdir(mode=0o755)  # as an earlier version, or another tool, left it
    old = os.umask(0o077)
    try:
        with device_lock("cuda:0", folder=folder):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o1777
    assert stat.S_IMODE((folder / "cuda-0.lock").stat().st_mode) == 0o666


def test_a_lock_file_of_another_account_without_write_access_still_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / "cuda-0.lock"
    lock.write_text("")
    real_open = os.open

    def as_another_account(path: object, flags: int, *args: int) -> int:
        if Path(str(path)) == lock and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(locking.os, "open", as_another_account)
    with device_lock("cuda:0", folder=tmp_path, timeout_s=1):
        pass
