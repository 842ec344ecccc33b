"""The user's prompt: validation, rendering, shots, fingerprint and what changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.budgets import BudgetsFile
from pytest_energy.errors import ConfigError, DataError
from pytest_energy.mmlu import Question, load_shots
from pytest_energy.prompts import (
    BUILTIN_PROMPTS,
    DEFAULT_PROMPT,
    Prompt,
    describe_prompt_change,
    prompt_from_mapping,
    resolve_prompt,
)
from pytest_energy.rendering import Renderer


def question(text: str, subject: str = "high_school_physics", answer: str = "B") -> Question:
    return Question(subject, text, ("one", "two", "three", "four"), answer, "t.csv:1")


SHOTS = [question(f"Shot {i}?", answer="ABCD"[i % 4]) for i in range(6)]
POOL = {"high_school_physics": SHOTS}


class FakeTokenizer:
    """A chat template that writes <|role|>content<|end|> turns."""

    def apply_chat_template(
        self, messages: list[dict[str, str]], *, tokenize: bool, add_generation_prompt: bool
    ) -> str:
        assert not tokenize
        assert add_generation_prompt
        turns = "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages)
        return turns + "<|assistant|>"


@dataclass(frozen=True)
class FakeSpec:
    label: str = "fake-model"


@dataclass
class FakeEngine:
    has_chat_template: bool
    tokenizer: Any = None
    spec: FakeSpec = FakeSpec()


CHAT = FakeEngine(True, FakeTokenizer())
PLAIN = FakeEngine(False)
Q = question("What is a force?")


# -- rendering ---------------------------------------------------------------------------


def test_the_default_prompt_is_the_harness_layout_with_the_cue_opening_the_answer() -> None:
    rendered = Renderer(DEFAULT_PROMPT).direct(CHAT, Q)  # type: ignore[arg-type]
    assert rendered == (
        "<|user|>The following are multiple choice questions (with answers) about high "
        "school physics.\n\nWhat is a force?\nA. one\nB. two\nC. three\nD. four<|end|>"
        "<|assistant|>Answer:"
    )


def test_chain_of_thought_appends_the_instruction_and_no_cue() -> None:
    rendered = Renderer(DEFAULT_PROMPT).cot(PLAIN, Q)  # type: ignore[arg-type]
    assert rendered.endswith(
        'D. four\n\nThink step by step, then finish with "The answer is (X)" '
        "where X is A, B, C or D."
    )


def test_five_shots_without_chat_template_follow_the_mmlu_layout() -> None:
    renderer = Renderer(BUILTIN_PROMPTS["mmlu-5shot"], POOL)
    rendered = renderer.direct(PLAIN, Q)  # type: ignore[arg-type]
    shot = "Shot 0?\nA. one\nB. two\nC. three\nD. four\nAnswer: A\n\n"
    assert rendered.startswith(
        "The following are multiple choice questions (with answers) about high school "
        "physics.\n\n" + shot
    )
    assert rendered.count("Answer:") == 6
    assert "Shot 5?" not in rendered  # the first five rows only
    assert rendered.endswith("What is a force?\nA. one\nB. two\nC. three\nD. four\nAnswer:")


def test_multiturn_shots_are_user_and_assistant_turns_after_the_system_message() -> None:
    prompt = Prompt(shots=2, multiturn=True, system="You answer {subject} questions.")
    rendered = Renderer(prompt, POOL).direct(CHAT, Q)  # type: ignore[arg-type]
    assert rendered.startswith("<|system|>You answer high school physics questions.<|end|>")
    assert rendered.count("<|user|>") == 3
    assert "<|assistant|>Answer: A<|end|>" in rendered
    assert "<|assistant|>Answer: B<|end|>" in rendered
    assert rendered.endswith("D. four<|end|><|assistant|>Answer:")


def test_custom_template_choice_format_and_cue() -> None:
    prompt = Prompt(
        header="",
        template="Q ({subject}): {question}\n{choices}",
        choice_format="({letter}) {text}",
        answer_cue="Final answer:",
    )
    rendered = Renderer(prompt).direct(PLAIN, Q)  # type: ignore[arg-type]
    assert rendered == (
        "Q (high school physics): What is a force?\n(A) one\n(B) two\n(C) three\n(D) four\n"
        "Final answer:"
    )


def test_shots_never_include_the_question_asked() -> None:
    renderer = Renderer(Prompt(shots=3), POOL)
    shots = renderer.shots_for(SHOTS[1])
    assert [s.question for s in shots] == ["Shot 0?", "Shot 2?", "Shot 3?"]


def test_too_few_shot_rows_name_the_subject_source_and_fix() -> None:
    renderer = Renderer(Prompt(shots=6, name="six"), POOL, "mmlu/dev")
    with pytest.raises(ConfigError) as info:
        renderer.check_shots([SHOTS[0]])
    # Six rows, one of them the question itself: five usable.
    assert str(info.value) == (
        "prompt 'six': shots 6 but mmlu/dev has 5 example rows for subject "
        "high_school_physics; lower shots or add rows for that subject"
    )
    with pytest.raises(ConfigError, match="has 0 example rows for subject anatomy"):
        renderer.check_shots([question("x", subject="anatomy")])


def test_chat_true_on_a_model_without_a_chat_template_is_an_error() -> None:
    with pytest.raises(ConfigError, match="chat is true but model fake-model has no chat template"):
        Renderer(Prompt(chat=True, name="c")).direct(PLAIN, Q)  # type: ignore[arg-type]


def test_chat_false_ignores_the_chat_template() -> None:
    rendered = Renderer(Prompt(chat=False)).direct(CHAT, Q)  # type: ignore[arg-type]
    assert "<|" not in rendered


def test_answer_regex_takes_the_last_match_and_stop_strings_cut_the_text() -> None:
    renderer = Renderer(Prompt(answer_regex=r"ANSWER=([A-D])", stop=("###",)))
    assert renderer.answer("ANSWER=A then ANSWER=C", Q.choices) == "C"
    assert renderer.answer("ANSWER=B ### ANSWER=D", Q.choices) == "B"
    assert renderer.answer("no letter here", Q.choices) is None
    # Without a regex the built-in chain reads "The answer is (X)".
    assert Renderer(DEFAULT_PROMPT).answer("so the answer is (D).", Q.choices) == "D"


# -- fingerprint and changes ---------------------------------------------------------------


def test_fingerprint_follows_what_the_model_sees_never_the_name() -> None:
    same = Renderer(Prompt(name="a"), POOL).fingerprint([Q])
    assert Renderer(Prompt(name="b"), POOL).fingerprint([Q]) == same
    assert Renderer(Prompt(shots=1), POOL).fingerprint([Q]) != same
    other_rows = {"high_school_physics": [question("Other?"), *SHOTS]}
    assert Renderer(Prompt(shots=1), other_rows).fingerprint([Q]) != Renderer(
        Prompt(shots=1), POOL
    ).fingerprint([Q])
    assert len(same) == 16


def test_a_prompt_change_names_the_fields_and_input_tokens() -> None:
    old, new = DEFAULT_PROMPT.fields(), Prompt(shots=5, template="{question}\n\n{choices}").fields()
    assert describe_prompt_change(old, new, (148.0, 612.4)) == (
        "template, shots 0 -> 5; input tokens per question 148 -> 612"
    )
    assert describe_prompt_change(old, old, None) == "shot rows"


# -- validation: one line naming the prompt, the field and the fix ----------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"shot": 5}, "prompt 'p' has unknown field 'shot'; did you mean 'shots'?"),
        ({"template": "{question}"}, "template has no {choices}"),
        ({"template": "{question} {choices} {answer}"}, "unknown placeholder {answer}"),
        ({"header": "About {topic}"}, "header has unknown placeholder {topic}"),
        ({"answer_regex": "([A-D]"}, "answer_regex '([A-D]' does not compile"),
        ({"answer_regex": "(a)(b)"}, "has 2 groups; give exactly one group"),
        ({"answer_regex": "[A-D]"}, "has 0 groups"),
        ({"shots": -1}, "shots must be a whole number, 0 or more, got -1"),
        ({"shots": "five"}, "shots must be a whole number"),
        ({"chat": "maybe"}, "chat must be auto, true or false"),
        ({"multiturn": "yes"}, "multiturn must be true or false"),
    ],
)
def test_bad_prompt_fields_are_one_line_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        prompt_from_mapping("p", fields, "energy-budgets.yaml: prompts.p")
    text = str(info.value)
    assert message in text
    assert text.startswith("energy-budgets.yaml: prompts.p")
    assert "\n" not in text


def test_unknown_prompt_name_suggests_the_closest() -> None:
    with pytest.raises(
        ConfigError, match="unknown prompt 'mmlu-5-shot'; did you mean 'mmlu-5shot'"
    ):
        resolve_prompt("mmlu-5-shot", {})
    assert resolve_prompt(None, {}) is DEFAULT_PROMPT
    terse = Prompt(cot_instruction="Be brief.", name="terse")
    assert resolve_prompt("terse", {"terse": terse}) is terse


def test_prompts_in_the_budgets_file(tmp_path: Path) -> None:
    data = {"prompts": {"five": {"shots": 5, "stop": "\n\n", "chat": False}}}
    budgets = BudgetsFile.parse(data, tmp_path / "b.yaml")
    five = budgets.prompts["five"]
    assert (five.shots, five.stop, five.chat, five.name) == (5, ("\n\n",), "false", "five")
    with pytest.raises(ConfigError, match=r"b.yaml: prompts: must be a mapping"):
        BudgetsFile.parse({"prompts": ["five"]}, tmp_path / "b.yaml")


# -- where shots come from ------------------------------------------------------------------


def write_csv(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"Q{i}?,a,b,c,d,A\n" for i in range(rows)), encoding="utf-8")


def test_dev_split_beside_test_is_read_in_file_order(tmp_path: Path) -> None:
    write_csv(tmp_path / "mmlu" / "test" / "anatomy_test.csv", 3)
    write_csv(tmp_path / "mmlu" / "dev" / "anatomy_dev.csv", 5)
    pool = load_shots("mmlu", "dev", rootdir=tmp_path)
    assert [q.question for q in pool.questions] == [f"Q{i}?" for i in range(5)]
    assert {q.subject for q in pool.questions} == {"anatomy"}


def test_a_missing_dev_split_says_where_it_looked(tmp_path: Path) -> None:
    write_csv(tmp_path / "mmlu" / "test" / "anatomy_test.csv", 3)
    with pytest.raises(DataError, match=r"no dev split .* \*_dev.csv in mmlu/dev and mmlu"):
        load_shots("mmlu", "dev", rootdir=tmp_path)
    write_csv(tmp_path / "one.csv", 1)
    with pytest.raises(DataError, match="is a single file, so it has no dev split"):
        load_shots("one.csv", "dev", rootdir=tmp_path)


def test_shots_from_a_file_of_examples(tmp_path: Path) -> None:
    write_csv(tmp_path / "examples" / "anatomy_dev.csv", 2)
    pool = load_shots("mmlu", "examples/anatomy_dev.csv", rootdir=tmp_path)
    assert len(pool.questions) == 2


def test_a_test_picks_its_prompt_else_the_session_prompt_else_the_default(
    tmp_path: Path,
) -> None:
    from pytest_energy.session import EnergySession
    from pytest_energy.settings import Settings

    write_csv(tmp_path / "mmlu" / "test" / "anatomy_test.csv", 3)
    write_csv(tmp_path / "mmlu" / "dev" / "anatomy_dev.csv", 5)
    budgets = tmp_path / "energy-budgets.yaml"
    budgets.write_text("prompts:\n  terse:\n    cot_instruction: Be brief.\n", encoding="utf-8")

    def session(prompt: str | None) -> EnergySession:
        settings = Settings(
            enabled=True, rootdir=tmp_path, mmlu="mmlu", budgets_file=budgets, prompt=prompt
        )
        return EnergySession(settings, writes_files=False)

    assert session(None).renderer(None).prompt is DEFAULT_PROMPT
    five = session("mmlu-5shot").renderer(None)
    assert five.prompt.shots == 5
    assert len(five.shots_for(question("new?", subject="anatomy"))) == 5
    assert session("mmlu-5shot").renderer("terse").prompt.cot_instruction == "Be brief."
    with pytest.raises(ConfigError, match="unknown prompt 'tersee'; did you mean 'terse'"):
        session(None).renderer("tersee")
