"""An OpenAI-compatible server on loopback, for testing the served backend without a model.

It serves a scripted fake model at ``http://127.0.0.1:PORT/v1``::

    with FakeOpenAIServer() as server:
        backend = OpenAIBackend.connect(server.url, meter=meter)
        ...
        assert server.usage_totals["completion_tokens"] == ...

The fake model splits text into words (each with its leading whitespace) and
answers deterministically from a hash of the text: after a prompt, one of the
letters `` A``..`` D`` is its favourite next token; generation writes
``" The answer is (X)."`` (cut at ``max_tokens`` or a ``stop`` string).
``/v1/completions`` supports ``max_tokens``, ``min_tokens``, ``n``, ``seed``,
``stop``, ``logprobs`` (top-k), ``echo`` and vLLM's ``prompt_logprobs`` (with the
prompt as token ids); every answer carries ``usage``.

What a test can change (constructor arguments, or attributes later):

- ``models`` listed by ``/v1/models``; ``owned_by`` (``vllm``: ``/tokenize`` and
  ``prompt_logprobs``; ``me``: llama-cpp-python's ``/extras/tokenize``);
  ``version`` served at ``/version`` (404 when None).
- ``logprobs=False``: never sends log-probabilities; ``usage=False``: no usage;
  ``cached_tokens``: reported as ``prompt_tokens_details.cached_tokens``;
  ``n_supported=False``: answers one sample whatever ``n`` asks (llama-cpp-python);
  ``missing_letters``: letters left out of every top-k; ``echo``: ``"correct"``,
  ``"shifted"`` (by one token, as llama-cpp-python) or ``"ignored"``.
- ``delay_s``: each completion waits this long first (timeouts).
- ``metrics=True``: serves vLLM's Prometheus counters at ``/metrics``
  (``vllm:prompt_tokens_total``, counting an ``n=k`` request's prompt k times as
  vLLM does, and ``vllm:generation_tokens_total``); ``metrics_lag_s``: a
  completion's tokens reach them that long after its answer;
  ``other_traffic(prompt, generated)`` adds tokens another client was served, and
  ``other_per_completion`` that many generated tokens with every completion
  (a client busy beside ours).
- ``die_after(n)``: after n more completions the server drops the connection and
  stops listening (a server that dies mid-run).
- ``respond_with(status, body, content_type)``: every request gets this answer
  (an HTML page, an error).

``requests`` lists ``(path, body)`` of every POST; ``usage_totals`` sums the
usage sent. Call :meth:`close` (or use ``with``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

_WORD = re.compile(r"\s*\S+|\s+")
_LETTERS = (" A", " B", " C", " D")
_FILLER = {" The": -3.0, "\n": -3.3, " (": -4.0, " I": -4.5}


def words(text: str) -> list[str]:
    """The fake model's tokens: words with their leading whitespace."""
    return _WORD.findall(text)


def _hash(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout test) is expected: no traceback on stderr."""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._serve("GET", None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._serve("POST", body)

    def _serve(self, method: str, request: Any) -> None:
        answer = cast(_Server, self.server).fake.answer(method, self.path, request)
        if answer is None:  # dying: no answer at all
            self.close_connection = True
            return
        status, body, content_type = answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``requests`` instead of a log."""


