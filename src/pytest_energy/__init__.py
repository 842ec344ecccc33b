"""pytest-energy: energy per token as a first-class test result for language models."""

from __future__ import annotations

__version__ = "0.1.0"
