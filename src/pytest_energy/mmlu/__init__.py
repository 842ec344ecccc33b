"""MMLU questions: the question model, sources to load them from, seeded sampling.

``load_mmlu(source)`` reads any supported source (see :mod:`.sources`) into an
:class:`MMLU`, whose ``sample(n, subjects, seed)`` draws reproducible,
subject-stratified questions (:mod:`.sampling`).
"""

from __future__ import annotations

from pytest_energy.mmlu.questions import (
    CATEGORIES,
    CATEGORY_NAMES,
    Category,
    Question,
    question_set_id,
)
from pytest_energy.mmlu.sampling import MMLU
from pytest_energy.mmlu.sources import load_mmlu, load_shots

__all__ = [
    "CATEGORIES",
    "CATEGORY_NAMES",
    "MMLU",
    "Category",
    "Question",
    "load_mmlu",
    "load_shots",
    "question_set_id",
]
