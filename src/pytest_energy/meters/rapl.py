"""``rapl``: CPU package and DRAM energy from the Linux powercap counters.

Which domains are counted (so nothing is counted twice):

- every top-level ``package-N`` zone (``intel-rapl:N``): the whole socket;
- every ``dram`` zone, normally the subzone ``intel-rapl:N:M``. The kernel lists
  it under the package, but the package domain does not include DRAM on the
  server parts that have a DRAM domain, so it is added;
- never ``core`` or ``uncore`` subzones: they are inside their package;
- never ``psys``: it is the platform total (package, DRAM, chipset...) of client
  machines, so adding it would double count, and it does not exist on servers.

The fingerprint lists the counted and the skipped domains. AMD Zen processors
use the same ``intel-rapl`` names (package and core, no DRAM). ``intel-rapl-mmio``
zones are read only where no ``intel-rapl`` zone exists: they expose the same
package counter through another interface.

Counters are in microjoules and wrap at ``max_energy_range_uj``. A reading that
went backwards is one wrap; a background thread samples the counters well within
the time the fastest of them takes to wrap at :data:`DEFAULT_MAX_POWER_W`, so long
windows that would wrap several times are still counted. Since Linux 5.10
``energy_uj`` is readable by root only; :class:`RaplPermissionError` says how to
open it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_energy.cpuinfo import cpu_flags, cpu_model, vector_isa
from pytest_energy.errors import MeasurementError, MeterError
from pytest_energy.meters.sampling import PeriodicSampler

DEFAULT_ROOT = Path("/sys/class/powercap")
# Worst-case power of one domain, used only to decide how often to sample so a
# counter cannot wrap twice between two samples (the largest server sockets
# draw about 400-500 W).
DEFAULT_MAX_POWER_W = 500.0
MAX_SAMPLE_INTERVAL_S = 60.0
# RAPL counters update about every millisecond (Intel SDM, MSR_PKG_ENERGY_STATUS).
RAPL_UPDATE_PERIOD_S = 0.001
# Above this average per counted package a window is a broken reading.
MAX_PLAUSIBLE_W_PER_PACKAGE = 1000.0

_CONTROL_TYPES = ("intel-rapl", "intel-rapl-mmio")
_ZONE = re.compile(r"^(intel-rapl|intel-rapl-mmio):(\d+)(?::(\d+))?$")


class RaplUnavailableError(MeterError):
    """No usable powercap RAPL counters on this machine."""


class RaplPermissionError(MeterError):
    """The counters exist but ``energy_uj`` is not readable by this user."""


@dataclass(frozen=True)
class RaplDomain:
    """One counted powercap zone: ``zone`` is its folder name, ``label`` what reports show."""

    zone: str
    label: str
    path: Path
    max_range_uj: int


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def sample_interval_s(
    max_range_uj: int,
    max_power_w: float = DEFAULT_MAX_POWER_W,
    cap_s: float = MAX_SAMPLE_INTERVAL_S,
) -> float:
    """Seconds between samples so a counter wraps at most once between two of them.

    At ``max_power_w`` the counter wraps every ``range / max_power`` seconds;
    sampling twice as often leaves a margin for scheduling delays.
    """
    return min(cap_s, max_range_uj / 1e6 / (2 * max_power_w))


def discover_domains(
    root: Path, read_file: Callable[[Path], str] = _read_text
) -> tuple[list[RaplDomain], list[str]]:
    """The domains to count under ``root`` and the labels of those skipped on purpose."""
    unavailable = RaplUnavailableError(
        f"no RAPL powercap counters under {root}; use --energy-meter cpu-estimate or nvml"
    )
    if not root.is_dir():
        raise unavailable
    zones: dict[str, Path] = {}
    for entry in root.iterdir():
        if _ZONE.match(entry.name):
            zones.setdefault(entry.name, entry)
            # Subzones also appear nested inside their parent's folder.
            for child in entry.iterdir() if entry.is_dir() else ():
                if _ZONE.match(child.name):
                    zones.setdefault(child.name, child)
    control = next((c for c in _CONTROL_TYPES if any(_control(z) == c for z in zones)), None)
    if control is None:
        raise unavailable

    def key(zone: str) -> tuple[int, ...]:
        return tuple(int(part) for part in zone.split(":")[1:])

    names = {z: read_file(p / "name").strip() for z, p in zones.items() if _control(z) == control}
    counted: list[RaplDomain] = []
    skipped: list[str] = []
    for zone in sorted(names, key=key):
        name = names[zone]
        parent = ":".join(zone.split(":")[:2])
        label = name if parent == zone else f"{names.get(parent, parent)}/{name}"
        if name.startswith("package") or name == "dram":
            path = zones[zone]
            counted.append(RaplDomain(zone, label, path, _max_range(path, read_file)))
        else:
            skipped.append(label)
    if not counted:
        raise unavailable
    return counted, skipped


def _control(zone: str) -> str:
    return zone.split(":", 1)[0]


def _max_range(path: Path, read_file: Callable[[Path], str]) -> int:
    try:
        return int(read_file(path / "max_energy_range_uj"))
    except (OSError, ValueError) as exc:
        raise MeterError(
            f"cannot read {path / 'max_energy_range_uj'} ({exc}); without it RAPL "
            "wrap-around cannot be corrected; use --energy-meter cpu-estimate or nvml"
        ) from None


class RaplMeter:
    """CPU package (+ DRAM) energy from powercap RAPL counters, in joules.

    Measures the whole socket, not this process: anything else running on the
    machine is counted too. ``root`` is the powercap folder (a fake tree in
    tests); ``background=False`` leaves sampling to explicit :meth:`poll` calls.
    ``read_file`` reads one sysfs file (tests use it to act as a non-root user).
    """

    name = "rapl"
    estimated = False
    update_period_s = RAPL_UPDATE_PERIOD_S

    def __init__(
        self,
        root: Path = DEFAULT_ROOT,
        *,
        max_power_w: float = DEFAULT_MAX_POWER_W,
        background: bool = True,
        read_file: Callable[[Path], str] = _read_text,
    ) -> None:
        self.root = root
        self._read_file = read_file
        self.domains, self.skipped = discover_domains(root, read_file)
        self._lock = threading.Lock()
        self._last_uj = {d.zone: self._read_uj(d) for d in self.domains}
        self._total_j = dict.fromkeys(self._last_uj, 0.0)
        self.sample_interval_s = min(
            sample_interval_s(d.max_range_uj, max_power_w) for d in self.domains
        )
        self._sampler = (
            PeriodicSampler(self.poll, self.sample_interval_s, "pytest-energy-rapl")
            if background
            else None
        )

    def _read_uj(self, domain: RaplDomain) -> int:
        path = domain.path / "energy_uj"
        try:
            return int(self._read_file(path))
        except PermissionError:
            raise RaplPermissionError(
                f"cannot read {path}: RAPL energy is root-only since Linux 5.10; run "
                f"'sudo chmod o+r {self.root}/{_control(domain.zone)}:*/energy_uj' (or add a "
                "udev rule, or run as root), or use --energy-meter cpu-estimate"
            ) from None
        except (OSError, ValueError) as exc:
            message = f"cannot read {path} ({exc}); use --energy-meter cpu-estimate"
            raise MeterError(message) from None

    def poll(self) -> None:
        """Read every counter and add what it advanced since the last poll (one wrap at most)."""
        with self._lock:
            for domain in self.domains:
                raw = self._read_uj(domain)
                delta = raw - self._last_uj[domain.zone]
                if delta < 0:
                    delta += domain.max_range_uj
                self._total_j[domain.zone] += delta / 1e6
                self._last_uj[domain.zone] = raw

    def read_domains(self) -> dict[str, float]:
        """Joules counted per domain label since the meter was created."""
        self._raise_sampler_error()
        self.poll()
        with self._lock:
            return {d.label: self._total_j[d.zone] for d in self.domains}

    def read(self) -> float:
        return sum(self.read_domains().values())

    def _raise_sampler_error(self) -> None:
        error = self._sampler.error if self._sampler is not None else None
        if isinstance(error, MeterError):
            raise error
        if error is not None:
            raise MeterError(f"rapl background sampling failed ({error}); rerun the session")

    @property
    def packages(self) -> int:
        return sum(1 for d in self.domains if d.label.startswith("package") and "/" not in d.label)

    def check_window(self, energy_j: float, duration_s: float) -> None:
        """Refuse windows that cannot be a measurement (called by ``EnergyMeter``)."""
        if duration_s <= 0:
            raise MeasurementError("rapl window has zero length; measure a larger workload")
        if energy_j <= 0:
            raise MeasurementError(
                f"rapl counted {energy_j:.3f} J in {duration_s * 1000:.1f} ms; a CPU package "
                "always draws power, so the counters did not advance; check the powercap files"
            )
        limit_w = MAX_PLAUSIBLE_W_PER_PACKAGE * max(self.packages, 1)
        if energy_j / duration_s > limit_w:
            raise MeasurementError(
                f"rapl counted {energy_j / duration_s:.0f} W on average, above the plausible "
                f"{limit_w:.0f} W for {max(self.packages, 1)} package(s); a counter wrapped "
                "unnoticed or was reset"
            )

    def fingerprint(self) -> dict[str, str]:
        return {
            "cpu": cpu_model(),
            "cpu_isa": vector_isa(cpu_flags()),
            "rapl_counted": ",".join(d.label for d in self.domains),
            "rapl_not_counted": ",".join(self.skipped) or "none",
        }

    def close(self) -> None:
        """Stop the background sampler (idempotent)."""
        if self._sampler is not None:
            self._sampler.close()
