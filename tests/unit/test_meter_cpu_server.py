"""``cpu-estimate`` with a model server on this machine: the server's CPU time counts.

Real child processes burn a known amount of CPU time (measured by themselves
with ``time.process_time``) while the test waits on a pipe, so the test's own
process stays idle: what the meter counts beyond ours is the server's. The
``/proc`` corner cases (a kernel without ``children`` files, a descendant that
ends unreaped, no ``/proc/stat``) use a fake ``/proc`` tree under ``tmp_path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from factories import make_result
from pytest_energy.backends.openai import OpenAIBackend
from pytest_energy.baseline_entry import entry_from_result
from pytest_energy.errors import MeasurementError, MeterError
from pytest_energy.machine_load import LoadProbe, ours_and_server_cpu_s
from pytest_energy.measure import own_cpu
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.cpu_estimate import CpuEstimateMeter
from pytest_energy.meters.proc_cpu import descendants, process_tree_cpu_s
from pytest_energy.meters.select import create_meter
from pytest_energy.settings import Settings, Tolerance
from pytest_energy.testing import FakeMeter
from pytest_energy.testing.openai_server import FakeOpenAIServer
from pytest_energy.verdict import too_noisy

WATTS = 10.0
BURN_S = 0.4  # CPU seconds a server burns when told to
# Burns BURN_S of CPU per line read on stdin, then answers with the CPU seconds burnt.
BURNER = f"""
import sys, time
for line in sys.stdin:
    start = time.process_time()
    while time.process_time() - start < {BURN_S}:
        pass
    print(time.process_time() - start, flush=True)
"""
# A server whose work happens in a worker process it keeps alive (vLLM's engine core).
RELAY = """
import subprocess, sys
worker = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
)
for line in sys.stdin:
    worker.stdin.write(line)
    worker.stdin.flush()
    print(worker.stdout.readline().strip(), flush=True)
