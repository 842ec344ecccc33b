"""Energy and accuracy of test-time strategies on MMLU, gated in CI.

Run: pytest example_suite --energy-budget --energy-mmlu PATH/TO/mmlu
"""

import pytest


@pytest.mark.energy(max_j_per_token=0.5, min_accuracy=0.0)
@pytest.mark.parametrize(
    "strategy",
    [
        "direct",
        "cot:max_tokens=48",
        "vote:k=3,max_tokens=32",
    ],
)
def test_strategy_energy(evaluate, strategy):
    result = evaluate(strategy)
    # Every question was answered and accounted for.
    assert result.questions == 16
    assert result.input_tokens > 0
    assert result.energy_j > 0
    # Chain-of-thought costs more per question than a direct answer: the paper's point.
    if strategy != "direct":
        assert result.output_tokens > result.questions


@pytest.mark.energy(max_j_per_question=50)
def test_energy_meter_measures_any_code(energy_meter):
    with energy_meter.window() as w:
        sum(i * i for i in range(2_000_000))
    assert w.energy_j > 0
    assert w.duration_s > 0
