"""The in-process vLLM backend: a model spec ``vllm:ID_OR_PATH`` run by ``vllm.LLM``.

``energy_eval("vllm:smollm2-135m", "direct")`` runs the strategies through vLLM
in this process (continuous batching, paged attention, prefix caching on).
``ID_OR_PATH`` is any local spec (:func:`~pytest_energy.models.resolve_model`); a
GGUF model (the alias among them) is de-quantised once into the model cache and
vLLM loads that folder, so both in-process backends run the same weights. It needs
``pip install 'pytest-energy[vllm]'`` and a CUDA device (vLLM runs on the first GPU
that ``CUDA_VISIBLE_DEVICES`` shows). Prompts are tokenized here without special
tokens, as the engine does, and sent as token ids:

* ``score`` (letters, forced answers): one greedy token and the log-probabilities
  of the candidates' first tokens (``logprob_token_ids`` where this vLLM has it,
  else the top ``logprobs=20``: a candidate outside them scores minus infinity
  and is counted in ``details["letters_missing"]``).
* ``score_choices`` (cloze): ``prompt_logprobs`` on the prompt's and each choice's
  token ids, tokenized apart as the engine does.
* ``generate``: one request per prompt with ``SamplingParams(n=samples)``; greedy
  samples (vLLM takes no ``n > 1`` at temperature 0) are one request each, sharing
  the prompt through the prefix cache. With ``force``, a sample that used all its
  tokens gets one more request (prompt, sample and cue) scored like ``score``.

Tokens come from vLLM's outputs (``prompt_token_ids``, each sample's
``token_ids``); ``computed_input_tokens`` is the prompt less the request's
``num_cached_tokens`` (prefix-cache hits) when vLLM reports them. Each call is one
phase window of the session's meter (``prefill`` for scoring, ``decode`` for
generation, whose prompt is computed in the same request).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_energy.engine_results import ChoiceScores, Force, Generated, Generation, Ledger, Scored
from pytest_energy.errors import ModelError
from pytest_energy.meters.base import EnergyMeter, Phase
from pytest_energy.models import ModelSpec, resolve_dtype

TOP_LOGPROBS = 20
INSTALL_HINT = "pip install 'pytest-energy[vllm]'"

Run = Callable[[Sequence[list[int]], Sequence[Any]], list[Any]]


def import_vllm(label: str) -> Any:
    """The ``vllm`` module, or a one-line ModelError naming the spec and the install."""
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise ModelError(
            f"model {label} needs vLLM, but {exc.name or 'vllm'} is not installed; {INSTALL_HINT}"
        ) from None


def cuda_problem(label: str, device: str) -> str | None:
    """Why vLLM cannot run model ``label`` on the session's ``device`` (one line), or None."""
    if device not in ("cuda", "cuda:0") and device.startswith("cuda"):
        return (
            f"model {label} runs on the first visible GPU with vLLM, but the session's device "
            f"is {device}; pick that GPU with CUDA_VISIBLE_DEVICES and use cuda:0"
        )
    if not device.startswith("cuda"):
        why = f"the session's device is {device}"
    elif not importlib.import_module("torch").cuda.is_available():
        why = "torch sees no CUDA device"
    else:
        return None
    return (
        f"model {label} needs a CUDA device for vLLM, but {why}; run it on a GPU machine, "
        "or drop vllm: to use the transformers backend"
    )


def dequantised_folder(spec: ModelSpec, cache_dir: Path | None, dtype: str) -> Path:
    """The model cache's folder of a GGUF ``spec`` (built once with transformers)."""
    from pytest_energy.model_cache import entry_name, gguf_sha256, manifest_problem
    from pytest_energy.models import default_cache_dir, load_model

    gguf = Path(spec.location) / str(spec.gguf_file)
    cache = cache_dir or default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        folder = cache / entry_name(gguf, dtype, gguf_sha256(gguf, cache))
        if manifest_problem(folder) is not None:
            load_model(spec, device="cpu", cache_dir=cache, dtype=dtype)  # writes the entry
        problem = manifest_problem(folder)
    except OSError as exc:
        problem = f"{type(exc).__name__}: {exc.strerror or exc}"
    if problem is not None:
        raise ModelError(
            f"model {spec.label}: vLLM loads a GGUF model from its de-quantised copy in "
            f"{cache}, which could not be written ({problem}); set energy_cache_dir to a "
            "writable folder"
        )
    return folder


