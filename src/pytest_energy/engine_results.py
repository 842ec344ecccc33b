"""What the engine returns: the ledger of an evaluation's energy, and per-prompt results.

Token counts follow :mod:`pytest_energy.engine`: ``input_tokens`` is what a
prompt conditioned on, ``computed_input_tokens`` what the model ran for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_energy.meters.base import Window


@dataclass
class Ledger:
    """Energy and time an evaluation spent, filled in by the engine's windows.

    ``details`` holds what a strategy wants reported beside the metrics
    (budgets per question, routing decisions).
    """

    prefill_j: float = 0.0
    decode_j: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    short_windows: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def energy_j(self) -> float:
        return self.prefill_j + self.decode_j

    def add(self, phase: str, window: Window) -> None:
        if phase == "prefill":
            self.prefill_j += window.energy_j
            self.prefill_s += window.duration_s
        else:
            self.decode_j += window.energy_j
            self.decode_s += window.duration_s
        self.short_windows += window.short


@dataclass(frozen=True)
class Generation:
    """One generated continuation."""

    text: str
    output_tokens: int  # generated tokens, plus the cue and answer token when forced
    stopped: bool  # reached a stop token (false: ran out of max_new_tokens)
    forced: tuple[float, ...] | None = None  # candidates' log-probabilities after the cue


@dataclass(frozen=True)
class Force:
    """Force an answer where the token limit runs out: feed ``cue``, score ``candidates``."""

    cue: str
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class Generated:
    """The continuations of one prompt, and the prompt tokens computed for it."""

    input_tokens: int
    computed_input_tokens: int
    samples: tuple[Generation, ...]


@dataclass(frozen=True)
class Scored:
    """Log-probabilities of each candidate continuation's first token after a prompt."""

    input_tokens: int
    computed_input_tokens: int
    logprobs: tuple[float, ...]


@dataclass(frozen=True)
class ChoiceScores:
    """Log-likelihood of each choice's full text after a prompt (cloze scoring).

    ``logprobs[j]`` sums the log-probabilities of choice j's ``tokens[j]`` tokens;
    ``chars[j]`` is its length in characters, so callers can normalise per token
    or per character. ``input_tokens`` is the prompt's tokens plus every choice's
    tokens (each counted once); ``computed_input_tokens`` is what the model ran
    for this prompt: its suffix after a shared prefix (the prefix itself for the
    group's first prompt), plus each choice's tokens but its last (the last
    token's successor is never needed). Nothing is generated.
    """

    input_tokens: int
    computed_input_tokens: int
    logprobs: tuple[float, ...]
    tokens: tuple[int, ...]
    chars: tuple[int, ...]


__all__ = ["ChoiceScores", "Force", "Generated", "Generation", "Ledger", "Scored"]
