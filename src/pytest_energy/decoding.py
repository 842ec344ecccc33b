"""Per-row bookkeeping of the engine's decode loop (pure Python, no torch).

Each row generates until it emits a stop token, its text contains one of the
prompt's stop strings, or it reaches its own token limit.
With a forcing cue, a row at its limit is not dropped: the cue's tokens are fed
one per step through its KV cache, and the candidates' log-probabilities after
the cue become its forced answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# Stop strings are looked for in the decoded tail of a row: this many tokens more
# than the longest stop string has characters (a token is at least one character,
# bar the odd byte-level piece).
STOP_TAIL_SLACK = 4


class DecodeState:
    """Per-row bookkeeping of the decode loop: tokens, stop, forced-answer progress."""

    def __init__(
        self,
        rows: int,
        cue_at: list[int],
        stop_strings: Sequence[str] = (),
        decode: Callable[[list[int]], str] | None = None,
    ) -> None:
        if stop_strings and decode is None:
            raise ValueError("stop strings need a decode function")
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.stop_strings = tuple(s for s in stop_strings if s)
        self._decode = decode
        self._tail = max((len(s) for s in self.stop_strings), default=0) + STOP_TAIL_SLACK
        self.stopped = [False] * rows
        self.forced: list[tuple[float, ...] | None] = [None] * rows
        # -1: generating; k >= 0: the next cue token to feed (forcing an answer)
        self.cue_at = cue_at

    def output_tokens(self, row: int, cue: list[int]) -> int:
        return len(self.tokens[row]) + (len(cue) + 1 if self.forced[row] is not None else 0)

    def step(
        self,
        active: list[int],
        picked: list[int],
        logits: Any,
        limit: list[int],
        stop: set[int],
        cue: list[int],
        candidates: list[int],
    ) -> tuple[list[int], list[int]]:
        """Advance every active row by one token; return the tokens to feed and the
        positions (in ``active``) of the rows that stay in the batch."""
        feed: list[int] = []
        keep: list[int] = []
        for j, r in enumerate(active):
            if self.cue_at[r] >= 0:
                if self.cue_at[r] == len(cue):  # these logits follow the whole cue
                    row = logits[j].float().log_softmax(dim=-1)
                    self.forced[r] = tuple(float(row[c]) for c in candidates)
                    continue
                feed.append(cue[self.cue_at[r]])
                self.cue_at[r] += 1
                keep.append(j)
                continue
            token = picked[j]
            self.tokens[r].append(token)
            if token in stop or self._stop_string(r):
                self.stopped[r] = True
                continue
            if len(self.tokens[r]) >= limit[r]:
                if not cue:
                    continue
                self.cue_at[r] = 0
            feed.append(token)
            keep.append(j)
        return feed, keep

    def _stop_string(self, row: int) -> bool:
        """Whether the row's text now ends a generation: a stop string in its tail."""
        if not self.stop_strings or self._decode is None:
            return False
        tail = self._decode(self.tokens[row][-self._tail :])
        return any(s in tail for s in self.stop_strings)