class VllmBackend:
    """A model run by ``vllm.LLM`` in this process, measured by the session's meter. Build
    it with :meth:`load`. ``sync`` is None: ``LLM.generate`` returns when all is done."""

    sync: Callable[[], None] | None = None

    def __init__(
        self, spec: ModelSpec, llm: Any, vllm: Any, meter: EnergyMeter, *, dtype: str, device: str
    ) -> None:
        self.spec = spec
        self.llm = llm
        self.vllm = vllm
        self.meter = meter
        self.dtype = dtype
        self.device = device
        self.tokenizer: Any = llm.get_tokenizer()
        # Known at the first scoring call: does SamplingParams take logprob_token_ids?
        self._exact_logprobs: bool | None = None

    @classmethod
    def load(
        cls,
        spec: ModelSpec,
        *,
        meter: EnergyMeter,
        device: str,
        dtype: str = "auto",
        cache_dir: Path | None = None,
        **engine_args: Any,
    ) -> VllmBackend:
        """Start ``vllm.LLM`` for ``spec`` with prefix caching on; ``engine_args`` go to
        ``LLM`` as they are (``gpu_memory_utilization``, ``enforce_eager``...)."""
        vllm = import_vllm(spec.label)
        problem = cuda_problem(spec.label, device)
        if problem is not None:
            raise ModelError(problem)
        dtype_name = resolve_dtype(dtype, device)
        location = spec.location
        if spec.gguf_file is not None:
            location = str(dequantised_folder(spec, cache_dir, dtype_name))
        try:
            llm = vllm.LLM(
                model=location, dtype=dtype_name, enable_prefix_caching=True, **engine_args
            )
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(
                f"vLLM cannot load model {spec.label} from {location}: {first}"
            ) from None
        return cls(spec, llm, vllm, meter, dtype=dtype_name, device=device)

    # -- what the renderer and the strategies read ------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def forced_answer_recomputes(self) -> bool:
        """No: its request's context is in the prefix cache, which this backend turns on."""
        return False

    def ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens added."""
        return [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False)]

    def count_tokens(self, text: str) -> int:
        return len(self.ids(text))

    def fingerprint(self) -> dict[str, str]:
        return {
            "backend": "vllm",
            "vllm": str(getattr(self.vllm, "__version__", "unknown")),
            "model": self.spec.label,
            "dtype": self.dtype,
            "device": self.device,
        }

    # -- scoring ------------------------------------------------------------------------
    def score(
        self, prompts: Sequence[str], candidates: Sequence[str], ledger: Ledger
    ) -> list[Scored]:
        """Log-probability of each candidate's first token as the next token of each prompt."""
        with self._measured("prefill", ledger) as run:
            found = self._next_token([self.ids(p) for p in prompts], candidates, ledger, run)
        return [Scored(_prompt_tokens(o), _computed(o), values) for values, o in found]

    def score_choices(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]], ledger: Ledger
    ) -> list[ChoiceScores]:
        """Log-likelihood of each choice's text after its prompt (cloze): the sum of its
        tokens' ``prompt_logprobs``, with its token and character counts."""
        if len(choices) != len(prompts):
            raise ValueError(
                f"score_choices: {len(prompts)} prompts but {len(choices)} choice lists"
            )
        rows = [self.ids(p) for p in prompts]
        if any(not r for r in rows):
            raise ValueError("score_choices: an empty prompt has no next-token distribution")
        conts = [[self.ids(c) for c in cs] for cs in choices]
        flat = [row + cont for row, cs in zip(rows, conts, strict=True) for cont in cs]
        params = self.vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        with self._measured("prefill", ledger) as run:
            outputs = iter(run(flat, [params] * len(flat)))
        out = []
        for row, cs, texts in zip(rows, conts, choices, strict=True):
            done = [next(outputs) for _ in cs]
            out.append(
                ChoiceScores(
                    input_tokens=len(row) + sum(len(c) for c in cs),
                    computed_input_tokens=sum(_computed(o) for o in done),
                    logprobs=tuple(
                        _continuation_sum(o, row + c, len(row), self.spec.label)
                        for o, c in zip(done, cs, strict=True)
                    ),
                    tokens=tuple(len(c) for c in cs),
                    chars=tuple(len(t) for t in texts),
                )
            )
        return out

    # -- generation ---------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        ledger: Ledger,
        *,
        max_new_tokens: int | Sequence[int],
        samples: int = 1,
        temperature: float = 0.0,
        seed: int = 0,
        stop_at_eos: bool = True,
        force: Force | None = None,
        stop: Sequence[str] = (),
    ) -> list[Generated]:
        """Continuations as the engine's ``generate`` makes them; ``stop`` strings end a
        generation in vLLM (the prompt's ``stop``)."""
        limits = (
            [max_new_tokens] * len(prompts)
            if isinstance(max_new_tokens, int)
            else list(max_new_tokens)
        )
        if len(limits) != len(prompts) or any(n < (0 if force else 1) for n in limits):
            raise ValueError("max_new_tokens: one limit >= 1 (>= 0 with force) per prompt")
        rows = [self.ids(p) for p in prompts]
        # One request with n=samples per prompt; greedy samples are one request each.
        n = samples if temperature > 0 else 1
        owners = [i for i, limit in enumerate(limits) if limit for _ in range(samples // n)]
        draw = {"n": n, "temperature": temperature, "seed": seed, "stop": list(stop) or None}
        params = [
            self.vllm.SamplingParams(max_tokens=limits[i], ignore_eos=not stop_at_eos, **draw)
            for i in owners
        ]
        drawn: list[list[tuple[Any, Any]]] = [[] for _ in prompts]  # (request, sample)
        with self._measured("decode", ledger) as run:
            for i, output in zip(owners, run([rows[i] for i in owners], params), strict=True):
                drawn[i] += [(output, s) for s in sorted(output.outputs, key=lambda s: s.index)]
            if any(limit and len(d) != samples for limit, d in zip(limits, drawn, strict=True)):
                raise ModelError(f"vLLM returned fewer than {samples} samples ({self.spec.label})")
            forced = self._forced(rows, drawn, samples, force, ledger, run)
        result = []
        for i, row in enumerate(rows):
            requests = list({id(o): o for o, _ in drawn[i]}.values())
            computed = sum(_computed(o) for o in requests)
            gens = []
            for j in range(samples):
                text, tokens, stopped = "", 0, False  # limit 0: only the forced answer
                if drawn[i]:
                    sample = drawn[i][j][1]
                    text, tokens = str(sample.text), len(sample.token_ids)
                    stopped = sample.finish_reason != "length"
                values, cue_tokens, context = forced.get((i, j), (None, 0, 0))
                if values is not None:
                    tokens += cue_tokens + 1  # the cue and the answer token count as output
                    computed += context
                gens.append(Generation(text, tokens, stopped, values))
            input_tokens = _prompt_tokens(requests[0]) if requests else len(row)
            result.append(Generated(input_tokens, computed, tuple(gens)))
        return result

    def _forced(
        self,
        rows: list[list[int]],
        drawn: list[list[tuple[Any, Any]]],
        samples: int,
        force: Force | None,
        ledger: Ledger,
        run: Run,
    ) -> dict[tuple[int, int], tuple[tuple[float, ...], int, int]]:
        """Score the candidates after the cue for every sample that ran out of tokens:
        ``(prompt, sample) -> (log-probabilities, cue tokens, context tokens computed)``."""
        if force is None:
            return {}
        cue = self.ids(force.cue)
        todo: list[tuple[int, int]] = []
        contexts: list[list[int]] = []
        for i, row in enumerate(rows):
            for j in range(samples):
                sample = drawn[i][j][1] if drawn[i] else None
                if sample is None or sample.finish_reason == "length":
                    todo.append((i, j))
                    contexts.append(row + (list(sample.token_ids) if sample else []) + cue)
        found = self._next_token(contexts, force.candidates, ledger, run)
        # The re-sent context is input computed again (less its cached part); the cue is output.
        return {
            key: (values, len(cue), max(0, _computed(output) - len(cue)))
            for key, (values, output) in zip(todo, found, strict=True)
        }

    # -- requests -------------------------------------------------------------------------
    def _next_token(
        self, rows: list[list[int]], candidates: Sequence[str], ledger: Ledger, run: Run
    ) -> list[tuple[tuple[float, ...], Any]]:
        """Each row's next-token log-probabilities of the candidates' first tokens (one
        greedy token; exactly theirs where SamplingParams takes ``logprob_token_ids``,
        else the top ``TOP_LOGPROBS``), with its request's output."""
        if not rows:
            return []
        keys = [self.ids(c)[0] for c in candidates]
        fields: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0, "logprobs": TOP_LOGPROBS}
        params = None
        if self._exact_logprobs is not False:
            try:
                params = self.vllm.SamplingParams(**fields, logprob_token_ids=keys)
            except TypeError:  # a vLLM before logprob_token_ids
                params = None
            self._exact_logprobs = params is not None
        if params is None:
            params = self.vllm.SamplingParams(**fields)
        found, missing = [], 0
        for output in run(rows, [params] * len(rows)):
            top = _next_token_logprobs(output, self.spec.label)
            found.append((tuple(top.get(key, -math.inf) for key in keys), output))
            missing += sum(1 for key in keys if key not in top)
        if not self._exact_logprobs:  # candidates outside the top-k scored minus infinity
            ledger.details["letters_missing"] = ledger.details.get("letters_missing", 0) + missing
        return found

    @contextmanager
    def _measured(self, phase: Phase, ledger: Ledger) -> Iterator[Run]:
        """One phase window; ``run(rows, params)`` sends requests inside it, accounting
        each request's computed prompt tokens and each sample's context and output."""

        def run(rows: Sequence[list[int]], params: Sequence[Any]) -> list[Any]:
            if not rows:
                return []
            prompts = [{"prompt_token_ids": row} for row in rows]
            outputs = list(self.llm.generate(prompts, list(params), use_tqdm=False))
            for output in outputs:
                window.account("prefill", _computed(output), 0)
                for sample in output.outputs if phase == "decode" else ():
                    window.account("decode", _prompt_tokens(output), len(sample.token_ids))
            return outputs

        with self.meter.window(self.sync, strict=False) as window:
            yield run
        ledger.add(phase, window)


# -- reading vLLM's outputs (RequestOutput, CompletionOutput, Logprob) ----------------------


def _prompt_tokens(output: Any) -> int:
    return len(output.prompt_token_ids or [])


def _computed(output: Any) -> int:
    """Prompt tokens vLLM computed for a request: all but its prefix-cache hits."""
    cached = getattr(output, "num_cached_tokens", None)
    prompt = _prompt_tokens(output)
    return prompt - min(cached, prompt) if isinstance(cached, int) and cached > 0 else prompt


def _logprob(value: Any) -> float:
    return float(getattr(value, "logprob", value))


def _next_token_logprobs(output: Any, label: str) -> dict[int, float]:
    steps = getattr(output.outputs[0], "logprobs", None) if output.outputs else None
    if not steps or steps[0] is None:
        raise ModelError(f"vLLM returned no next-token logprobs for model {label}")
    return {int(token): _logprob(value) for token, value in steps[0].items()}


def _continuation_sum(output: Any, ids: list[int], start: int, label: str) -> float:
    """The summed prompt log-probabilities of ``ids[start:]`` (a choice after its prompt)."""
    positions = output.prompt_logprobs or []
    total = 0.0
    for pos in range(start, len(ids)):
        step = positions[pos] if pos < len(positions) else None
        if not step or ids[pos] not in step:
            raise ModelError(
                f"vLLM returned no prompt_logprobs for position {pos} of a cloze request "
                f"(model {label}); use direct (score=letters)"
            )
        total += _logprob(step[ids[pos]])
    return total


__all__ = ["INSTALL_HINT", "TOP_LOGPROBS", "VllmBackend", "cuda_problem", "import_vllm"]
