"""A DCGM exporter on loopback, for testing the ``dcgm`` meter without GPUs or a cluster.

It serves recorded dcgm-exporter text (``/metrics`` of a real node, or one written
in its format) on ``http://127.0.0.1:PORT/metrics``::

    with FakeDcgmExporter(recorded_text) as exporter:
        meter = DcgmMeter([exporter.url], collect_interval_s=1.0)
        exporter.add_energy(5.0)  # every GPU drew 5 J more
        assert meter.read() == pytest.approx(5.0 * exporter.gpu_count)

The text is served as recorded, except the values of the energy counter
(``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``, mJ) and the power gauge
(``DCGM_FI_DEV_POWER_USAGE``, W), which the fake computes per GPU (by ``UUID``):

- ``add_energy(joules, uuid=None)``: the counter of every GPU (or of one) advances.
- ``collect_interval_s``: the counter also advances by the GPU's power for every
  whole interval since the fake started, in steps, like an exporter that collects
  every interval (slow updates); ``power_w`` overrides the recorded power.
- ``script_energy(offsets_j)``: the k-th request after the call serves every
  counter ``offsets_j[k]`` joules above its value (the last offset repeats), so a
  test scripts the values each read sees, a backwards step included.
- ``reset_counter(uuid=None)``: the counter restarts from zero (driver reload).
- ``drop(metric)``: the metric disappears (its HELP, TYPE and sample lines).
- ``respond_with(status, body, content_type)``: every request gets this answer
  instead (an error page, HTML, JSON); ``delay_s``: each answer waits this long.

``requests`` counts the requests served. Call :meth:`close` (or use ``with``).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

ENERGY_METRIC = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
POWER_METRIC = "DCGM_FI_DEV_POWER_USAGE"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

_SAMPLE = re.compile(r"^(?P<head>(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?)\s+\S+")
_COMMENT = re.compile(r"^#\s*(?:HELP|TYPE)\s+(?P<name>\S+)")
_UUID = re.compile(r'(?:^|,)UUID="(?P<uuid>[^"]*)"')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeDcgmExporter

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout test) is expected: no traceback on stderr."""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body, content_type = cast(_Server, self.server).fake.answer(self.path)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``requests`` instead of a log."""


class FakeDcgmExporter:
    """A loopback HTTP server that serves ``recorded`` dcgm-exporter text at ``url``."""

    def __init__(
        self,
        recorded: str,
        *,
        collect_interval_s: float | None = None,
        power_w: float | None = None,
        delay_s: float = 0.0,
        path: str = "/metrics",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recorded = recorded
        self.collect_interval_s = collect_interval_s
        self.power_w = power_w
        self.delay_s = delay_s
        self.path = path
        self.requests = 0
        self._clock = clock
        self._start_s = clock()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._recorded_mj = self._recorded_values(ENERGY_METRIC)
        self._recorded_w = self._recorded_values(POWER_METRIC)
        self._added_mj = dict.fromkeys(self._recorded_mj, 0.0)
        self._script_mj: list[float] = []
        self._script_from = 0
        self._dropped: set[str] = set()
        self._override: tuple[int, bytes, str] | None = None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        # A short poll keeps close() quick (the default 0.5 s is paid at every close).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-dcgm-exporter",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    @property
    def uuids(self) -> list[str]:
        """The GPUs of the recorded text that report the energy counter, in order."""
        return list(self._recorded_mj)

    @property
    def gpu_count(self) -> int:
        return len(self._recorded_mj)

    def _recorded_values(self, metric: str) -> dict[str, float]:
        values: dict[str, float] = {}
        for line in self.recorded.splitlines():
            match = _SAMPLE.match(line)
            uuid = _UUID.search(match["labels"] or "") if match else None
            if match and match["name"] == metric and uuid:
                values.setdefault(uuid["uuid"], float(line.split()[-1]))
        return values

    # What a test changes

    def add_energy(self, joules: float, uuid: str | None = None) -> None:
        with self._lock:
            for key in self._gpus(uuid):
                self._added_mj[key] += joules * 1000

    def script_energy(self, offsets_j: Sequence[float]) -> None:
        with self._lock:
            self._script_mj = [offset * 1000 for offset in offsets_j]
            self._script_from = self.requests

    def reset_counter(self, uuid: str | None = None) -> None:
        with self._lock:
            for key in self._gpus(uuid):
                self._added_mj[key] -= self._energy_mj(key, 0.0)

    def drop(self, metric: str) -> None:
        with self._lock:
            self._dropped.add(metric)

    def respond_with(
        self, status: int, body: str, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        with self._lock:
            self._override = (status, body.encode(), content_type)

    def _gpus(self, uuid: str | None) -> list[str]:
        if uuid is None:
            return list(self._added_mj)
        if uuid not in self._added_mj:
            raise KeyError(f"no GPU {uuid} in the recorded text; known: {self.uuids}")
        return [uuid]

    # Serving

    def _power(self, uuid: str) -> float:
        return self.power_w if self.power_w is not None else self._recorded_w.get(uuid, 0.0)

    def _energy_mj(self, uuid: str, script_mj: float) -> float:
        value = self._recorded_mj[uuid] + self._added_mj[uuid] + script_mj
        if self.collect_interval_s is not None:
            steps = math.floor((self._clock() - self._start_s) / self.collect_interval_s)
            value += steps * self.collect_interval_s * self._power(uuid) * 1000
        return value

    def answer(self, path: str) -> tuple[int, bytes, str]:
        """Status, body and content type for a GET of ``path`` (the handler calls this)."""
        if self.delay_s:
            self._closing.wait(self.delay_s)
        with self._lock:
            self.requests += 1
            if self._override is not None:
                return self._override
            if path.split("?")[0] != self.path:
                return 404, b"404 page not found\n", "text/plain; charset=utf-8"
            script_mj = 0.0
            if self._script_mj:
                step = min(self.requests - 1 - self._script_from, len(self._script_mj) - 1)
                script_mj = self._script_mj[step]
            return 200, self._render(script_mj).encode(), PROMETHEUS_TEXT

    def _render(self, script_mj: float) -> str:
        lines = []
        for line in self.recorded.splitlines():
            comment = _COMMENT.match(line)
            sample = _SAMPLE.match(line)
            name = comment["name"] if comment else sample["name"] if sample else None
            if name in self._dropped:
                continue
            uuid = _UUID.search(sample["labels"] or "") if sample else None
            if sample and uuid and name == ENERGY_METRIC and uuid["uuid"] in self._added_mj:
                line = f"{sample['head']} {self._energy_mj(uuid['uuid'], script_mj):.0f}"
            elif sample and uuid and name == POWER_METRIC and self.power_w is not None:
                line = f"{sample['head']} {self.power_w:.6f}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FakeDcgmExporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
