"""The cache of de-quantised GGUF models: content-keyed, verified, self-repairing.

De-quantising a GGUF file takes a while, so the result is saved once as a
transformers folder under the cache directory and loaded from there later.
On a shared, persistent runner that folder must survive everything:

- Entries are keyed on the sha256 of the GGUF's content, not on its path or
  mtime (pip sets the mtime at install, so every fresh virtual environment
  would write a new copy). The hash is computed once per (resolved path,
  size, mtime_ns) and remembered in :data:`INDEX_FILE`.
- An entry is written to ``<entry>.tmp<pid>`` and renamed into place; its
  manifest (:data:`MANIFEST_FILE`, the sha256 of every file) is written last
  and checked on every load. An entry that fails the check or fails to load
  is removed and rebuilt from the GGUF, with one :class:`ModelCacheWarning`.
- Writing a new entry removes older entries of the same model and dtype, and
  temporary folders left by conversions that were killed half way.

A cache folder that cannot be written never fails the run: the model is then
loaded from the GGUF every time. Loading and saving are injected callables,
so the logic here is tested with small fake files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pytest_energy.files import dump_json, write_text_atomic

MANIFEST_FILE = "pytest-energy-manifest.json"
INDEX_FILE = "gguf-sha256.json"
_SCHEMA = 1
_KEY_CHARS = 16
_CHUNK = 1 << 20
_REASON_CHARS = 200
# A temporary folder this old is a leftover even if its pid was reused since.
_STALE_TMP_S = 6 * 3600.0
_TMP_SUFFIX = re.compile(r"\.tmp(\d+)$")

T = TypeVar("T")


class ModelCacheWarning(UserWarning):
    """A cached de-quantised model was unreadable or failed its manifest and was rebuilt."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- the content key ----------------------------------------------------------------