"""


def start_server(worker: bool = False) -> subprocess.Popen[str]:
    command = ["-c", RELAY, BURNER] if worker else ["-c", BURNER]
    return subprocess.Popen(
        [sys.executable, *command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def burn(server: subprocess.Popen[str]) -> float:
    """Tell the server to burn BURN_S of CPU; the CPU seconds it reports it burnt."""
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdin.write("go\n")
    server.stdin.flush()
    return float(server.stdout.readline())


def stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    with process:  # closes the pipes and reaps it
        pass


@pytest.fixture
def server() -> Iterator[subprocess.Popen[str]]:
    process = start_server()
    yield process
    stop(process)


def counted_s(meter: CpuEstimateMeter, server: subprocess.Popen[str]) -> tuple[float, float]:
    """CPU seconds the meter counted while the server burnt, and what the server burnt."""
    before = meter.read()
    burnt = burn(server)
    return (meter.read() - before) / WATTS, burnt


def test_the_server_process_cpu_time_is_counted_with_ours(
    server: subprocess.Popen[str],
) -> None:
    meter = CpuEstimateMeter(WATTS, server_pid=server.pid)
    assert meter.name == f"cpu-estimate (server pid {server.pid})"
    counted, burnt = counted_s(meter, server)
    assert burnt >= BURN_S
    assert counted >= 0.9 * burnt  # clock ticks are 10 ms
    alone, _ = counted_s(CpuEstimateMeter(WATTS), server)
    assert alone < 0.5 * burnt  # without the pid only our (idle) process counts


def test_a_worker_process_of_the_server_is_counted_while_alive() -> None:
    server = start_server(worker=True)
    try:
        meter = CpuEstimateMeter(WATTS, server_pid=server.pid)
        counted, burnt = counted_s(meter, server)
        assert len(descendants(server.pid)) == 1
    finally:
        stop(server)
    assert burnt >= BURN_S
    assert counted >= 0.9 * burnt


def test_the_whole_machine_counts_a_local_server_without_a_pid(
    server: subprocess.Popen[str],
) -> None:
    meter = CpuEstimateMeter(WATTS)
    meter.count_local_server()
    assert meter.name == "cpu-estimate (whole machine)"
    counted, burnt = counted_s(meter, server)
    assert counted >= 0.9 * burnt
    assert meter.own_cpu_s() is None  # other load cannot be told from the server


def test_a_missing_server_pid_is_a_one_line_error_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(MeterError) as caught:
        CpuEstimateMeter(WATTS, server_pid=4242, proc=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("energy_server_pid=4242: no process with that id runs here;")
    assert "or unset energy_server_pid" in message


def test_a_server_that_ends_during_the_run_fails_the_reading(
    server: subprocess.Popen[str],
) -> None:
    meter = CpuEstimateMeter(WATTS, server_pid=server.pid)
    stop(server)
    with pytest.raises(MeasurementError, match=r"energy_server_pid=\d+: the process ended;"):
        meter.read()


def test_the_settings_pid_reaches_the_meter_and_a_bad_one_stops_the_run(
    server: subprocess.Popen[str], tmp_path: Path
) -> None:
    meter = create_meter("cpu-estimate", Settings(server_pid=server.pid))
    assert meter.name == f"cpu-estimate (server pid {server.pid})"
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    with pytest.raises(MeterError, match=f"energy_server_pid={exited.pid}: "):
        create_meter("cpu-estimate", Settings(server_pid=exited.pid))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = create_meter(
            "auto",
            Settings(server_pid=server.pid, device="cpu", powercap_root=tmp_path / "none"),
        )
    assert auto.name == f"cpu-estimate (server pid {server.pid})"


def test_a_served_model_on_this_machine_switches_cpu_estimate_to_the_whole_machine() -> None:
    meter = EnergyMeter(CpuEstimateMeter(WATTS))
    with FakeOpenAIServer() as fake:
        OpenAIBackend.connect(fake.url, meter=meter)
        assert meter.name == "cpu-estimate (whole machine)"
        assert meter.fingerprint()["meter"] == "cpu-estimate (whole machine)"
        pinned = EnergyMeter(CpuEstimateMeter(WATTS, server_pid=os.getpid()))
        OpenAIBackend.connect(fake.url, meter=pinned)
        assert pinned.name == f"cpu-estimate (server pid {os.getpid()})"


def test_the_load_probe_does_not_take_the_counted_server_for_other_load(
    server: subprocess.Popen[str],
) -> None:
    meter = CpuEstimateMeter(WATTS, server_pid=server.pid)
    start = time.monotonic()
    with LoadProbe(own_cpu_s=meter.own_cpu_s) as counted, LoadProbe() as plain:
        burnt = burn(server)
    wall = time.monotonic() - start
    assert counted.other_cores is not None
    assert plain.other_cores is not None
    # The plain probe took the server's burn for other load; the meter's probe did not.
    assert (plain.other_cores - counted.other_cores) * wall >= 0.8 * burnt
    whole = CpuEstimateMeter(WATTS)
    whole.count_local_server()
    with LoadProbe(own_cpu_s=whole.own_cpu_s) as unknown:
        burn(server)
    assert unknown.other_cores is None
    assert burnt >= BURN_S


def test_under_a_meter_without_its_own_count_the_named_server_is_not_other_load(
    server: subprocess.Popen[str],
) -> None:
    # RAPL measures the whole package: the server's joules count, its CPU time is ours.
    rapl_like = EnergyMeter(FakeMeter())
    with FakeOpenAIServer() as fake:
        engine = OpenAIBackend.connect(fake.url, meter=rapl_like)
        assert engine.local_server
        start = time.monotonic()
        with (
            LoadProbe(own_cpu_s=own_cpu(rapl_like, engine, server.pid)) as named,
            LoadProbe(own_cpu_s=own_cpu(rapl_like, engine, None)) as unnamed,
            LoadProbe() as plain,
        ):
            burnt = burn(server)
        wall = time.monotonic() - start
    assert named.other_cores is not None
    assert plain.other_cores is not None
    assert (plain.other_cores - named.other_cores) * wall >= 0.8 * burnt
    assert unnamed.other_cores is None  # a local server, process unknown: cannot tell
    stop(server)
    assert ours_and_server_cpu_s(server.pid, local_server=True) is None  # it ended


def test_a_server_pid_meter_is_still_a_cpu_meter_for_the_load_check() -> None:
    name = "cpu-estimate (server pid 1234)"
    base = entry_from_result(make_result(meter=name, estimated=True))
    busy = make_result(meter=name, estimated=True, other_load=1.5)
    assert too_noisy(busy, base, Tolerance(0.1)) == "other load 1.5 cores"
    assert too_noisy(replace(busy, meter="nvml"), base, Tolerance(0.1)) is None


# -- a fake /proc ---------------------------------------------------------------------


def write_stat(
    proc: Path,
    pid: int,
    ppid: int,
    times: tuple[int, int, int, int],
    children: tuple[int, ...] | None = None,
) -> None:
    """``/proc/PID/stat`` and a main thread whose ``children`` file lists ``children``
    (None: a kernel without such files)."""
    folder = proc / str(pid)
    (folder / "task" / str(pid)).mkdir(parents=True, exist_ok=True)
    fields = ["S", str(ppid), *["0"] * 9, *map(str, times), *["0"] * 30]
    (folder / "stat").write_text(f"{pid} (odd (name) x) {' '.join(fields)}\n")
    if children is not None:
        (folder / "task" / str(pid) / "children").write_text(" ".join(map(str, children)))


def test_descendants_are_found_by_scanning_where_the_kernel_has_no_children_files(
    tmp_path: Path,
) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    write_stat(tmp_path, 10, 1, (ticks, ticks, 0, 0))  # the server: 2 s
    write_stat(tmp_path, 11, 10, (ticks, 0, 0, 0))  # its worker: 1 s
    write_stat(tmp_path, 12, 11, (0, ticks, 0, ticks))  # the worker's child: 2 s
    write_stat(tmp_path, 13, 1, (50 * ticks, 0, 0, 0))  # unrelated
    assert sorted(descendants(10, tmp_path)) == [11, 12]
    assert process_tree_cpu_s(10, tmp_path) == pytest.approx(5.0)


def test_a_descendant_that_ends_unreaped_does_not_make_the_count_go_backwards(
    tmp_path: Path,
) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    write_stat(tmp_path, 10, 1, (ticks, 0, 0, 0), children=(11,))
    write_stat(tmp_path, 11, 10, (3 * ticks, 0, 0, 0), children=())
    meter = CpuEstimateMeter(1.0, clock=lambda: 0.0, server_pid=10, proc=tmp_path)
    assert meter.read() == pytest.approx(4.0)
    (tmp_path / "11" / "stat").unlink()  # gone, its time with it
    write_stat(tmp_path, 10, 1, (2 * ticks, 0, 0, 0), children=())
    assert meter.read() == pytest.approx(4.0)
    write_stat(tmp_path, 10, 1, (3 * ticks, 0, 0, 0), children=())
    assert meter.read() == pytest.approx(5.0)  # counting goes on from there


def test_switching_to_the_whole_machine_keeps_the_count_continuous(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    stat.write_text(f"cpu  {100 * ticks} 0 {50 * ticks} 999 7 0 0 0 0 0\n")
    meter = CpuEstimateMeter(1.0, clock=lambda: 3.0, proc=tmp_path)
    assert meter.read() == 3.0
    meter.count_local_server()
    assert meter.read() == pytest.approx(3.0)
    stat.write_text(f"cpu  {102 * ticks} 0 {50 * ticks} 999 7 0 0 0 0 0\n")
    assert meter.read() == pytest.approx(5.0)
    stat.unlink()
    with pytest.raises(MeasurementError, match=r"cannot read .*stat: it needs Linux.s /proc"):
        meter.read()
