"""Writing the files users commit or read in pull requests: atomically, diff-friendly."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, overload

from pytest_energy.errors import EnergyError
from pytest_energy.locking import Notify, file_lock

LOCK_TIMEOUT_S = 90.0  # a write takes milliseconds: a longer hold is a hung session


def shown_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` where it lies under it (shorter in messages), else whole."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


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
    then ``os.replace``: readers see the old file or the new one, never half of one.

    The file keeps the mode it had; a new one gets the umask's, as ``open`` would
    (not ``mkstemp``'s 0600, which would hide a shared report from other accounts).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Output(NamedTuple):
    """A file the session writes: what it is, where, and the option that moves it."""

    what: str
    path: Path
    option: str

    def problem(self, why: str) -> str:
        return f"cannot write the {self.what} {self.path} ({why}); {self.fix}"

    @property
    def fix(self) -> str:
        return f"make its folder writable, or give another path with {self.option}"


def unwritable(path: Path) -> str | None:
    """Why ``path`` could not be written (created or replaced) now, or None.

    Tries it: a probe file is created and removed in the nearest existing
    folder, which catches read-only mounts and ACLs that ``os.access`` misses.
    """
    if path.is_dir():
        return "it is a folder"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".pytest-energy-probe-", dir=folder)
    except OSError as exc:
        return f"cannot create files in {folder}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(probe)
    return None


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def lock_beside(
    path: Path, error: type[EnergyError], notify: Notify | None = None
) -> Iterator[None]:
    """Hold the lock of ``path`` (an ``flock`` on ``PATH.lock`` beside it) for the block.

    Two sessions updating one committed file take turns; the kernel drops the
    lock of a killed session at once. Once held, the temporary files a killed
    writer of ``path`` left behind are removed.
    """
    with file_lock(
        path.with_name(path.name + ".lock"),
        what=str(path),
        error=error,
        fix="if no pytest run is writing it, look for a hung one (the lock dies with it)",
        timeout_s=LOCK_TIMEOUT_S,
        notify=notify,
    ):
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)
        yield


def ignore_lock_files(folder: Path) -> None:
    """Give ``folder`` a ``.gitignore`` for lock and temporary files, unless it has one."""
    ignore = folder / ".gitignore"
    if not ignore.exists():
        write_text_atomic(ignore, "# pytest-energy: locks and half-written files\n*.lock\n*.tmp\n")
