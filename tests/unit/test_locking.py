"""One measurement per device at a time, across processes."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from pytest_energy.locking import device_lock, worker_device


def _hold(folder: str, device: str, log: str, tag: str) -> None:
    with device_lock(device, Path(folder)):
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
