"""Putting a question to a model with a :class:`~pytest_energy.prompts.Prompt`.

:class:`Renderer` turns a prompt, the question's few-shot rows and the model's
chat template into the text the model reads, reads the answer out of generated
text, and fingerprints what the model saw. :class:`ShotBook` loads the rows
that shots come from once per session.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_energy.errors import ConfigError
from pytest_energy.metrics import LETTERS
from pytest_energy.prompts import RENDER_VERSION, Prompt

if TYPE_CHECKING:
    from pytest_energy.backends import Backend
    from pytest_energy.mmlu import Question


class Renderer:
    """Renders one prompt for one engine, with the shot rows of each subject.

    ``shots`` maps a subject to its example rows in file order (what
    ``shots_from`` holds, named by ``shots_source`` in errors); it may be empty
    when ``prompt.shots`` is 0.
    """

    def __init__(
        self,
        prompt: Prompt,
        shots: Mapping[str, Sequence[Question]] | None = None,
        shots_source: str = "",
    ) -> None:
        self.prompt = prompt
        self._shots = shots or {}
        self._shots_source = shots_source

    def check_shots(self, questions: Sequence[Question]) -> None:
        """Raise :class:`ConfigError` when a subject has fewer example rows than ``shots``."""
        for question in questions:
            found = len(self.shots_for(question))
            if found < self.prompt.shots:
                raise ConfigError(
                    f"prompt {self.prompt.name or '(given)'!r}: shots {self.prompt.shots} but "
                    f"{self._shots_source or self.prompt.shots_from} has {found} example rows "
                    f"for subject {question.subject}; lower shots or add rows for that subject"
                )

    def shots_for(self, question: Question) -> tuple[Question, ...]:
        """The first ``prompt.shots`` example rows of the subject, never the question itself."""
        k = self.prompt.shots
        if k == 0:
            return ()
        rows = [s for s in self._shots.get(question.subject, ()) if not _same(s, question)]
        return tuple(rows[:k])

    def use_chat(self, engine: Backend) -> bool:
        if self.prompt.chat == "auto":
            return engine.has_chat_template
        if self.prompt.chat == "true" and not engine.has_chat_template:
            raise ConfigError(
                f"prompt {self.prompt.name or '(given)'!r}: chat is true but model "
                f"{engine.spec.label} has no chat template; set chat: auto or false"
            )
        return self.prompt.chat == "true"

    def block(self, question: Question) -> str:
        """One question in ``template``, its choices in ``choice_format``."""
        p = self.prompt
        choices = "\n".join(
            p.choice_format.format(letter=letter, text=text)
            for letter, text in zip(LETTERS, question.choices, strict=True)
        )
        return p.template.format(
            question=question.question.strip(), choices=choices, subject=_subject(question)
        )

    def direct(self, engine: Backend, question: Question) -> str:
        """The prompt whose continuation is the answer letter (after the cue)."""
        return self._render(engine, question, suffix="", cue=self.prompt.answer_cue)

    def cot(self, engine: Backend, question: Question) -> str:
        """The chain-of-thought prompt: the question, then the reasoning instruction."""
        return self._render(engine, question, suffix="\n\n" + self.prompt.cot_instruction, cue="")

    def _render(self, engine: Backend, question: Question, *, suffix: str, cue: str) -> str:
        p = self.prompt
        subject = _subject(question)
        header = p.header.format(subject=subject)
        system = p.system.format(subject=subject) if p.system is not None else None
        shots = self.shots_for(question)
        chat = self.use_chat(engine)
        if chat and p.multiturn and shots:
            turns: list[dict[str, str]] = []
            for i, shot in enumerate(shots):
                turns.append(
                    {"role": "user", "content": (header if i == 0 else "") + self.block(shot)}
                )
                turns.append({"role": "assistant", "content": f"{p.answer_cue} {shot.answer}"})
            turns.append({"role": "user", "content": self.block(question) + suffix})
            return _chat(engine, system, turns) + cue
        examples = "".join(f"{self.block(s)}\n{p.answer_cue} {s.answer}\n\n" for s in shots)
        user = header + examples + self.block(question) + suffix
        if chat:
            return _chat(engine, system, [{"role": "user", "content": user}]) + cue
        # Without a chat template the cue starts a new line (the harness layout).
        text = (system + "\n\n" if system else "") + user
        return text + ("\n" + cue if cue else "")

    def answer(self, text: str, choices: Sequence[str]) -> str | None:
        """The answer letter in generated ``text`` (cut at the first ``stop`` string):
        the last match of ``answer_regex``, else the built-in extraction chain."""
        for stop in self.prompt.stop:
            text = text.split(stop, 1)[0]
        pattern = self.prompt.answer_pattern
        if pattern is None:
            from pytest_energy.strategies.extraction import extract_answer

            return extract_answer(text, choices)
        matches = pattern.findall(text)
        letter = str(matches[-1]).strip().strip("()").upper() if matches else ""
        return letter if letter in LETTERS else None

    def fingerprint(self, questions: Sequence[Question]) -> str:
        """16 hex digits over the resolved fields, the shot rows used and the rendering version."""
        used = sorted(
            {
                (s.subject, s.question, s.choices, s.answer)
                for q in questions
                for s in self.shots_for(q)
            }
        )
        payload = {"fields": self.prompt.fields(), "shots": used, "version": RENDER_VERSION}
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]


def _chat(engine: Backend, system: str | None, turns: list[dict[str, str]]) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + turns
    text: str = engine.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    return text


def _subject(question: Question) -> str:
    return question.subject.replace("_", " ")


def _same(a: Question, b: Question) -> bool:
    return (a.question, a.choices) == (b.question, b.choices)


class ShotBook:
    """The example rows of each ``shots_from`` of a session, loaded on first use.

    ``source`` is the session's MMLU source (its dev split is ``shots_from: dev``);
    ``rootdir`` anchors relative paths.
    """

    def __init__(self, source: str, rootdir: Path | None) -> None:
        self._source = source
        self._rootdir = rootdir
        self._rows: dict[str, tuple[dict[str, list[Question]], str]] = {}

    def renderer(self, prompt: Prompt) -> Renderer:
        """A renderer of ``prompt`` with its shot rows (none loaded for zero shots)."""
        if prompt.shots == 0:
            return Renderer(prompt)
        if prompt.shots_from not in self._rows:
            from pytest_energy.mmlu import load_shots

            pool = load_shots(self._source, prompt.shots_from, rootdir=self._rootdir)
            by_subject: dict[str, list[Question]] = {}
            for row in pool.questions:
                by_subject.setdefault(row.subject, []).append(row)
            self._rows[prompt.shots_from] = (by_subject, pool.source)
        rows, where = self._rows[prompt.shots_from]
        return Renderer(prompt, rows, where)
