"""pytest-energy: energy per token as a first-class test result for language models."""

from __future__ import annotations

from pytest_energy.prompts import Prompt

__version__ = "0.1.0"
__all__ = ["Prompt", "__version__"]