def _read_index(cache_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((cache_dir / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or corrupt: the hashes are recomputed
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) and data.get("schema") == _SCHEMA else {}


def gguf_sha256(gguf: Path, cache_dir: Path) -> str:
    """The sha256 of ``gguf``'s content, remembered by (resolved path, size, mtime_ns)
    in the cache folder's index so an unchanged file is hashed only once."""
    path = gguf.resolve()
    stat = path.stat()
    files = _read_index(cache_dir)
    known = files.get(str(path))
    if (
        isinstance(known, dict)
        and known.get("size") == stat.st_size
        and known.get("mtime_ns") == stat.st_mtime_ns
        and isinstance(known.get("sha256"), str)
    ):
        return str(known["sha256"])
    digest = file_sha256(path)
    # Forget files that are gone (old virtual environments), so the index stays small.
    files = {name: entry for name, entry in files.items() if Path(name).is_file()}
    files[str(path)] = {"mtime_ns": stat.st_mtime_ns, "sha256": digest, "size": stat.st_size}
    with contextlib.suppress(OSError):  # a read-only cache: hash again next time
        write_text_atomic(cache_dir / INDEX_FILE, dump_json({"files": files, "schema": _SCHEMA}))
    return digest


def entry_name(gguf: Path, dtype: str, sha256: str) -> str:
    """``<gguf stem>-<dtype>-<first 16 hex digits of the content hash>``."""
    return f"{gguf.stem}-{dtype}-{sha256[:_KEY_CHARS]}"


# -- the manifest -------------------------------------------------------------------


def _entry_files(folder: Path) -> list[Path]:
    return sorted(
        path for path in folder.rglob("*") if path.is_file() and path.name != MANIFEST_FILE
    )


def write_manifest(folder: Path) -> None:
    """Record the size and sha256 of every file in ``folder``; written last, so an
    entry with a manifest is complete."""
    files = {
        path.relative_to(folder).as_posix(): {
            "sha256": file_sha256(path),
            "size": path.stat().st_size,
        }
        for path in _entry_files(folder)
    }
    (folder / MANIFEST_FILE).write_text(
        dump_json({"files": files, "schema": _SCHEMA}), encoding="utf-8"
    )


def manifest_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete, untouched cache entry, or None when it is."""
    try:
        data = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {MANIFEST_FILE}"
    except (OSError, ValueError) as exc:
        return f"{MANIFEST_FILE} is unreadable: {_one_line(exc)}"
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not files or data.get("schema") != _SCHEMA:
        return f"{MANIFEST_FILE} is not a schema-{_SCHEMA} manifest"
    present = {path.relative_to(folder).as_posix(): path for path in _entry_files(folder)}
    foreign = sorted(set(present) - set(files))
    if foreign:
        return f"{foreign[0]} is not in the manifest"
    for name, expected in sorted(files.items()):
        path = present.get(name)
        if path is None:
            return f"{name} is missing"
        if not isinstance(expected, dict):
            return f"{MANIFEST_FILE} has no size and hash for {name}"
        try:
            size = path.stat().st_size
            if size != expected.get("size"):
                return f"{name} has {size} bytes, the manifest says {expected.get('size')}"
            if file_sha256(path) != expected.get("sha256"):
                return f"{name} does not match its sha256 in the manifest"
        except OSError as exc:
            return f"{name} is unreadable: {_one_line(exc)}"
    return None


# -- housekeeping -------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, under another user
    except OSError:
        return True  # cannot tell: keep the folder
    return True


def remove_stale_tmp(cache_dir: Path, *, now_s: float | None = None) -> list[Path]:
    """Remove ``*.tmp<pid>`` folders whose process is gone (a conversion killed half
    way), or that are older than any conversion takes. Returns what was removed."""
    now_s = time.time() if now_s is None else now_s
    removed = []
    try:
        candidates = sorted(cache_dir.iterdir())
    except OSError:
        return []
    for path in candidates:
        match = _TMP_SUFFIX.search(path.name)
        if match is None or not path.is_dir():
            continue
        try:
            old = now_s - path.stat().st_mtime > _STALE_TMP_S
        except OSError:
            continue
        if old or not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def prune_older(cache_dir: Path, keep: str, gguf: Path, dtype: str) -> list[Path]:
    """Remove the entries of the same GGUF stem and dtype other than ``keep``:
    earlier versions of the model (or entries under an older key scheme)."""
    prefix = f"{gguf.stem}-{dtype}-"
    removed = []
    try:
        candidates = sorted(cache_dir.iterdir())
    except OSError:
        return []
    for path in candidates:
        rest = path.name[len(prefix) :] if path.name.startswith(prefix) else ""
        if path.name != keep and re.fullmatch(f"[0-9a-f]{{{_KEY_CHARS}}}", rest) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# -- load or build ------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "\N{HORIZONTAL ELLIPSIS}"


def _save_entry(value: T, save: Callable[[T, Path], None], folder: Path) -> bool:
    """Save into a sibling ``.tmp<pid>`` folder, add the manifest, rename into place."""
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)  # ours by pid: a leftover of a reused pid
        save(value, tmp)
        write_manifest(tmp)
        os.replace(tmp, folder)
    except (OSError, ValueError):
        # A read-only cache, a full disk, or another process that won the rename.
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True


def load_gguf_cached(
    gguf: Path,
    dtype: str,
    cache_dir: Path,
    *,
    load: Callable[[Path], T],
    convert: Callable[[], T],
    save: Callable[[T, Path], None],
) -> T:
    """Load the de-quantised ``gguf`` from ``cache_dir``, building the entry if needed.

    ``load(folder)`` loads a cached entry, ``convert()`` de-quantises the GGUF
    itself (its errors propagate), ``save(value, folder)`` writes what
    ``convert`` returned into an empty folder (raising OSError or ValueError
    when it cannot). A cached entry that fails its manifest or fails to load is
    removed and rebuilt, with one :class:`ModelCacheWarning` naming it.
    """
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        folder = cache_dir / entry_name(gguf, dtype, gguf_sha256(gguf, cache_dir))
    except OSError:
        return convert()  # no usable cache: the GGUF error, if any, comes from convert
    problem = None
    if folder.is_dir():
        problem = manifest_problem(folder)
        if problem is None:
            try:
                return load(folder)
            except Exception as exc:
                problem = _one_line(exc)
        shutil.rmtree(folder, ignore_errors=True)
    remove_stale_tmp(cache_dir)
    value = convert()
    saved = _save_entry(value, save, folder)
    if saved:
        prune_older(cache_dir, folder.name, gguf, dtype)
    if problem is not None:
        # Another process may have won the rename with an entry of its own.
        if saved or (folder.is_dir() and manifest_problem(folder) is None):
            outcome = f"rebuilt it from {gguf}"
        else:
            outcome = f"loaded {gguf} instead (the cache folder is not writable)"
        warnings.warn(
            ModelCacheWarning(f"model cache {folder} was unreadable ({problem}); {outcome}"),
            stacklevel=2,
        )
    return value
