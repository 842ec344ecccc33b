"""The prompt under test: :class:`Prompt`, its validation, rendering and fingerprint.

A prompt is the user's. Its defaults are the evaluation-harness layout the
plugin always used (token for token on a chat model)::

    The following are multiple choice questions (with answers) about anatomy.

    Which of these ...?
    A. ...
    B. ...
    C. ...
    D. ...

then ``Answer:``, which opens the assistant turn under a chat template. Few-shot
examples (``shots``) come before the question in the same layout, each followed
by ``Answer: X`` and a blank line (or, with ``multiturn``, as user/assistant
turns). Named prompts live under ``prompts:`` in the budgets file; ``default``
and ``mmlu-5shot`` are built in.

The fingerprint of a prompt hashes what the model sees: every resolved field,
the shot rows used and :data:`RENDER_VERSION`, never the prompt's name, so a
renamed but identical prompt compares as unchanged and an edit under the same
name is seen.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_energy.errors import ConfigError

# Bumped whenever rendering changes what the model sees for the same fields.
RENDER_VERSION = 1
DEFAULT_HEADER = "The following are multiple choice questions (with answers) about {subject}.\n\n"
DEFAULT_COT_INSTRUCTION = (
    'Think step by step, then finish with "The answer is (X)" where X is A, B, C or D.'
)
# Controlled reasoning forces an answer after the token budget with this cue.
FORCED_ANSWER_CUE = "\nThe answer is ("

ChatMode = Literal["auto", "true", "false"]
_PLACEHOLDERS = {
    "system": frozenset({"subject"}),
    "header": frozenset({"subject"}),
    "template": frozenset({"question", "choices", "subject"}),
    "choice_format": frozenset({"letter", "text"}),
}


@dataclass(frozen=True)
class Prompt:
    """How a question is put to the model (see the module docstring).

    ``system``: a system message (``{subject}`` allowed), or None. ``header``:
    text before the shots and question (``{subject}``). ``template``: one
    question, with ``{question}`` and ``{choices}`` (``{subject}`` allowed).
    ``choice_format``: one choice line (``{letter}``, ``{text}``). ``answer_cue``:
    what the answer follows. ``cot_instruction``: appended for chain-of-thought.
    ``shots``: worked examples per question, the first of the subject's rows in
    ``shots_from`` (``dev``: the dev split beside the questions; else a file).
    ``chat``: use the model's chat template (``auto``: when it has one).
    ``multiturn``: shots as user/assistant turns under a chat template.
    ``stop``: strings that end a generation. ``answer_regex``: one group, the
    last match is the answer (replaces the built-in extraction).
    """

    system: str | None = None
    header: str = DEFAULT_HEADER
    template: str = "{question}\n{choices}"
    choice_format: str = "{letter}. {text}"
    answer_cue: str = "Answer:"
    cot_instruction: str = DEFAULT_COT_INSTRUCTION
    shots: int = 0
    shots_from: str = "dev"
    chat: ChatMode = "auto"
    multiturn: bool = False
    stop: tuple[str, ...] = ()
    answer_regex: str | None = None
    name: str = field(default="", compare=False)  # for messages only; never hashed

    def __post_init__(self) -> None:
        # Python callers may write chat=True and stop=["\n\n"]; store one spelling.
        if isinstance(self.chat, bool):
            object.__setattr__(self, "chat", "true" if self.chat else "false")
        if self.stop is None:
            object.__setattr__(self, "stop", ())
        elif isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif isinstance(self.stop, list):
            object.__setattr__(self, "stop", tuple(self.stop))
        check_prompt(self)

    def fields(self) -> dict[str, Any]:
        """The fields that shape what the model sees (the name excluded)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}
        out["stop"] = list(self.stop)
        return out

    @property
    def answer_pattern(self) -> re.Pattern[str] | None:
        return re.compile(self.answer_regex) if self.answer_regex is not None else None


