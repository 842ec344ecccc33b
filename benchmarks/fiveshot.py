"""The 5-shot case of the engine benchmark (``benchmarks/engine.py --only fiveshot``).

MMLU 5-shot prompts as the library renders them: the built-in ``mmlu-5shot``
prompt (header, the subject's first five ``dev/`` rows with their answers, then
the question) through :class:`~pytest_energy.rendering.Renderer`, so the case
measures what a test with ``prompt="mmlu-5shot"`` puts to the model. It compares
the engine with shared prefixes against the engine with sharing off and against
naive loops over the same full prompts, in one run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from pytest_energy.engine import Engine, Ledger
from pytest_energy.mmlu import Question, load_mmlu
from pytest_energy.prompts import resolve_prompt
from pytest_energy.rendering import ShotBook
from pytest_energy.strategies.direct import LETTER_CANDIDATES

# One subject from each MMLU category, with 5-shot prefixes of 250 to 300 tokens.
FIVESHOT_SUBJECTS = ("anatomy", "high_school_macroeconomics", "philosophy", "virology")
FIVESHOT_TARGETS = {"direct": 3.0, "cot": 4.0}


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def spread(questions: list[Question], n: int) -> list[Question]:
    """Every k-th question, n of them: a subset stratified like the ordered sample."""
    return questions[:: max(1, len(questions) // n)][:n]


def fiveshot(
    engine: Engine,
    folder: str,
    subjects: list[str],
    per_subject: int,
    naive_questions: int,
    cot_tokens: int,
) -> dict[str, Any]:
    """5-shot direct and CoT: shared prefixes against sharing off and naive loops."""
    mmlu = load_mmlu(folder)
    questions = [q for s in subjects for q in mmlu.sample(per_subject, subjects=s, seed=0)]
    renderer = ShotBook(folder, Path.cwd()).renderer(resolve_prompt("mmlu-5shot", {}))
    renderer.check_shots(questions)
    subset = spread(questions, naive_questions)
    direct = [renderer.direct(engine, q) for q in questions]
    cot = [renderer.cot(engine, q) for q in questions]
    naive_direct_prompts = [direct[questions.index(q)] for q in subset]
    naive_cot_prompts = [cot[questions.index(q)] for q in subset]
    out: dict[str, Any] = {
        "subjects": subjects,
        "questions": len(questions),
        "naive_questions": len(subset),
        "dtype": str(engine.model.dtype),
        "batch_size": engine.batch_size,
    }

    def score(share: bool) -> tuple[float, list[Any]]:
        engine.share_prefixes = share
        try:
            return timed(lambda: engine.score(direct, LETTER_CANDIDATES, Ledger()))
        finally:
            engine.share_prefixes = True

    naive_s, naive_answers = timed(lambda: naive_score(engine, naive_direct_prompts))
    shared_s, shared = score(True)
    full_s, full = score(False)
    picked = ["ABCD"[max(range(4), key=r.logprobs.__getitem__)] for r in shared]
    naive_qps, shared_qps, full_qps = (
        len(subset) / naive_s,
        len(questions) / shared_s,
        len(questions) / full_s,
    )
    out["direct"] = {
        "naive_qps": naive_qps,
        "engine_unshared_qps": full_qps,
        "engine_shared_qps": shared_qps,
        "speedup_vs_naive": shared_qps / naive_qps,
        "speedup_vs_unshared": shared_qps / full_qps,
        "unshared_speedup_vs_naive": full_qps / naive_qps,
        "computed_over_input_tokens": sum(r.computed_input_tokens for r in shared)
        / sum(r.input_tokens for r in shared),
        "input_tokens_per_question": sum(r.input_tokens for r in shared) / len(shared),
        "answers_agree_with_unshared": sum(
            a == "ABCD"[max(range(4), key=r.logprobs.__getitem__)]
            for a, r in zip(picked, full, strict=True)
        )
        / len(questions),
        "answers_agree_with_naive": sum(
            a == picked[questions.index(q)] for q, a in zip(subset, naive_answers, strict=True)
        )
        / len(subset),
        "accuracy": sum(a == q.answer for a, q in zip(picked, questions, strict=True))
        / len(questions),
        "target_vs_naive": FIVESHOT_TARGETS["direct"],
        "target_met": shared_qps / naive_qps >= FIVESHOT_TARGETS["direct"],
    }
    d = out["direct"]
    print(
        f"5-shot direct  shared {shared_qps:7.3f} q/s  unshared {full_qps:7.3f} q/s  "
        f"naive {naive_qps:7.3f} q/s  speedup {d['speedup_vs_naive']:5.2f}x naive, "
        f"{d['speedup_vs_unshared']:5.2f}x unshared  computed/input "
        f"{d['computed_over_input_tokens']:.3f}  target >= {FIVESHOT_TARGETS['direct']:.0f}x "
        f"{'met' if d['target_met'] else 'NOT met'}",
        flush=True,
    )

    naive_s, naive_texts = timed(
        lambda: naive_generate_prompts(engine, naive_cot_prompts, cot_tokens)
    )
    shared_s, generated = timed(lambda: engine.generate(cot, Ledger(), max_new_tokens=cot_tokens))
    texts = [g.samples[0].text for g in generated]
    naive_qps, shared_qps = len(subset) / naive_s, len(questions) / shared_s
    out["cot"] = {
        "max_new_tokens": cot_tokens,
        "naive_qps": naive_qps,
        "engine_shared_qps": shared_qps,
        "speedup_vs_naive": shared_qps / naive_qps,
        "computed_over_input_tokens": sum(g.computed_input_tokens for g in generated)
        / sum(g.input_tokens for g in generated),
        "output_tokens_per_question": sum(g.samples[0].output_tokens for g in generated)
        / len(generated),
        "texts_equal_to_naive": sum(
            t == texts[questions.index(q)] for q, t in zip(subset, naive_texts, strict=True)
        )
        / len(subset),
        "target_vs_naive": FIVESHOT_TARGETS["cot"],
        "target_met": shared_qps / naive_qps >= FIVESHOT_TARGETS["cot"],
    }
    c = out["cot"]
    print(
        f"5-shot cot:{cot_tokens}  shared {shared_qps:7.3f} q/s  naive {naive_qps:7.3f} q/s  "
        f"speedup {c['speedup_vs_naive']:5.2f}x naive  computed/input "
        f"{c['computed_over_input_tokens']:.3f}  texts equal to naive "
        f"{c['texts_equal_to_naive']:.0%}  target >= {FIVESHOT_TARGETS['cot']:.0f}x "
        f"{'met' if c['target_met'] else 'NOT met'}",
        flush=True,
    )
    return out


def naive_score(engine: Engine, prompts: list[str]) -> list[str]:
    """Letter scoring one full prompt at a time, as plain transformers code would."""
    model, tok = engine.model, engine.tokenizer
    ids = [tok(c, add_special_tokens=False)["input_ids"][0] for c in LETTER_CANDIDATES]
    answers = []
    for prompt in prompts:
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            logits = model(**enc).logits[0, -1]
        answers.append("ABCD"[int(torch.stack([logits[i] for i in ids]).argmax())])
    return answers


def naive_generate_prompts(engine: Engine, prompts: list[str], max_tokens: int) -> list[str]:
    """Greedy ``model.generate`` one full prompt at a time; the generated texts."""
    model, tok = engine.model, engine.tokenizer
    texts = []
    for prompt in prompts:
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
        texts.append(tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))
    return texts
