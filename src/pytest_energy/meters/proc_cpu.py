"""CPU seconds from Linux ``/proc``: a process with its descendants, or the whole machine.

Pure readers of a ``/proc`` tree (a fake one under ``tmp_path`` in tests):

* :func:`process_tree_cpu_s`: a process's ``utime + stime`` and ``cutime +
  cstime`` (its reaped children) from ``/proc/PID/stat``, plus the same for
  every live descendant (a model server's worker processes: vLLM's engine core,
  llama.cpp's threads are in the process already), found through
  ``/proc/PID/task/TID/children`` or, where the kernel has no such file, by
  scanning every process's parent id;
* :func:`machine_busy_cpu_s`: every core's busy time from the ``cpu`` line of
  ``/proc/stat`` (all columns but idle and iowait).

Both are in seconds (clock ticks divided by ``SC_CLK_TCK``).
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
# /proc/stat "cpu" columns that are not work: idle and iowait.
IDLE_COLUMNS = (3, 4)
# /proc/PID/stat fields after the ")" that ends the command name: state is 0, ppid 1,
# utime 11, stime 12, cutime 13, cstime 14.
_PPID, _TIMES = 1, slice(11, 15)


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _stat_fields(proc: Path, pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None when gone."""
    try:
        text = (proc / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    _, paren, rest = text.rpartition(")")
    fields = rest.split()
    return fields if paren and len(fields) > _TIMES.stop else None


def process_exists(pid: int, proc: Path = PROC) -> bool:
    return _stat_fields(proc, pid) is not None


def _children(proc: Path, pid: int) -> list[int] | None:
    """Child pids from ``task/*/children``; None when the kernel has no such files."""
    try:
        tasks = list((proc / str(pid) / "task").iterdir())
    except OSError:
        return []  # it just ended
    found: list[int] = []
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text(encoding="ascii").split()]
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            continue  # a thread that just ended
    return found


def _descendants_by_scan(proc: Path, pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(proc, int(entry.name))
            if fields is not None and fields[_PPID].isdigit():
                parents.setdefault(int(fields[_PPID]), []).append(int(entry.name))
    out, todo = [], list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo += parents.get(child, [])
    return out


def descendants(pid: int, proc: Path = PROC) -> list[int]:
    """The live descendants of ``pid`` (children, grandchildren...)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        children = _children(proc, todo.pop())
        if children is None:
            return _descendants_by_scan(proc, pid)
        out += children
        todo += children
    return out


def process_tree_cpu_s(pid: int, proc: Path = PROC) -> float:
    """CPU seconds of ``pid``, its reaped children and its live descendants.

    Raises :class:`ProcessLookupError` when ``pid`` itself is gone; a descendant
    that ends while it is read is skipped (its parent reaps its time later).
    """
    own = _stat_fields(proc, pid)
    if own is None:
        raise ProcessLookupError(pid)
    ticks = sum(int(v) for v in own[_TIMES])
    for child in descendants(pid, proc):
        fields = _stat_fields(proc, child)
        if fields is not None:
            ticks += sum(int(v) for v in fields[_TIMES])
    return ticks / _ticks()


def machine_busy_cpu_s(stat: Path = PROC / "stat") -> float | None:
    """Busy CPU seconds of all cores since boot, or None without a readable ``/proc/stat``."""
    try:
        first = stat.read_text(encoding="ascii").split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    columns = [int(v) for v in first[1:9]]
    return sum(v for i, v in enumerate(columns) if i not in IDLE_COLUMNS) / _ticks()