def _shown(value: Any) -> str:
    return (
        "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def check_prompt(prompt: Prompt) -> None:
    """Raise :class:`ConfigError` (one line: prompt, field, fix) for an invalid prompt."""
    who = f"prompt {prompt.name!r}" if prompt.name else "prompt"
    for key, allowed in _PLACEHOLDERS.items():
        text = getattr(prompt, key)
        if text is None:
            continue
        if not isinstance(text, str):
            raise ConfigError(f"{who}: {key} must be text, got {text!r}; quote it")
        try:
            names = {n for _, n, _, _ in string.Formatter().parse(text) if n is not None}
        except ValueError as exc:
            raise ConfigError(
                f"{who}: {key} is not a valid template ({exc}); "
                "write a literal brace as {{ or }}"
            ) from None
        unknown = sorted(names - allowed)
        if unknown:
            raise ConfigError(
                f"{who}: {key} has unknown placeholder {{{unknown[0]}}}; "
                f"allowed: {', '.join('{' + a + '}' for a in sorted(allowed))}"
            )
        if key == "template":
            for needed in ("question", "choices"):
                if needed not in names:
                    raise ConfigError(
                        f"{who}: template has no {{{needed}}}; "
                        "a template must place both {question} and {choices}"
                    )
    if isinstance(prompt.shots, bool) or not isinstance(prompt.shots, int) or prompt.shots < 0:
        raise ConfigError(
            f"{who}: shots must be a whole number, 0 or more, got {prompt.shots!r}; "
            "give the number of worked examples per question"
        )
    if prompt.chat not in ("auto", "true", "false"):
        raise ConfigError(f"{who}: chat must be auto, true or false, got {prompt.chat!r}")
    if any(not isinstance(s, str) or not s for s in prompt.stop):
        raise ConfigError(f"{who}: stop must be a list of non-empty strings, got {prompt.stop!r}")
    if prompt.answer_regex is not None:
        try:
            groups = re.compile(prompt.answer_regex).groups
        except re.error as exc:
            raise ConfigError(
                f"{who}: answer_regex {prompt.answer_regex!r} does not compile ({exc}); fix the "
                "pattern"
            ) from None
        if groups != 1:
            raise ConfigError(
                f"{who}: answer_regex {prompt.answer_regex!r} has {groups} groups; give exactly "
                "one group around the answer letter, e.g. 'answer is \\(?([ABCD])'"
            )


DEFAULT_PROMPT = Prompt(name="default")
BUILTIN_PROMPTS: dict[str, Prompt] = {
    "default": DEFAULT_PROMPT,
    # The standard MMLU 5-shot layout: five dev-split rows of the same subject.
    "mmlu-5shot": Prompt(shots=5, name="mmlu-5shot"),
}
PROMPT_FIELDS = tuple(f.name for f in dataclasses.fields(Prompt) if f.name != "name")


def prompt_from_mapping(name: str, data: Any, where: str) -> Prompt:
    """A :class:`Prompt` from a budgets-file mapping; ``where`` prefixes errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: prompt {name!r} must be a mapping of fields, got {data!r}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in PROMPT_FIELDS:
            close = difflib.get_close_matches(str(key), PROMPT_FIELDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{where}: prompt {name!r} has unknown field {key!r}; {hint}"
                f"fields: {', '.join(PROMPT_FIELDS)}"
            )
        values[str(key)] = _field_value(name, str(key), value, where)
    try:
        return Prompt(**values, name=name)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _field_value(name: str, key: str, value: Any, where: str) -> Any:
    if key == "chat" and not isinstance(value, bool):
        return str(value).lower()
    if key == "multiturn":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: prompt {name!r}: multiturn must be true or false")
        return value
    if key == "shots_from":
        return str(value)
    return value


def resolve_prompt(
    choice: str | Prompt | None, named: Mapping[str, Prompt], *, where: str = "prompt"
) -> Prompt:
    """The prompt ``choice`` names (a user prompt first, then a built-in), or the default."""
    if choice is None:
        return DEFAULT_PROMPT
    if isinstance(choice, Prompt):
        return choice
    key = str(choice).strip()
    if key in named:
        return named[key]
    if key in BUILTIN_PROMPTS:
        return BUILTIN_PROMPTS[key]
    known = sorted({*named, *BUILTIN_PROMPTS})
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(
        f"{where}: unknown prompt {key!r}; {hint}define it under prompts: in the budgets "
        f"file or use one of {', '.join(known)}"
    )


def describe_prompt_change(
    old: Mapping[str, Any], new: Mapping[str, Any], tokens: tuple[float, float] | None
) -> str:
    """``shots 0 -> 5, template; input tokens per question 148 -> 612`` for a prompt
    whose fingerprint changed (``old``/``new``: recorded :meth:`Prompt.fields`;
    ``tokens``: input tokens per question before and after)."""
    fields = _changed_fields(old, new) or ["shot rows"]  # same fields: other examples
    text = ", ".join(fields)
    if tokens is not None:
        text += f"; input tokens per question {tokens[0]:.0f} -> {tokens[1]:.0f}"
    return text


def _changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changes = []
    for key in PROMPT_FIELDS:
        default = DEFAULT_PROMPT.fields()[key]
        before, after = old.get(key, default), new.get(key, default)
        if before == after:
            continue
        short = all(len(repr(v)) <= 24 and "\n" not in str(v) for v in (before, after))
        changes.append(f"{key} {_shown(before)} -> {_shown(after)}" if short else key)
    return changes


__all__ = [
    "BUILTIN_PROMPTS",
    "DEFAULT_PROMPT",
    "FORCED_ANSWER_CUE",
    "PROMPT_FIELDS",
    "RENDER_VERSION",
    "Prompt",
    "check_prompt",
    "prompt_from_mapping",
    "resolve_prompt",
]
