"""The decode loop's bookkeeping: stop tokens, stop strings, limits (no model)."""

from __future__ import annotations

import pytest

from pytest_energy.decoding import DecodeState

# A toy vocabulary: one character per token id.
VOCAB = {1: "a", 2: "b", 3: "\n", 4: "c", 9: "<eos>"}


def decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids)


def run(state: DecodeState, tokens: list[int], limit: int) -> list[int]:
    """Feed ``tokens`` to one row until it leaves the batch; return what it kept."""
    for token in tokens:
        _, keep = state.step([0], [token], None, [limit], {9}, [], [])
        if not keep:
            break
    return state.tokens[0]


@pytest.mark.parametrize(
    ("stops", "tokens", "kept", "stopped"),
    [
        ((), [1, 2, 3, 3, 4], [1, 2, 3, 3, 4], False),  # only the limit ends it
        (("\n\n",), [1, 2, 3, 3, 4], [1, 2, 3, 3], True),  # spans two tokens
        (("\n",), [1, 3, 2], [1, 3], True),
        (("zz",), [1, 2, 9, 4], [1, 2, 9], True),  # the end-of-sequence token still stops
    ],
)
def test_a_row_stops_at_a_stop_string_in_its_text(
    stops: tuple[str, ...], tokens: list[int], kept: list[int], stopped: bool
) -> None:
    state = DecodeState(1, cue_at=[-1], stop_strings=stops, decode=decode)
    assert run(state, tokens, limit=5) == kept
    assert state.stopped[0] is stopped


def test_stop_strings_without_a_decoder_are_refused() -> None:
    with pytest.raises(ValueError, match="decode"):
        DecodeState(1, cue_at=[-1], stop_strings=("\n",))
