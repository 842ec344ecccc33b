"""Energy and accuracy of test-time strategies on MMLU, gated in CI.

Run: pytest example_suite --energy-budget --energy-mmlu=PATH/TO/mmlu

Every strategy answers the same seeded, subject-stratified questions, so the
report's energy-accuracy table compares like with like (the paper's test-time
compute comparison): a direct answer, chain-of-thought, chain-of-thought within
an energy budget (controlled reasoning), majority vote over sampled reasoning
paths, and energy-aware routing between a direct answer and chain-of-thought.
"""

import os

import pytest

# The suite's model, as in conftest.py: route's candidates run on it too.
MODEL = os.environ.get("ENERGY_EXAMPLE_MODEL", "smollm2-135m")

STRATEGIES = [
    "direct",
    "cot:max_tokens=48",
    # Controlled reasoning: about 12 J per question on this suite's 2-core CPU runner
    # (joules are hardware-specific: re-tune budgets for your runner).
    "cot:budget_j=12,max_tokens=48",
    "vote:k=3,max_tokens=32",
    # A short id: the model in the spec may be a server's URL.
    pytest.param(
        f"route:candidates={MODEL}/direct+{MODEL}/cot:max_tokens=48,calibration=16",
        id="route:direct+cot",
    ),
]


@pytest.mark.energy(max_j_per_token=0.5, min_accuracy=0.0)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_energy(evaluate, strategy):
    result = evaluate(strategy)
    assert result.questions == 16
    assert result.input_tokens > 0
    assert result.energy_j > 0
    if strategy.startswith(("cot", "vote")):
        # Reasoning generates tokens: the energy the paper says to account for.
        assert result.output_tokens > result.questions


def test_five_shot_prompt_buys_accuracy_with_input_tokens(evaluate):
    """Zero-shot against the budgets file's five-shot prompt, on the same questions."""
    zero = evaluate("direct")
    five = evaluate("direct", prompt="five-shot")
    assert five.input_tokens > 3 * zero.input_tokens
    # The shots of one subject are a shared prefix, computed once per subject.
    assert five.computed_input_tokens < five.input_tokens


def test_cloze_scoring_reads_every_choice(evaluate):
    """Letters against cloze: cloze scores each choice's text, so it reads more tokens."""
    letters = evaluate("direct")
    cloze = evaluate("direct:score=cloze")
    assert cloze.input_tokens > letters.input_tokens
    assert cloze.output_tokens == 0  # nothing is generated


def test_budget_caps_reasoning_tokens(evaluate):
    """Controlled reasoning spends fewer tokens than unbounded chain-of-thought."""
    unbounded = evaluate("cot:max_tokens=48")
    budgeted = evaluate("cot:budget_j=12,max_tokens=48")
    assert budgeted.output_tokens < unbounded.output_tokens
    assert budgeted.invalid == 0  # out of budget, the answer is forced, never wasted


@pytest.mark.energy(max_j_per_question=50)
def test_energy_meter_measures_any_code(energy_meter):
    with energy_meter.window() as w:
        sum(i * i for i in range(2_000_000))
    assert w.energy_j > 0
    assert w.duration_s > 0
