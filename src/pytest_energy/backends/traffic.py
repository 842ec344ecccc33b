"""Whether a served model's server served only us during a measured window (exclusivity).

A meter reads the energy of the GPUs (or CPU) that serve the model, so another
client's requests in the same window add their joules to ours. Where the
server exposes Prometheus token counters at ``/metrics`` on its host and port
(:data:`COUNTERS`: vLLM; SGLang with ``--enable-metrics``; llama.cpp's
``llama-server`` with ``--metrics``; TGI), each evaluation's measured sample
reads them at its start and end and compares the tokens the server served with
the tokens our requests accounted in ``usage`` (:class:`Tally`):

* ours counts every answer's ``completion_tokens`` and its ``prompt_tokens``
  once per sample asked for (vLLM counts an ``n=k`` request's prompt k times,
  its usage once), so our own requests never look like someone else's;
* prompt and generated tokens are compared apart: the prompt tokens a server
  did not have to compute (llama.cpp counts only those it processed, not the
  reused prefix) must not hide another client's generated ones;
* served more than ours by over :data:`SLACK_TOKENS` plus :data:`SLACK_FRACTION`
  of ours means other traffic shared the window: the result is marked shared
  (``exclusive: false``) and never compared with an exclusive baseline. The
  slack absorbs what the counters see and usage does not: a request retried
  after a dropped connection that the server had counted, or one cancelled
  when a sibling failed;
* a server without these counters gives ``exclusive: null`` (unknown).

What a server counting only computed prompt tokens cannot show: another
client's prompt tokens up to the prefix tokens our requests reused. A client
that generates anything shows in the generated tokens.

Counters move when the server has finished a step, which can be a moment after
its answer reached us; every reading therefore waits (up to
:data:`SETTLE_S`) until the server's generated tokens since the previous
reading cover ours, so that our last tokens are not counted in the next window
as someone else's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from pytest_energy.errors import ServerError

if TYPE_CHECKING:
    from pytest_energy.backends.http import ServerClient

# The counters each server kind exposes: (prompt tokens, generated tokens). TGI's
# are histograms of tokens per request: their sums count the tokens.
COUNTERS = (
    ("vllm:prompt_tokens_total", "vllm:generation_tokens_total"),
    ("sglang:prompt_tokens_total", "sglang:generation_tokens_total"),
    ("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total"),
    ("tgi_request_input_length_sum", "tgi_request_generated_tokens_sum"),
)
SLACK_TOKENS = 16
SLACK_FRACTION = 0.01
SETTLE_S = 1.0
_SETTLE_STEP_S = 0.05


@dataclass(frozen=True)
class Tokens:
    """Prompt and generated tokens, as a counter reading or a difference of two."""

    prompt: int = 0
    generated: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.generated

    def __sub__(self, other: Tokens) -> Tokens:
        return Tokens(self.prompt - other.prompt, self.generated - other.generated)


class Tally:
    """Tokens our requests were served, summed from every answer's ``usage``.

    The HTTP client calls :meth:`add` with each completion request it sent and the
    JSON answer it got; answers without usage add nothing.
    """

    def __init__(self) -> None:
        self.tokens = Tokens()

    def add(self, request: Mapping[str, Any], answer: Mapping[str, Any]) -> None:
        usage = answer.get("usage")
        if not isinstance(usage, Mapping):
            return
        prompt, generated = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not (_count(prompt) and _count(generated)):
            return
        samples = request.get("n")
        times = samples if _count(samples) and samples > 1 else 1
        self.tokens = Tokens(self.tokens.prompt + prompt * times, self.tokens.generated + generated)


@dataclass
class TrafficWindow:
    """What the server served during one window, against what we accounted.

    Filled when the ``with`` block of :meth:`ServerTraffic.window` ends.
    ``exclusive`` stays None when the server reports no token counters;
    ``other_tokens`` is how many tokens it served beyond ours (None: unknown).
    """

    exclusive: bool | None = None
    other_tokens: int | None = None
    served_tokens: int | None = None
    our_tokens: int | None = None

    def judge(self, served: Tokens, ours: Tokens) -> None:
        """Fill in the verdict from the server's counters and our usage over the window."""
        other = max(0, served.prompt - ours.prompt) + max(0, served.generated - ours.generated)
        self.exclusive = other <= SLACK_TOKENS + SLACK_FRACTION * ours.total
        self.other_tokens, self.served_tokens, self.our_tokens = other, served.total, ours.total


def parse_counters(text: str) -> Tokens | None:
    """The server's token counters in Prometheus text, summed over their label sets
    (models, data-parallel engines); None when it has none of :data:`COUNTERS`."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[sample.name] = found.get(sample.name, 0.0) + float(sample.value)
    except ValueError:
        return None
    for prompt, generated in COUNTERS:
        if prompt in found and generated in found:
            return Tokens(round(found[prompt]), round(found[generated]))
    return None


class ServerTraffic:
    """The token counters of one server, read around measured windows.

    ``read_metrics`` returns the ``/metrics`` text, or None when the server
    answers without it; ``tally`` is what our requests were served.
    """

    def __init__(
        self,
        read_metrics: Callable[[], str | None],
        tally: Tally,
        *,
        settle_s: float = SETTLE_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._read_metrics = read_metrics
        self.tally = tally
        self._settle_s = settle_s
        self._sleep = sleep
        # The last settled reading: the server's counters and our tally then.
        self._last: tuple[Tokens, Tokens] | None = None
        self.available = self._settled() is not None

    @classmethod
    def of(cls, client: ServerClient, root_url: str, tally: Tally) -> ServerTraffic:
        """The counters at ``root_url/metrics``, through ``client``."""
        url = f"{root_url}/metrics"

        def read() -> str | None:
            reply = client.get(url)
            return reply.text if reply.status == 200 else None

        return cls(read, tally)

    def _counters(self) -> Tokens | None:
        try:
            text = self._read_metrics()
        except ServerError:
            return None  # no answer here: the requests themselves will say why
        return None if text is None else parse_counters(text)

    def _settled(self) -> tuple[Tokens, Tokens] | None:
        """A reading once the server has counted all our tokens since the last one."""
        deadline = time.monotonic() + self._settle_s
        while True:
            ours, served = self.tally.tokens, self._counters()
            if served is None:
                return None
            if self._last is None:
                break
            (last_served, last_ours) = self._last
            lagging = (served - last_served).generated < (ours - last_ours).generated
            if not lagging or time.monotonic() >= deadline:
                break
            self._sleep(_SETTLE_STEP_S)
        self._last = (served, ours)
        return self._last

    @contextmanager
    def window(self) -> Iterator[TrafficWindow]:
        """``with traffic.window() as found: ...``; then ``found.exclusive`` says.

        A server without counters leaves it unknown; nothing is read after a
        block that raised.
        """
        found = TrafficWindow()
        start = self._settled() if self.available else None
        yield found
        end = self._settled() if start is not None else None
        if start is not None and end is not None:
            found.judge(end[0] - start[0], end[1] - start[1])


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


__all__ = [
    "COUNTERS",
    "SLACK_FRACTION",
    "SLACK_TOKENS",
    "ServerTraffic",
    "Tally",
    "Tokens",
    "TrafficWindow",
    "parse_counters",
]
