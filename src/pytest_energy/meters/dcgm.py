"""``dcgm``: GPU energy read from NVIDIA DCGM exporters, summed over every node that serves.

Where a model is served on several GPUs or nodes (vLLM, SGLang...), each node
runs dcgm-exporter; ``energy_dcgm_urls`` lists their ``/metrics`` URLs. Each
``read()`` fetches every URL once (``urllib``, ``energy_request_timeout``),
parses the Prometheus text with ``prometheus_client`` and sums the counter
``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (millijoules since boot) of the selected
GPUs, in joules relative to the first read.

Selection (``energy_dcgm_select``): comma-separated ``label=value`` filters on the
exporter's labels (``Hostname``, ``UUID``, ``gpu``, ``device``, ``modelName``...).
Filters on the same label are alternatives, filters on different labels must all
match: ``Hostname=node1,Hostname=node2,gpu=0`` is GPU 0 of node1 and of node2.
Values match exactly; ``gpu`` is the index on its node (NVML order, not
``CUDA_VISIBLE_DEVICES``). Without a selection every GPU of every URL counts.

Where a selected GPU has no energy counter, every selected GPU is measured by
sampling ``DCGM_FI_DEV_POWER_USAGE`` (watts) in a daemon thread and integrating
it (fingerprint ``energy_source: power-samples``). It is still a sensor
(``estimated`` stays false), but coarser: the exporter reports one power value
per collection, so short bursts between collections are missed.

Caveats: the exporter collects every N seconds (``-c``, 30 s by default), so the
counter moves in steps; the interval is probed when the meter is created (two
changes of the summed counter) and windows shorter than ten intervals are
refused. The counters cover whole boards: other work on the same GPUs is
counted. With MIG the exporter repeats the physical GPU's counter for each
instance; it is counted once. A counter that goes backwards (driver reload,
exporter restart) invalidates the window and raises :class:`MeasurementError`.
``prometheus_client`` and ``urllib.request`` are imported on first use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pytest_energy.errors import MeasurementError, MeterError
from pytest_energy.meters.nvml import MAX_PLAUSIBLE_W_PER_GPU
from pytest_energy.meters.sampling import PeriodicSampler, PowerIntegrator

ENERGY_METRIC = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
POWER_METRIC = "DCGM_FI_DEV_POWER_USAGE"
EnergySource = Literal["counter", "power-samples"]

# dcgm-exporter collects every 30 s by default; the probe needs two changes, so
# it waits up to three default intervals and a margin before giving up.
DEFAULT_PROBE_TIMEOUT_S = 100.0
DEFAULT_TIMEOUT_S = 10.0
# The probe polls every 1/40 of the time waited so far (at least 10 ms, at most
# 0.5 s): changes are timed to a few percent of the interval without flooding a
# 30-second exporter with requests.
_PROBE_POLL_FRACTION = 40
_MIN_POLL_S = 0.01
_MAX_PROBE_POLL_S = 0.5
_MAX_POWER_POLL_S = 1.0
_EXPORTER_HINT = "dcgm-exporter serves http://NODE:9400/metrics"


class DcgmError(MeterError):
    """An exporter that cannot be read, or GPUs that cannot be selected or measured."""


@dataclass(frozen=True)
class DcgmGpu:
    """One GPU as an exporter reports it: its labels and the two readings (or None)."""

    url: str
    labels: Mapping[str, str]
    energy_mj: float | None
    power_w: float | None

    @property
    def key(self) -> tuple[str, str]:
        """Identity across scrapes: the URL and the UUID (the gpu index without one)."""
        uuid = self.labels.get("UUID") or f"gpu {self.labels.get('gpu', '?')}"
        return self.url, uuid

    def __str__(self) -> str:
        uuid = self.labels.get("UUID", "no UUID")
        return f"GPU {self.labels.get('gpu', '?')} ({uuid}) at {self.url}"


def fetch_text(url: str, timeout_s: float) -> str:
    """The body of ``GET url``, or a one-line :class:`DcgmError` that says why not."""
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DcgmError(
            f"DCGM exporter {url} answered HTTP {exc.code} {exc.reason}; check the URL in "
            f"energy_dcgm_urls ({_EXPORTER_HINT})"
        ) from None
    except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts included
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            raise DcgmError(
                f"DCGM exporter {url} did not answer within {timeout_s:g} s; check that "
                "dcgm-exporter runs there, or raise energy_request_timeout"
            ) from None
        raise DcgmError(
            f"cannot reach DCGM exporter {url} ({_one_line(reason)}); check that dcgm-exporter "
            f"runs on that node and port and that energy_dcgm_urls is right ({_EXPORTER_HINT})"
        ) from None
    return body.decode("utf-8", errors="replace")


def parse_exporter_text(url: str, text: str) -> list[DcgmGpu]:
    """The GPUs that report the energy counter or power in ``text``, in order of appearance."""
    from prometheus_client.parser import text_string_to_metric_families

    labels: dict[tuple[str, str], Mapping[str, str]] = {}
    readings: dict[str, dict[tuple[str, str], float]] = {ENERGY_METRIC: {}, POWER_METRIC: {}}
    try:
        for family in text_string_to_metric_families(text):
            if family.name not in readings:
                continue
            for sample in family.samples:
                if sample.name not in (family.name, f"{family.name}_total"):
                    continue  # a _created sample, not the reading
                gpu = DcgmGpu(url, dict(sample.labels), None, None)
                labels.setdefault(gpu.key, gpu.labels)  # MIG: one row per instance, same value
                readings[family.name].setdefault(gpu.key, float(sample.value))
    except ValueError as exc:
        raise DcgmError(
            f"{url} did not serve Prometheus text ({_one_line(exc)}); point energy_dcgm_urls at "
            f"dcgm-exporter ({_EXPORTER_HINT})"
        ) from None
    if not labels:
        raise DcgmError(
            f"{url} reports neither {ENERGY_METRIC} nor {POWER_METRIC}; enable them in "
            "dcgm-exporter's counters CSV (-f; its default-counters.csv has both)"
        )
    return [
        DcgmGpu(url, gpu_labels, readings[ENERGY_METRIC].get(key), readings[POWER_METRIC].get(key))
        for key, gpu_labels in labels.items()
    ]


def parse_select(select: str | None) -> dict[str, frozenset[str]]:
    """``label=value,...`` as label -> accepted values (see the module docstring)."""
    filters: dict[str, set[str]] = {}
    for item in (select or "").split(","):
        if not item.strip():
            continue
        label, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not label or not value:
            raise DcgmError(
                f"energy_dcgm_select item {item.strip()!r} is not label=value; write filters "
                "such as Hostname=node1,gpu=0"
            )
        filters.setdefault(label, set()).add(value)
    return {label: frozenset(values) for label, values in filters.items()}


def select_gpus(gpus: Sequence[DcgmGpu], select: str | None) -> list[DcgmGpu]:
    """The GPUs that match ``select``; none is a one-line error listing what exists."""
    filters = parse_select(select)
    chosen = [
        gpu
        for gpu in gpus
        if all(gpu.labels.get(label) in values for label, values in filters.items())
    ]
    if not chosen:
        known = "; ".join(_values_of(gpus, label) for label in filters)
        raise DcgmError(
            f"energy_dcgm_select {select!r} matches none of the {len(gpus)} GPUs the exporters "
            f"report ({known}); choose from these values"
        )
    return chosen


def _values_of(gpus: Sequence[DcgmGpu], label: str) -> str:
    values = {gpu.labels[label] for gpu in gpus if label in gpu.labels}
    if not values:
        return f"no GPU has a {label} label"
    return f"{label}: {', '.join(sorted(values, key=lambda v: (len(v), v)))}"


def _one_line(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


class DcgmMeter:
    """GPU energy in joules from DCGM exporters, summed over the selected GPUs of all URLs.

    ``urls``: dcgm-exporter ``/metrics`` URLs, one per node. ``select``: label
    filters (module docstring). ``timeout_s``: per request. ``collect_interval_s``
    skips the probe; ``probe_timeout_s`` bounds it. ``poll_interval_s``: power
    sampling period in the fallback (default: a quarter of the collection
    interval, at most 1 s); ``background=False`` leaves sampling to explicit
    :meth:`sample_power` calls. Call :meth:`close` at the end of the session.
    """

    name = "dcgm"
    estimated = False

    def __init__(
        self,
        urls: Sequence[str],
        *,
        select: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        collect_interval_s: float | None = None,
        probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        poll_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        background: bool = True,
    ) -> None:
        if not urls:
            raise DcgmError(
                "--energy-meter dcgm needs the exporters' URLs; set energy_dcgm_urls (ini) or "
                "PYTEST_ENERGY_DCGM_URLS to the dcgm-exporter of every node that serves, e.g. "
                "http://node1:9400/metrics"
            )
        self.urls = list(dict.fromkeys(urls))
        self.timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._integrator = PowerIntegrator()
        self._sampler: PeriodicSampler | None = None
        self._last_mj: dict[tuple[str, str], float] = {}
        self._origin_j: float | None = None
        found = [gpu for url in self.urls for gpu in self._scrape(url)]
        _refuse_duplicates(found)
        self.gpus = select_gpus(found, select)
        self.nodes = list(dict.fromkeys(gpu.url for gpu in self.gpus))
        self.source = self._choose_source()
        self.collect_interval_s = (
            collect_interval_s if collect_interval_s is not None else self._probe(probe_timeout_s)
        )
        quarter_s = min(_MAX_POWER_POLL_S, max(_MIN_POLL_S, self.collect_interval_s / 4))
        self.poll_interval_s = quarter_s if poll_interval_s is None else poll_interval_s
        if self.source == "power-samples":
            self.sample_power()
            if background:
                self._sampler = PeriodicSampler(
                    self.sample_power, self.poll_interval_s, "pytest-energy-dcgm"
                )

    def _scrape(self, url: str) -> list[DcgmGpu]:
        return parse_exporter_text(url, fetch_text(url, self.timeout_s))

    def _choose_source(self) -> EnergySource:
        if all(gpu.energy_mj is not None for gpu in self.gpus):
            return "counter"
        for gpu in self.gpus:
            if gpu.power_w is None:
                raise DcgmError(
                    f"{gpu} reports no {POWER_METRIC}, and other selected GPUs no "
                    f"{ENERGY_METRIC}; enable both in dcgm-exporter's counters CSV (-f)"
                )
        return "power-samples"

    def _current(self) -> list[DcgmGpu]:
        """The selected GPUs as the exporters report them now (one request per node)."""
        now = {gpu.key: gpu for url in self.nodes for gpu in self._scrape(url)}
        current = []
        for gpu in self.gpus:
            if gpu.key not in now:
                raise DcgmError(
                    f"{gpu} is no longer reported (exporter restarted or GPU lost); the window "
                    "is invalid, rerun the session"
                )
            current.append(now[gpu.key])
        return current

    def _counter_mj(self) -> float:
        total_mj = 0.0
        for gpu in self._current():
            if gpu.energy_mj is None:
                raise DcgmError(
                    f"{gpu} stopped reporting {ENERGY_METRIC}; check dcgm-exporter and rerun"
                )
            last_mj = self._last_mj.get(gpu.key)
            if last_mj is not None and gpu.energy_mj < last_mj:
                raise MeasurementError(
                    f"{ENERGY_METRIC} of {gpu} went backwards from {last_mj:.0f} to "
                    f"{gpu.energy_mj:.0f} mJ (driver reload or exporter restart); the window is "
                    "invalid, rerun the session"
                )
            self._last_mj[gpu.key] = gpu.energy_mj
            total_mj += gpu.energy_mj
        return total_mj

    def _power_w(self) -> float:
        total_w = 0.0
        for gpu in self._current():
            if gpu.power_w is None:
                raise DcgmError(f"{gpu} stopped reporting {POWER_METRIC}; check dcgm-exporter")
            total_w += gpu.power_w
        return total_w

    def _probe(self, timeout_s: float) -> float:
        """Seconds between two collections: the time between two changes of the summed
        reading, each dated midway between the read before it and the read that saw it
        (a read that waits on a busy machine then shifts a date by half its wait)."""
        value = self._counter_mj if self.source == "counter" else self._power_w
        start_s = self._clock()
        last = value()
        last_s = start_s
        changes: list[float] = []
        while len(changes) < 2:
            waited_s = self._clock() - start_s
            if waited_s >= timeout_s:
                metric = ENERGY_METRIC if self.source == "counter" else POWER_METRIC
                raise DcgmError(
                    f"the summed {metric} of {len(self.gpus)} GPUs at {', '.join(self.nodes)} "
                    f"changed {len(changes)} times in {timeout_s:g} s; a powered GPU's counter "
                    "always advances, so dcgm-exporter is not collecting: check its logs, and "
                    f"that its collect interval (-c, in ms) is under {timeout_s / 2:g} s"
                )
            self._sleep(min(_MAX_PROBE_POLL_S, max(_MIN_POLL_S, waited_s / _PROBE_POLL_FRACTION)))
            before_s = self._clock()
            reading = value()
            if reading != last:
                changes.append((last_s + self._clock()) / 2)
                last = reading
            last_s = before_s
        return changes[1] - changes[0]

    def sample_power(self) -> None:
        """Take one power sample of every selected GPU (the background thread calls this)."""
        power_w = self._power_w()
        now_s = self._clock()
        with self._lock:
            self._integrator.add(now_s, power_w)

    def read(self) -> float:
        if self.source == "counter":
            total_j = self._counter_mj() / 1000
        else:
            error = self._sampler.error if self._sampler is not None else None
            if isinstance(error, MeterError):
                raise error
            if error is not None:
                raise DcgmError(f"DCGM power sampling failed ({_one_line(error)}); rerun")
            with self._lock:
                total_j = self._integrator.total_j(self._clock())
        if self._origin_j is None:
            self._origin_j = total_j
        return total_j - self._origin_j

    def check_window(self, energy_j: float, duration_s: float) -> None:
        """Refuse windows that cannot be a measurement (called by ``EnergyMeter``)."""
        where = f"{len(self.gpus)} GPUs on {len(self.nodes)} nodes"
        if duration_s <= 0:
            raise MeasurementError(f"dcgm window on {where} has zero length; measure more work")
        if energy_j <= 0:
            raise MeasurementError(
                f"dcgm counted {energy_j:.3f} J in {duration_s:.1f} s on {where}; powered GPUs "
                "always draw energy, so an exporter stopped collecting; check dcgm-exporter"
            )
        limit_w = MAX_PLAUSIBLE_W_PER_GPU * len(self.gpus)
        if energy_j / duration_s > limit_w:
            raise MeasurementError(
                f"dcgm counted {energy_j / duration_s:.0f} W on average on {where}, above the "
                f"plausible {limit_w:.0f} W; a counter jumped (driver reload?), rerun"
            )

    def fingerprint(self) -> dict[str, str]:
        """What measured: GPU models, counts, node count, source; the driver as a soft field."""
        drivers = {gpu.labels.get("DCGM_FI_DRIVER_VERSION") for gpu in self.gpus} - {None, ""}
        found = {
            "gpu": ",".join(sorted({gpu.labels.get("modelName", "n/a") for gpu in self.gpus})),
            "gpu_count": str(len(self.gpus)),
            "gpu_uuid": ",".join(gpu.key[1] for gpu in self.gpus),
            "nodes": str(len(self.nodes)),
            "energy_source": self.source,
        }
        if drivers:
            found["nvidia_driver"] = ",".join(sorted(str(driver) for driver in drivers))
        return found

    def close(self) -> None:
        """Stop power sampling (idempotent)."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None


def _refuse_duplicates(gpus: Sequence[DcgmGpu]) -> None:
    seen: dict[str, str] = {}
    for gpu in gpus:
        uuid = gpu.labels.get("UUID")
        if uuid and seen.setdefault(uuid, gpu.url) != gpu.url:
            raise DcgmError(
                f"GPU {uuid} is reported by both {seen[uuid]} and {gpu.url}; list each node's "
                "exporter once in energy_dcgm_urls"
            )