class FakeOpenAIServer:
    """A loopback OpenAI-compatible server with a scripted fake model (see the module)."""

    def __init__(
        self,
        *,
        models: Sequence[str] = ("fake-model",),
        owned_by: str = "fake",
        version: str | None = None,
        logprobs: bool = True,
        usage: bool = True,
        cached_tokens: int = 0,
        n_supported: bool = True,
        missing_letters: Sequence[str] = (),
        echo: str = "correct",
        delay_s: float = 0.0,
        metrics: bool = False,
        metrics_lag_s: float = 0.0,
    ) -> None:
        self.models = list(models)
        self.owned_by = owned_by
        self.version = version
        self.logprobs = logprobs
        self.usage = usage
        self.cached_tokens = cached_tokens
        self.n_supported = n_supported
        self.missing_letters = tuple(missing_letters)
        self.echo = echo
        self.delay_s = delay_s
        self.metrics = metrics
        self.metrics_lag_s = metrics_lag_s
        self.other_per_completion = 0
        # vLLM's counters: tokens served (prompt, generated), and those still to land.
        self.counted = [0, 0]
        self._landing: list[tuple[float, int, int]] = []
        self.requests: list[tuple[str, Any]] = []
        self.usage_totals = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
        self._vocab: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._override: tuple[int, bytes, str] | None = None
        self._completions_left: int | None = None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-openai-server",
            daemon=True,
        )
        self._thread.start()

    @property
    def root_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        """The API base URL, the served model spec: ``http://127.0.0.1:PORT/v1``."""
        return self.root_url + "/v1"

    def respond_with(
        self, status: int, body: str, content_type: str = "text/html; charset=utf-8"
    ) -> None:
        with self._lock:
            self._override = (status, body.encode(), content_type)

    def other_traffic(self, prompt_tokens: int, generated_tokens: int) -> None:
        """Count tokens served to another client in the ``/metrics`` counters."""
        with self._lock:
            self.counted[0] += prompt_tokens
            self.counted[1] += generated_tokens

    def _metrics_text(self) -> str:
        now = time.monotonic()
        for due, prompt, generated in [t for t in self._landing if t[0] <= now]:
            self._landing.remove((due, prompt, generated))
            self.counted[0] += prompt
            self.counted[1] += generated
        model = self.models[0] if self.models else ""
        lines = []
        for (name, what), value in zip(
            (("prompt_tokens", "prefill"), ("generation_tokens", "generation")),
            self.counted,
            strict=True,
        ):
            lines += [
                f"# HELP vllm:{name}_total Number of {what} tokens processed.",
                f"# TYPE vllm:{name}_total counter",
                f'vllm:{name}_total{{model_name="{model}"}} {float(value)}',
            ]
        return "\n".join(lines) + "\n"

    def die_after(self, completions: int) -> None:
        with self._lock:
            self._completions_left = completions

    # -- the fake model ---------------------------------------------------------------
    def token_id(self, token: str) -> int:
        return self._vocab.setdefault(token, 100 + len(self._vocab))

    def next_top(self, text: str) -> dict[str, float]:
        """The next-token log-probabilities after ``text``, best first."""
        top = {
            letter: -0.3 - (_hash(text, letter) % 1000) / 250
            for letter in _LETTERS
            if letter not in self.missing_letters
        }
        return dict(sorted({**top, **_FILLER}.items(), key=lambda kv: -kv[1]))

    def _generated(self, prompt: str, body: dict[str, Any], sample: int) -> tuple[list[str], str]:
        letter = "ABCD"[_hash(prompt, body.get("seed"), sample) % 4]
        tokens = words(f" The answer is ({letter}).")
        limit = int(body.get("max_tokens") or 16)
        finish = "length" if len(tokens) > limit else "stop"
        while len(tokens) < min(int(body.get("min_tokens") or 0), limit):
            tokens.append(" more")
            finish = "length"
        tokens = tokens[:limit]
        stops = body.get("stop") or []
        text = "".join(tokens)
        for stop in [stops] if isinstance(stops, str) else stops:
            if stop in text:
                text, finish = text.split(stop, 1)[0], "stop"
        return words(text), finish

    def _position(self, prompt: list[str], i: int) -> tuple[float | None, dict[str, float]]:
        """Echoed log-probability of prompt token ``i`` and its top entries."""
        if i == 0:
            return None, {}
        shift = 1 if self.echo == "shifted" else 0
        top = self.next_top("".join(prompt[: i + shift]))
        value = top.get(prompt[i], -6.0)
        best = next(iter(top.items()))
        return value, {best[0]: best[1], prompt[i]: value}

    def _prompt_logprobs(self, prompt: list[str]) -> list[dict[str, Any] | None]:
        """vLLM's ``prompt_logprobs``: per position, the prompt token's id and logprob."""
        out: list[dict[str, Any] | None] = [None]
        for i in range(1, len(prompt)):
            value = self._position(prompt, i)[0]
            out.append({str(self.token_id(prompt[i])): {"logprob": value, "rank": 1}})
        return out

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        raw = body.get("prompt", "")
        by_ids = isinstance(raw, list)
        reverse = {v: k for k, v in self._vocab.items()}
        prompt = "".join(reverse.get(int(t), "?") for t in raw) if by_ids else str(raw)
        prompt_words = words(prompt)
        n = int(body.get("n") or 1) if self.n_supported else 1
        k = body.get("logprobs")
        echo = bool(body.get("echo")) and self.echo != "ignored"
        choices, completion_tokens = [], 0
        for j in range(n):
            tokens, finish = self._generated(prompt, body, j)
            completion_tokens += len(tokens)
            choice: dict[str, Any] = {"index": j, "text": "".join(tokens), "logprobs": None}
            choice["finish_reason"] = finish
            if isinstance(k, int) and self.logprobs:
                listed = prompt_words + tokens if echo else tokens
                first = len(prompt_words) if echo else 0
                top = dict(list(self.next_top(prompt).items())[:k])
                positions = [self._position(prompt_words, i) for i in range(first)]
                positions += [
                    (top.get(t, -1.0), top if i == 0 else {t: -1.0}) for i, t in enumerate(tokens)
                ]
                offsets = [sum(len(t) for t in listed[:i]) for i in range(len(listed))]
                choice["logprobs"] = {
                    "tokens": listed,
                    "token_logprobs": [p[0] for p in positions],
                    "top_logprobs": [p[1] or None for p in positions],
                    "text_offset": offsets,
                }
            if echo:
                choice["text"] = prompt + choice["text"]
            if body.get("prompt_logprobs") is not None and self.owned_by == "vllm":
                choice["prompt_logprobs"] = self._prompt_logprobs(prompt_words)
            choices.append(choice)
        answer: dict[str, Any] = {"object": "text_completion", "model": body.get("model")}
        answer["choices"] = choices
        lands = time.monotonic() + self.metrics_lag_s
        self._landing.append((lands, len(prompt_words) * n, completion_tokens))
        self.counted[1] += self.other_per_completion
        if self.usage:
            cached = min(self.cached_tokens, len(prompt_words))
            answer["usage"] = {
                "prompt_tokens": len(prompt_words),
                "completion_tokens": completion_tokens,
                "total_tokens": len(prompt_words) + completion_tokens,
            }
            if cached:
                answer["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
            for key, value in (
                ("prompt_tokens", len(prompt_words)),
                ("completion_tokens", completion_tokens),
                ("cached_tokens", cached),
            ):
                self.usage_totals[key] += value
        return answer

    # -- serving ------------------------------------------------------------------------
    def answer(self, method: str, path: str, body: Any) -> tuple[int, bytes, str] | None:
        """Status, body and content type for a request (None: drop the connection)."""
        path = path.split("?")[0]
        with self._lock:
            if method == "POST":
                self.requests.append((path, body))
            if self._override is not None:
                return self._override
            if path == "/v1/completions" and self._completions_left is not None:
                if self._completions_left <= 0:
                    threading.Thread(target=self.close, daemon=True).start()
                    return None
                self._completions_left -= 1
        if path == "/v1/completions" and method == "POST" and self.delay_s:
            self._closing.wait(self.delay_s)
        if path == "/metrics" and method == "GET" and self.metrics:
            with self._lock:
                return 200, self._metrics_text().encode(), "text/plain; version=0.0.4"
        with self._lock:
            data = self._route(method, path, body if isinstance(body, dict) else {})
        if data is None:
            return 404, b'{"detail":"Not Found"}', "application/json"
        return 200, json.dumps(data).encode(), "application/json"

    def _route(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if method == "GET" and path == "/v1/models":
            listed = [{"id": m, "object": "model", "owned_by": self.owned_by} for m in self.models]
            return {"object": "list", "data": listed}
        if method == "GET" and path == "/version" and self.version is not None:
            return {"version": self.version}
        if method == "POST" and path == "/v1/completions":
            return self._completion(body)
        tokenize = {"vllm": ("/tokenize", "prompt"), "me": ("/extras/tokenize", "input")}
        endpoint = tokenize.get(self.owned_by)
        if method == "POST" and endpoint is not None and path == endpoint[0]:
            ids = [self.token_id(w) for w in words(str(body.get(endpoint[1], "")))]
            return {"tokens": ids, "count": len(ids)}
        return None

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> FakeOpenAIServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["FakeOpenAIServer", "words"]
