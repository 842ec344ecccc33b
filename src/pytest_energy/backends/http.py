"""HTTP to a served model: concurrent requests under a bound, retries, a timeout.

The only module that imports httpx, at first use (``pip install
'pytest-energy[served]'``). The backends call it synchronously; inside, each
batch of requests runs on asyncio with at most ``concurrency`` requests in
flight (lm-evaluation-harness's ``num_concurrent``), so a serving engine that
batches continuously sees a full queue.

Connection errors (refused, reset, closed mid-answer) and 5xx answers are
retried after :data:`RETRY_DELAYS_S`; a request that takes longer than
``timeout_s`` is not retried (it would only wait again) and fails with the
option that sets the limit. Every failure is a one-line
:class:`~pytest_energy.errors.ServerError` naming the URL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_energy.errors import ServerError

if TYPE_CHECKING:
    import httpx

    from pytest_energy.backends.traffic import Tally

T = TypeVar("T")

# Waits before the retries of a connection error or a 5xx answer (three retries).
RETRY_DELAYS_S = (0.25, 0.5, 1.0)
_TEXT_CHARS = 200


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise ServerError(
            "a served model (an http(s):// model spec) needs httpx: "
            "pip install 'pytest-energy[served]'"
        ) from None
    return httpx


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, body text and content type."""

    url: str
    status: int
    text: str
    content_type: str

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def summary(self) -> str:
        """``HTTP 404 text/html: <first line>``, for messages."""
        line = self.text.strip().splitlines()[0][:_TEXT_CHARS] if self.text.strip() else ""
        kind = self.content_type.split(";")[0] or "no content type"
        return f"HTTP {self.status} {kind}" + (f": {line}" if line else "")


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, also when the caller
    already runs an event loop (an async test): then on a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class Calls:
    """What a job of :meth:`ServerClient.run` uses to send its requests."""

    def __init__(self, owner: ServerClient, client: httpx.AsyncClient, bound: asyncio.Semaphore):
        self._owner = owner
        self._client = client
        self._bound = bound

    async def request(self, method: str, url: str, body: Any = None) -> Reply:
        async with self._bound:
            return await self._owner.send(self._client, method, url, body)

    async def post_json(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body``; the answer must be HTTP 200 with a JSON object (its usage is
        added to the client's ``tally``)."""
        reply = await self.request("POST", url, body)
        answer = self._owner.json_object(reply, f"POST {url}")
        if self._owner.tally is not None:
            self._owner.tally.add(body, answer)
        return answer


class ServerClient:
    """Requests to one server, named ``server`` in messages (``llama-cpp-python at URL``).

    ``transport`` replaces httpx's network transport (an ``httpx.MockTransport``
    in tests); ``retry_delays_s`` the waits before retries; ``tally`` sums the
    usage of every JSON answer to a POST (:mod:`.traffic`).
    """

    def __init__(
        self,
        server: str,
        *,
        concurrency: int = 16,
        timeout_s: float = 300.0,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        transport: Any = None,
        tally: Tally | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.server = server
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retry_delays_s = tuple(retry_delays_s)
        self.transport = transport
        self.tally = tally

    # -- synchronous entry points -----------------------------------------------------
    def get(self, url: str) -> Reply:
        """One GET, any status below 500 returned as it came."""
        replies: list[Reply] = self.run([lambda calls: calls.request("GET", url)])
        return replies[0]

    def post(self, url: str, body: dict[str, Any]) -> Reply:
        replies: list[Reply] = self.run([lambda calls: calls.request("POST", url, body)])
        return replies[0]

    def run(self, jobs: Sequence[Callable[[Calls], Awaitable[T]]]) -> list[T]:
        """Run every job concurrently (each may send several requests) and return
        their results in order; the first failure cancels the others and is raised."""
        if not jobs:
            return []
        return run_sync(lambda: self._run(jobs))

    # -- the asynchronous core ------------------------------------------------------------
    async def _run(self, jobs: Sequence[Callable[[Calls], Awaitable[T]]]) -> list[T]:
        httpx = _httpx()
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        async with httpx.AsyncClient(
            timeout=self.timeout_s, limits=limits, transport=self.transport, trust_env=False
        ) as client:
            calls = Calls(self, client, asyncio.Semaphore(self.concurrency))

            async def one(job: Callable[[Calls], Awaitable[T]]) -> T:
                return await job(calls)

            tasks = [asyncio.ensure_future(one(job)) for job in jobs]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    async def send(self, client: httpx.AsyncClient, method: str, url: str, body: Any) -> Reply:
        """One request with retries; a 4xx answer is returned, not raised."""
        httpx = _httpx()
        problem = ""
        for delay in (*self.retry_delays_s, None):
            try:
                response = await client.request(method, url, json=body)
            except httpx.TimeoutException:
                raise ServerError(
                    f"{method} {url} took longer than energy_request_timeout "
                    f"({self.timeout_s:g} s); raise energy_request_timeout or lower "
                    "energy_concurrency"
                ) from None
            except httpx.TransportError as exc:
                problem = _transport_problem(exc)
            else:
                reply = Reply(
                    url,
                    response.status_code,
                    response.text,
                    response.headers.get("content-type", ""),
                )
                if reply.status < 500:
                    return reply
                problem = reply.summary()
            if delay is not None:
                await asyncio.sleep(delay)
        raise ServerError(
            f"{self.server}: {method} {url} failed ({problem}) after "
            f"{len(self.retry_delays_s)} retries; start the server or fix the model URL, "
            "and check the server's log"
        )

    def json_object(self, reply: Reply, what: str) -> dict[str, Any]:
        """The JSON object of a 200 answer, else a ServerError naming ``what``."""
        if reply.status != 200:
            raise ServerError(f"{self.server}: {what} was refused ({reply.summary()})")
        data = reply.json()
        if not isinstance(data, dict):
            raise ServerError(
                f"{self.server}: {what} answered {reply.summary()}, "
                "not an OpenAI-compatible JSON object"
            )
        return data


def _transport_problem(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0][:_TEXT_CHARS] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
