"""Backends: what runs the model, behind the one protocol the strategies call.

A strategy never knows which backend runs it, and a backend never knows which
strategy asked. Three backends implement :class:`Backend`, and
:func:`open_backend` picks one from the model spec:

* the in-process transformers engine (:class:`pytest_energy.engine.Engine`,
  the embedded default: a Hugging Face id, a folder, a ``.gguf`` file or the
  alias ``smollm2-135m``);
* a served model (:class:`pytest_energy.backends.openai.OpenAIBackend`): a
  model spec that is the URL of an OpenAI-compatible API,
  ``http(s)://HOST:PORT/v1[#NAME]`` (vLLM, SGLang, TGI, llama.cpp,
  llama-cpp-python). It needs ``pip install 'pytest-energy[served]'`` (httpx);
* in-process vLLM (:class:`pytest_energy.backends.vllm.VllmBackend`): a model
  spec ``vllm:ID_OR_PATH``, where ``ID_OR_PATH`` is a local spec as above. It
  needs ``pip install 'pytest-energy[vllm]'`` and a CUDA device.

Importing this package imports neither torch, httpx nor vllm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pytest_energy.backends.server import is_served
from pytest_energy.errors import ModelError
from pytest_energy.models import ModelSpec, resolve_model

if TYPE_CHECKING:
    from pytest_energy.engine import Engine
    from pytest_energy.engine_results import ChoiceScores, Force, Generated, Ledger, Scored
    from pytest_energy.meters.base import EnergyMeter
    from pytest_energy.settings import Settings


class Backend(Protocol):
    """What strategies, the prompt renderer and calibration call on a model.

    - ``spec.label`` names the model in results and routing.
    - ``meter`` is the session's meter; each call below measures its own phase
      windows on it and adds them to the ``ledger`` (``prefill`` for scoring,
      ``decode`` for generation), accounting the tokens it processed.
    - ``sync`` is called around meter readings (CUDA synchronisation in
      process; None for a served model).
    - ``has_chat_template`` and ``tokenizer.apply_chat_template`` render chat
      prompts; ``count_tokens`` counts a text's tokens (budgets, routing).
    - ``fingerprint()`` describes the software that ran the model (model,
      backend, versions) for baselines.
    - ``score``: the log-probability of each candidate's first token as the next
      token of each prompt (:class:`~pytest_energy.engine_results.Scored`).
    - ``score_choices``: the summed log-probability of each continuation's tokens
      after its prompt, with token and character counts (cloze scoring).
    - ``generate``: ``samples`` continuations per prompt of up to
      ``max_new_tokens`` tokens (one limit or one per prompt), greedy at
      temperature 0, seeded otherwise; with ``force``, a sample that runs out of
      tokens is given the cue and its candidates are scored; a ``stop`` string
      ends a sample once its text contains it.

    Every result carries ``input_tokens`` (what the prompt conditioned on) and
    ``computed_input_tokens`` (prompt tokens really computed for it).
    """

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def meter(self) -> EnergyMeter: ...

    @property
    def sync(self) -> Callable[[], None] | None: ...

    @property
    def has_chat_template(self) -> bool: ...

    @property
    def forced_answer_recomputes(self) -> bool:
        """Whether a forced answer (``generate(force=...)``) computes its context again:
        a request of its own to a server that may not reuse what it computed for
        the reasoning. Controlled reasoning budgets that second prefill."""
        ...

    @property
    def tokenizer(self) -> Any: ...

    def count_tokens(self, text: str) -> int: ...

    def fingerprint(self) -> dict[str, str]: ...

    def score(
        self, prompts: Sequence[str], candidates: Sequence[str], ledger: Ledger
    ) -> list[Scored]: ...

    def score_choices(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]], ledger: Ledger
    ) -> list[ChoiceScores]: ...

    def generate(
        self,
        prompts: Sequence[str],
        ledger: Ledger,
        *,
        max_new_tokens: int | Sequence[int],
        samples: int = 1,
        temperature: float = 0.0,
        seed: int = 0,
        stop_at_eos: bool = True,
        force: Force | None = None,
        stop: Sequence[str] = (),
    ) -> list[Generated]: ...


VLLM_PREFIX = "vllm:"


def is_vllm(model: str) -> bool:
    """Whether a model spec (or a resolved spec's label) names the in-process vLLM backend."""
    return model.strip().lower().startswith(VLLM_PREFIX)


def model_spec(model: str, rootdir: Path | None) -> ModelSpec:
    """The spec of a served model (its URL as given: the session's key), of a vLLM
    one (``vllm:ID_OR_PATH``, resolved like a local model and labelled
    ``vllm:<its label>``) or of a local one
    (:func:`~pytest_energy.models.resolve_model`)."""
    if is_served(model):
        return ModelSpec(label=model.strip(), location=model.strip())
    if is_vllm(model):
        inner = model.strip()[len(VLLM_PREFIX) :].strip()
        if not inner or is_vllm(inner) or is_served(inner):
            raise ModelError(
                f"model spec {model.strip()!r} names no local model; give vllm:ID_OR_PATH "
                "(a Hugging Face id, a folder or smollm2-135m)"
            )
        spec = resolve_model(inner, rootdir=rootdir)
        return ModelSpec(VLLM_PREFIX + spec.label, spec.location, spec.gguf_file)
    return resolve_model(model, rootdir=rootdir)


def open_backend(
    spec: ModelSpec, settings: Settings, meter: EnergyMeter, device: Callable[[], str]
) -> Backend:
    """Open the backend that runs ``spec`` (from :func:`model_spec`): served, vLLM
    or the transformers engine, with the session's settings and meter.
    ``device()`` gives the session's device; it is only asked for by the
    in-process backends (it imports torch).
    """
    if is_served(spec.location):
        return open_served(spec, settings, meter)
    if is_vllm(spec.label):
        from pytest_energy.backends.vllm import VllmBackend

        return VllmBackend.load(
            spec, meter=meter, device=device(), dtype=settings.dtype, cache_dir=settings.cache_dir
        )
    from pytest_energy.engine import Engine

    return Engine.load(
        spec,
        device=device(),
        meter=meter,
        batch_size=settings.batch_size,
        cache_dir=settings.cache_dir,
        dtype=settings.dtype,
    )


def open_served(spec: ModelSpec, settings: Settings, meter: EnergyMeter) -> Backend:
    """Connect to the served model ``spec`` with the session's settings and meter."""
    from pytest_energy.backends.openai import OpenAIBackend

    return OpenAIBackend.connect(
        spec.location,
        meter=meter,
        concurrency=settings.concurrency,
        timeout_s=settings.request_timeout_s,
        rootdir=settings.rootdir,
    )


if TYPE_CHECKING:
    from pytest_energy.backends.openai import OpenAIBackend
    from pytest_energy.backends.vllm import VllmBackend

    # Checked by mypy: every backend satisfies the protocol.
    def _engine_is_a_backend(engine: Engine) -> Backend:
        return engine

    def _served_is_a_backend(backend: OpenAIBackend) -> Backend:
        return backend

    def _vllm_is_a_backend(backend: VllmBackend) -> Backend:
        return backend


__all__ = [
    "VLLM_PREFIX",
    "Backend",
    "is_served",
    "is_vllm",
    "model_spec",
    "open_backend",
    "open_served",
]
