"""The in-process vLLM backend on the GPU: SmolLM2 through ``vllm:smollm2-135m``.

Real MMLU rows, the real model, the nvml meter; the transformers engine in the
same session is the reference. Both run float32 (vLLM loads the engine's
de-quantised copy of the GGUF, so the weights are the same). Skipped without a
CUDA device (``conftest.py``) or without vllm (``pip install 'pytest-energy[vllm]'``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from factories import assert_same_letters

pytestmark = [
    pytest.mark.skipif(
        find_spec("vllm") is None,
        reason="vllm is not installed (pip install 'pytest-energy[vllm]')",
    ),
    # vLLM and its dependencies warn about their own deprecations at import and start.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

MODEL = "smollm2-135m"
VLLM_MODEL = f"vllm:{MODEL}"
QUESTIONS = 16
# A flip between the backends is a near tie when the engine's two best letters are
# closer than this (nats): both run float32, but vLLM's kernels (attention, fused
# norms) sum in another order than the engine's.
NEAR_TIE = 0.05
COT_TOKENS = 32


@pytest.fixture(scope="module")
def session() -> Iterator[Any]:
    from pytest_energy.session import EnergySession
    from pytest_energy.settings import Settings

    mmlu = os.environ.get("PYTEST_ENERGY_TEST_MMLU") or str(
        Path(__file__).resolve().parents[3] / "shared" / "mmlu"
    )
    settings = Settings(
        enabled=True,
        meter="nvml",
        mmlu=mmlu,
        device="cuda:0",
        dtype="float32",
        repeats=1,
        rootdir=Path.cwd(),
    )
    session = EnergySession(settings, writes_files=False)
    try:
        yield session
    finally:
        session.close()


def test_vllm_and_the_transformers_engine_pick_the_same_letters(session: Any) -> None:
    from pytest_energy.backends.vllm import VllmBackend
    from pytest_energy.engine import Ledger
    from pytest_energy.strategies.direct import LETTER_CANDIDATES

    served, engine = session.engine(VLLM_MODEL), session.engine(MODEL)
    assert isinstance(served, VllmBackend)
    questions = session.mmlu.sample(QUESTIONS, seed=0)
    renderer = session.renderer(None)
    prompts = [renderer.direct(served, q) for q in questions]
    assert prompts == [renderer.direct(engine, q) for q in questions]

    there = served.score(prompts, LETTER_CANDIDATES, Ledger())
    here = engine.score(prompts, LETTER_CANDIDATES, Ledger())

    assert [s.input_tokens for s in there] == [s.input_tokens for s in here]
    assert_same_letters(questions, there, here, ("vllm", "transformers"), NEAR_TIE, QUESTIONS // 8)


def test_direct_through_vllm_is_measured_with_the_prompts_tokens(session: Any) -> None:
    result = session.evaluate(
        VLLM_MODEL, "direct", n=8, subjects=None, seed=0, generation={}, test_id="direct"
    )
    engine = session.engine(VLLM_MODEL)
    renderer = session.renderer(None)
    questions = session.mmlu.sample(8, None, 0)

    assert result.model == VLLM_MODEL
    assert result.fingerprint["backend"] == "vllm"
    assert result.fingerprint["meter"] == "nvml"
    assert [r.input_tokens for r in result.records] == [
        engine.count_tokens(renderer.direct(engine, q)) for q in questions
    ]
    assert result.output_tokens == 8
    assert all(r.predicted is not None for r in result.records)
    assert result.energy_j > 0
    assert (result.j_per_token or 0.0) > 0


def test_cot_through_vllm_is_measured_within_its_token_limit(session: Any) -> None:
    result = session.evaluate(
        VLLM_MODEL,
        f"cot:max_tokens={COT_TOKENS}",
        n=4,
        subjects=None,
        seed=0,
        generation={},
        test_id="cot",
    )
    backend = session.engine(VLLM_MODEL)
    renderer = session.renderer(None)
    questions = session.mmlu.sample(4, None, 0)

    assert [r.input_tokens for r in result.records] == [
        backend.count_tokens(renderer.cot(backend, q)) for q in questions
    ]
    assert all(0 < r.output_tokens <= COT_TOKENS for r in result.records)
    assert result.decode_j > 0
    assert result.fingerprint["backend"] == "vllm"


def test_generated_tokens_are_the_ones_vllm_returned(
    session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cot and vote:k=3 straight through the backend, every RequestOutput recorded."""
    from pytest_energy.engine import Ledger

    backend = session.engine(VLLM_MODEL)
    renderer = session.renderer(None)
    questions = session.mmlu.sample(4, None, 0)
    prompts = [renderer.cot(backend, q) for q in questions]
    returned: list[Any] = []
    generate = backend.llm.generate

    def recording(*args: Any, **kwargs: Any) -> Any:
        outputs = generate(*args, **kwargs)
        returned.extend(outputs)
        return outputs

    monkeypatch.setattr(backend.llm, "generate", recording)
    cot = backend.generate(prompts, Ledger(), max_new_tokens=COT_TOKENS)
    assert len(returned) == len(prompts)
    assert [g.input_tokens for g in cot] == [len(backend.ids(p)) for p in prompts]
    assert [g.input_tokens for g in cot] == [len(o.prompt_token_ids) for o in returned]
    assert [g.samples[0].output_tokens for g in cot] == [
        len(o.outputs[0].token_ids) for o in returned
    ]
    assert [g.computed_input_tokens for g in cot] == [
        len(o.prompt_token_ids) - (o.num_cached_tokens or 0) for o in returned
    ]
    # The same prompts ran in the evaluation before: prefix caching is on.
    assert any(g.computed_input_tokens < g.input_tokens for g in cot)

    returned.clear()
    vote = backend.generate(prompts[:2], Ledger(), max_new_tokens=16, samples=3, temperature=0.7)
    assert len(returned) == 2  # one request with n=3 per prompt
    for g, output in zip(vote, returned, strict=True):
        ordered = sorted(output.outputs, key=lambda s: s.index)
        assert [s.output_tokens for s in g.samples] == [len(s.token_ids) for s in ordered]
        assert [s.text for s in g.samples] == [s.text for s in ordered]
