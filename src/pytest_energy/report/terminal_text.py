"""Outside text made inert and fitted to terminal cells.

A test id, a model name or a reason may contain anything, and may be wider than
the column it goes in. :func:`clean` makes terminal control visible;
:func:`short_names`, :func:`shorten` and :func:`wrap_words` fit it to a width
in cells (a wide character takes two), breaking at words rather than
abbreviating. Plain strings in, plain strings out: no rich objects here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from rich.cells import cell_len

# Where a test id may be shortened: between the words of its name and its path.
_SEPARATORS = re.compile(r"([\s_/.:\[\],-]+)")
_ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def clean(text: str) -> str:
    """``text`` without terminal control: control characters become visible escapes."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif category in ("Cc", "Zl", "Zp") or (category == "Cf" and ch not in "\u200d"):
            out.append(f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def short_names(test_ids: Sequence[str]) -> list[str]:
    """Test ids without their ``path::`` part when the rest is still unique, else whole.

    The table is for reading at a glance; the lines under it, and pytest's own
    summary, carry the full ids.
    """
    short = [test_id.rpartition("::")[2] or test_id for test_id in test_ids]
    return short if len(set(short)) == len(set(test_ids)) else list(test_ids)


def shorten(name: str, width: int) -> str:
    """``name`` in at most ``width`` cells: whole words around an ellipsis.

    Words are what separators (``_ / . : [ ] , -`` and spaces) delimit, and are
    kept or dropped whole. A parametrized name keeps its whole parameter part,
    which is what tells its tests apart, and as much of the function name around
    an ellipsis as fits (``test_…point[vote:k=5]``, ``…point[vote:k=5]``); when
    the parameter part alone is too wide, it keeps that part's first and last
    words (``…[route:…calibration=16]``), or else as many of its last words as
    fit. Any other name keeps its last word and the most letters of the rest
    (``…reasoning_tokens``; a leading ``test`` counts for none). Only a last word
    wider than ``width`` is cut, keeping its end.
    """
    if cell_len(name) <= width:
        return name
    if width <= 1:
        return _ELLIPSIS[:width]
    cut = name.find("[", 1)
    if name.endswith("]") and cut > 0:
        head, inner = name[:cut], name[cut + 1 : -1]
        kept = _elide(head, width - cell_len(inner) - 2, keep_last=False, keep_first=False)
        if kept is not None:
            return f"{kept}[{inner}]"
        kept = _elide(inner, width - 3, keep_last=True, keep_first=True)
        if kept is not None:
            return f"{_ELLIPSIS}[{kept}]"
    kept = _elide(name, width, keep_last=True, keep_first=False, suffix=cut > 0)
    if kept is not None:
        return kept
    tail = name
    while cell_len(tail) > width - 1:
        tail = tail[1:]
    return _ELLIPSIS + tail


def _elide(
    text: str, width: int, *, keep_last: bool, keep_first: bool, suffix: bool = False
) -> str | None:
    """``text`` with words from its middle (or, ``suffix``, its start) replaced by an
    ellipsis, at most ``width`` cells, keeping the most letters, then the most of
    the start; None if none fits."""
    tokens = _SEPARATORS.split(text)  # word, separator, word, ..., word (words may be "")
    words = tokens[::2]
    count = len(words)
    last = max((k for k, word in enumerate(words) if word), default=count - 1)
    best, best_score = None, (-1, -1)
    for start in range(1 if keep_first else 0, 1 if suffix else count):
        head = "".join(tokens[: 2 * start])
        skip = 4 if start and words[0].lower() == "test" else 0
        for end in range(count - start):
            first_kept = count - end
            if keep_last and first_kept > last:
                continue
            tail = "".join(tokens[2 * first_kept - 1 :]) if end else ""
            candidate = head + _ELLIPSIS + tail.lstrip(" _/.:,-")
            if cell_len(candidate) > width:
                break
            score = (sum(map(len, words[:start] + words[first_kept:])) - skip, start)
            if score > best_score:
                best, best_score = candidate, score
    return best


def wrap_words(text: str, width: int, *, indent: int = 2, breaks: str = "") -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` cells, the later lines
    indented by ``indent``; a word wider than a line is split after one of ``breaks``
    where it has one, else where it must."""
    width = max(width, indent + 1)
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if line and cell_len(line) + 1 + cell_len(word) <= width:
            line += " " + word
            continue
        if line:
            lines.append(line)
        line = " " * indent + word if lines else word
        while cell_len(line) > width:
            head = _cut(line, width)
            at = max(head.rfind(ch) for ch in breaks) if breaks else -1
            if at >= len(head) - len(head.lstrip(" ")):
                head = head[: at + 1]
            lines.append(head)
            line = " " * indent + line[len(head) :]
    lines.append(line)
    return lines


def _cut(text: str, width: int) -> str:
    """The longest start of ``text`` at most ``width`` cells wide (one character at least)."""
    used = 0
    for i, ch in enumerate(text):
        used += cell_len(ch)
        if used > width:
            return text[: max(i, 1)]
    return text
