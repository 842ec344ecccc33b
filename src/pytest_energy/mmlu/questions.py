"""The question model: one MMLU question, its subject's category, a question set's identity."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Category = Literal["stem", "humanities", "social_sciences", "other"]

# The grouping of Hendrycks et al. (2021), as in their categories.py.
_GROUPS: dict[Category, str] = {
    "stem": """abstract_algebra astronomy college_biology college_chemistry
        college_computer_science college_mathematics college_physics computer_security
        conceptual_physics electrical_engineering elementary_mathematics high_school_biology
        high_school_chemistry high_school_computer_science high_school_mathematics
        high_school_physics high_school_statistics machine_learning""",
    "humanities": """formal_logic high_school_european_history high_school_us_history
        high_school_world_history international_law jurisprudence logical_fallacies
        moral_disputes moral_scenarios philosophy prehistory professional_law world_religions""",
    "social_sciences": """econometrics high_school_geography
        high_school_government_and_politics high_school_macroeconomics
        high_school_microeconomics high_school_psychology human_sexuality
        professional_psychology public_relations security_studies sociology
        us_foreign_policy""",
    "other": """anatomy business_ethics clinical_knowledge college_medicine global_facts
        human_aging management marketing medical_genetics miscellaneous nutrition
        professional_accounting professional_medicine virology""",
}

CATEGORIES: Mapping[str, Category] = MappingProxyType(
    {subject: category for category, names in _GROUPS.items() for subject in names.split()}
)
"""Every one of the 57 MMLU subjects mapped to its category."""

CATEGORY_NAMES: tuple[Category, ...] = tuple(_GROUPS)


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; ``source`` is ``FILE:LINE`` (or record number)."""

    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: str
    source: str

    @property
    def category(self) -> Category | None:
        """The MMLU category of the subject, or None for a subject outside MMLU."""
        return CATEGORIES.get(self.subject)


def question_set_id(questions: Sequence[Question]) -> str:
    """The identity of the questions asked, in order (16 hex digits of a SHA-256).

    Equal ids mean the same questions in the same order, so the gate knows a
    comparison is like for like. Baselines and results store it as is.
    """
    digest = hashlib.sha256()
    for q in questions:
        digest.update(f"{q.subject}\x1f{q.question}\x1f{q.answer}\x1e".encode())
    return digest.hexdigest()[:16]
