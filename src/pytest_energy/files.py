"""Writing the files users commit or read in pull requests: atomically, diff-friendly."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, overload

from pytest_energy.errors import EnergyError

LOCK_TIMEOUT_S = 90.0
STALE_LOCK_S = 60.0  # a write takes milliseconds; an older lock is left over


def dump_json(document: Any) -> str:
    """The house JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@overload
def read_text(
    path: Path,
    error: type[EnergyError],
    *,
    what: str,
    fix: str,
    shown: str | None = None,
    if_missing: str,
) -> str: ...


@overload
def read_text(
    path: Path,
    error: type[EnergyError],
    *,
    what: str,
    fix: str,
    shown: str | None = None,
    if_missing: str | None = None,
) -> str | None: ...


def read_text(
    path: Path,
    error: type[EnergyError],
    *,
    what: str,
    fix: str,
    shown: str | None = None,
    if_missing: str | None = None,
) -> str | None:
    """The text of ``path`` (UTF-8, a byte-order mark dropped), or a one-line ``error``.

    ``what`` names the file for the message ("baseline", "budgets file") and
    ``shown`` how to print its path (default: as given); ``fix`` says what to do
    when it cannot be read. A missing file returns None, unless
    ``if_missing`` gives the fix for that case, which makes it an error too.
    """
    name = f"{what} {shown or path}"
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        if if_missing is None:
            return None
        raise error(f"{name} does not exist; {if_missing}") from None
    except UnicodeDecodeError:
        raise error(f"{name} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise error(f"cannot read {name} ({exc.strerror or exc}); {fix}") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file in the same folder, flushed to disk,
    then ``os.replace``: readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def lock_beside(path: Path, error: type[EnergyError]) -> Iterator[None]:
    """Hold a lock file beside ``path`` (portable O_EXCL create), removed on exit.

    Two sessions updating one committed file take turns; a lock older than
    ``STALE_LOCK_S`` was left by a killed session and is taken over. Waiting
    longer than ``LOCK_TIMEOUT_S`` raises ``error`` naming the lock file.
    """
    lock = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
                    lock.unlink(missing_ok=True)
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() > deadline:
                raise error(
                    f"{lock}: another session has held the lock for over "
                    f"{LOCK_TIMEOUT_S:.0f} s; if no pytest run is writing, delete the lock file"
                ) from None
            time.sleep(0.02)
    try:
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)
