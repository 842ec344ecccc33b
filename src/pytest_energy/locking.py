"""Exclusive locks: one measurement per device, one writer per baseline file.

Two processes measuring one GPU (or one CPU package) at once would each count
the other's work, so every measured evaluation holds a lock named after its
device; two sessions recording one baseline file take turns the same way.

The locks are ``flock`` locks on small files: the kernel releases them when the
holder dies, even by SIGKILL, so nothing is ever stale. They are taken without
blocking, in a loop: after :data:`NOTICE_AFTER_S` the waiter says who holds the
lock (the holder writes its pid and host into the file), and after the timeout
it gives up with a one-line error. Device locks live in one folder of the
system temp dir, mode 1777 like ``/tmp`` itself, with files every account can
open, so runner services under different accounts share them.
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_energy.errors import EnergyError, MeterError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, no serialisation
    fcntl = None  # type: ignore[assignment]

FOLDER_MODE = 0o1777  # everyone creates, only the owner removes (sticky), as /tmp
FILE_MODE = 0o666
NOTICE_AFTER_S = 2.0
DEFAULT_TIMEOUT_S = 600.0  # Settings.lock_timeout_s gives the session's
_POLL_S = 0.05

Notify = Callable[[str], None]


def lock_folder() -> Path:
    return Path(tempfile.gettempdir()) / "pytest-energy-locks"


@contextmanager
def device_lock(
    device: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    notify: Notify | None = None,
    folder: Path | None = None,
) -> Iterator[None]:
    """Hold the lock of ``device`` (``cpu``, ``cuda:0``...) for the block."""
    folder = folder or lock_folder()
    _shared_folder(folder)
    name = "".join(c if c.isalnum() else "-" for c in device)
    with file_lock(
        folder / f"{name}.lock",
        what=device,
        error=MeterError,
        fix="wait for that run to finish, or raise energy_lock_timeout (seconds)",
        timeout_s=timeout_s,
        notify=notify,
    ):
        yield


@contextmanager
def file_lock(
    lock: Path,
    *,
    what: str,
    error: type[EnergyError],
    fix: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    notify: Notify | None = None,
) -> Iterator[None]:
    """Hold the ``flock`` of the file ``lock`` for the block, polling.

    ``what`` names the locked thing in messages; ``notify`` (default: nothing)
    receives ``waiting for WHAT held by pid N on HOST`` once, after
    :data:`NOTICE_AFTER_S`; past ``timeout_s`` an ``error`` names the holder,
    the lock file and ``fix``.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = _open(lock, error)
    try:
        started = time.monotonic()
        noticed = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= timeout_s:
                    raise error(
                        f"{what} has been held by {_holder(lock)} for over {timeout_s:g} s "
                        f"(lock {lock}); {fix}"
                    ) from None
                if not noticed and waited >= NOTICE_AFTER_S and notify is not None:
                    notify(f"waiting for {what} held by {_holder(lock)}")
                    noticed = True
                time.sleep(_POLL_S)
        _claim(fd)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _shared_folder(folder: Path) -> None:
    """Create ``folder`` for every account (1777, whatever the umask), and repair
    the mode of one this account created earlier with another."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        info = folder.stat()
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != FOLDER_MODE:
            os.chmod(folder, FOLDER_MODE)
    except OSError as exc:
        raise MeterError(
            f"cannot prepare the lock folder {folder} ({exc.strerror or exc}); "
            f"ask its owner to run chmod 1777 {folder}, or set TMPDIR to another folder"
        ) from None


def _open(lock: Path, error: type[EnergyError]) -> int:
    """A descriptor of ``lock``, created mode 0666 whatever the umask; read-only
    when another account created it without write access (flock needs no more)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except PermissionError:
        try:
            return os.open(lock, os.O_RDONLY)
        except OSError as exc:
            raise error(
                f"cannot open the lock file {lock} ({exc.strerror or exc}); ask its owner "
                f"to run chmod 666 {lock}, or delete it when no pytest run is using it"
            ) from None
    except OSError as exc:
        raise error(f"cannot create the lock file {lock} ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != FILE_MODE:
        os.fchmod(fd, FILE_MODE)
    return fd


def _claim(fd: int) -> None:
    """Write ``pid host`` into the lock file, for whoever waits next."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    except OSError:
        pass  # opened read-only: the lock holds all the same, only unnamed


def _holder(lock: Path) -> str:
    try:
        pid, _, host = lock.read_text(encoding="utf-8").strip().partition(" ")
    except OSError:
        pid, host = "", ""
    if not pid.isdigit():
        return "another process"
    return f"pid {pid} on {host}" if host else f"pid {pid}"


class SharedDeviceWarning(UserWarning):
    """Another process used the measured device during a measurement."""


@contextmanager
def shared_device_warned(meter: object) -> Iterator[None]:
    """Warn when other processes compute on the measured GPU during the block (the
    lock keeps out pytest-energy runs, not the rest): their energy lands in ours."""
    others = getattr(meter, "other_processes", None)
    before = others() if others is not None else []
    yield
    after = others() if others is not None else []
    pids = sorted({p.pid for p in [*before, *after]})
    if pids:
        warnings.warn(
            SharedDeviceWarning(
                f"other processes ({', '.join(map(str, pids[:5]))}) used the measured GPU "
                "during an evaluation; its energy includes their work. Run energy tests "
                "on a dedicated GPU"
            ),
            stacklevel=3,
        )


def worker_device(device_count: int, worker: str | None = None) -> str:
    """The GPU an xdist worker measures on: worker ``gwK`` takes ``cuda:K % count``,
    so several GPUs are used in parallel and workers sharing one take turns."""
    worker = worker if worker is not None else os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return f"cuda:{index % max(device_count, 1)}"
