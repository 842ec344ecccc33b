"""Outside text made inert inside a GitHub markdown table cell.

A test id, a model name, a model's answer or an accept reason may contain
anything; in a pull-request comment it must not break the table, start a link
or an image, inject HTML, or notify a user or cross-link an issue.
"""

from __future__ import annotations

import unicodedata

_BACKSLASHED = set("\\`*_[]~")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;"}
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F)}
_WORD_JOINER = "\N{WORD JOINER}"


def escape_md(text: str) -> str:
    """``text`` as inert inline markdown, safe inside a table cell.

    Control characters and line breaks become spaces (a newline would end the
    table row); ``& < > |`` become HTML entities (no tags, no cell breaks);
    ``\\ ` * _ [ ] ~`` are backslash-escaped (no emphasis, code, links or
    images); bidirectional overrides are dropped.

    GitHub also links plain text, so an invisible word joiner breaks what it
    would turn live: after ``@`` (``@someone`` would notify them; ``user@sha``
    links a commit), after ``#`` (``#1``, ``org/repo#2`` would add an event to
    that issue's timeline), after ``GH-`` before a number, inside ``://``
    (bare URLs become links) and between ``www`` and its dot. A bare commit
    SHA is left as it is: it only links a commit of this repository, and
    breaking it would mean splitting every long hexadecimal word.
    """
    # Dropped first, so an override between "GH-" and "12" cannot hide the pair.
    text = "".join(ch for ch in text if ch not in _BIDI)
    out = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in _BACKSLASHED:
            out.append("\\" + ch)
        elif ch in "@#" or _starts_autolink(text, i):
            out.append(ch + _WORD_JOINER)
        else:
            out.append(ch)
    return "".join(out)


def _starts_autolink(text: str, i: int) -> bool:
    """Whether the character at ``i`` ends ``GH-`` (before a digit), is the ``:``
    of ``://`` or the last ``w`` of ``www.``: GitHub would link what follows. (A
    joiner after the dot of ``www.`` is not enough: GFM takes it into the domain.)"""
    ch = text[i]
    if ch == "-":
        return text[max(i - 2, 0) : i].lower() == "gh" and text[i + 1 : i + 2].isdigit()
    if ch == ":":
        return text[i + 1 : i + 3] == "//"
    return ch in "wW" and text[max(i - 2, 0) : i + 2].lower() == "www."
