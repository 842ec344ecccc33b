"""One measurement per device at a time, across xdist workers and concurrent sessions.

Two processes measuring one GPU (or one CPU package) at once would each count
the other's work. Every measured evaluation holds an exclusive lock named after
its device; the others wait. The lock lives in the system temp folder, so two CI
jobs sharing a runner take turns too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, no serialisation
    fcntl = None  # type: ignore[assignment]


def lock_folder() -> Path:
    return Path(tempfile.gettempdir()) / "pytest-energy-locks"


@contextmanager
def device_lock(device: str, folder: Path | None = None) -> Iterator[None]:
    """Hold the exclusive lock of ``device`` (``cpu``, ``cuda:0``...) for the block."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    folder = folder or lock_folder()
    folder.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() else "-" for c in device)
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def worker_device(device_count: int, worker: str | None = None) -> str:
    """The GPU an xdist worker measures on: worker ``gwK`` takes ``cuda:K % count``,
    so several GPUs are used in parallel and workers sharing one take turns."""
    worker = worker if worker is not None else os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return f"cuda:{index % max(device_count, 1)}"
