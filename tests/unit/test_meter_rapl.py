from __future__ import annotations

import errno
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.errors import MeasurementError
from pytest_energy.meters.rapl import (
    RaplMeter,
    RaplPermissionError,
    RaplUnavailableError,
    sample_interval_s,
)

RANGE_UJ = 1_000_000


def add_zone(folder: Path, zone: str, name: str, energy_uj: int = 0) -> Path:
    path = folder / zone
    path.mkdir(parents=True)
    (path / "name").write_text(f"{name}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{RANGE_UJ}\n")
    return path


def set_energy(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


def server_tree(root: Path, packages: int = 1) -> dict[str, Path]:
    """The sysfs layout: subzones nested in their package and linked at the top level."""
    (root / "intel-rapl").mkdir(parents=True)
    (root / "intel-rapl" / "enabled").write_text("1\n")
    zones: dict[str, Path] = {}
    for n in range(packages):
        package = add_zone(root, f"intel-rapl:{n}", f"package-{n}")
        zones[f"package-{n}"] = package
        for m, name in enumerate(["core", "uncore", "dram"]):
            sub = add_zone(package, f"intel-rapl:{n}:{m}", name)
            (root / sub.name).symlink_to(sub)
            zones[f"package-{n}/{name}"] = sub
    return zones


def make_meter(root: Path, **kwargs: Any) -> RaplMeter:
    return RaplMeter(root, background=False, **kwargs)


def test_package_and_dram_are_counted_but_not_core_or_uncore(tmp_path: Path) -> None:
    zones = server_tree(tmp_path)
    meter = make_meter(tmp_path)
    start = meter.read()
    set_energy(zones["package-0"], 300_000)
    set_energy(zones["package-0/dram"], 50_000)
    set_energy(zones["package-0/core"], 200_000)  # inside the package: must not add
    set_energy(zones["package-0/uncore"], 40_000)
    assert meter.read() - start == pytest.approx(0.35)
    assert meter.read_domains() == {"package-0": 0.3, "package-0/dram": 0.05}


def test_packages_of_every_socket_are_summed(tmp_path: Path) -> None:
    zones = server_tree(tmp_path, packages=2)
    meter = make_meter(tmp_path)
    set_energy(zones["package-0"], 100_000)
    set_energy(zones["package-1"], 200_000)
    set_energy(zones["package-1/dram"], 10_000)
    assert meter.read() == pytest.approx(0.31)


def test_psys_platform_zone_is_not_counted(tmp_path: Path) -> None:
    zones = server_tree(tmp_path)
    psys = add_zone(tmp_path, "intel-rapl:1", "psys")
    meter = make_meter(tmp_path)
    set_energy(psys, 900_000)
    set_energy(zones["package-0"], 100_000)
    assert meter.read() == pytest.approx(0.1)


def test_fingerprint_lists_counted_and_skipped_domains(tmp_path: Path) -> None:
    server_tree(tmp_path)
    add_zone(tmp_path, "intel-rapl:1", "psys")
    fingerprint = make_meter(tmp_path).fingerprint()
    assert fingerprint["rapl_counted"] == "package-0,package-0/dram"
    assert fingerprint["rapl_not_counted"] == "package-0/core,package-0/uncore,psys"
    assert fingerprint["cpu"]


def test_wrap_around_once_is_counted(tmp_path: Path) -> None:
    package = add_zone(tmp_path, "intel-rapl:0", "package-0", energy_uj=990_000)
    meter = make_meter(tmp_path)
    set_energy(package, 15_000)
    assert meter.read() == pytest.approx(0.025)


def test_wrap_around_twice_is_counted_by_intermediate_samples(tmp_path: Path) -> None:
    package = add_zone(tmp_path, "intel-rapl:0", "package-0", energy_uj=900_000)
    meter = make_meter(tmp_path)
    for energy_uj in (100_000, 800_000, 50_000):  # wraps, climbs, wraps again
        set_energy(package, energy_uj)
        meter.poll()
    assert meter.read() == pytest.approx((200_000 + 700_000 + 250_000) / 1e6)


def test_sampling_interval_leaves_at_most_one_wrap_between_samples() -> None:
    assert sample_interval_s(262_143_328_850, max_power_w=500.0) == 60.0  # capped
    assert sample_interval_s(1_000_000_000, max_power_w=500.0) == pytest.approx(1.0)


def test_meter_samples_at_the_interval_of_its_smallest_counter(tmp_path: Path) -> None:
    add_zone(tmp_path, "intel-rapl:0", "package-0")
    meter = make_meter(tmp_path, max_power_w=50.0)
    assert meter.sample_interval_s == pytest.approx(RANGE_UJ / 1e6 / 100.0)


def test_background_thread_samples_until_closed(tmp_path: Path) -> None:
    add_zone(tmp_path, "intel-rapl:0", "package-0")
    reads: list[Path] = []

    def counting_read(path: Path) -> str:
        reads.append(path)
        return path.read_text()

    meter = RaplMeter(tmp_path, max_power_w=100.0, read_file=counting_read)  # every 5 ms
    deadline = time.monotonic() + 5.0
    while sum(p.name == "energy_uj" for p in reads) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    meter.close()
    done = len(reads)
    time.sleep(0.03)
    assert done >= 5
    assert len(reads) == done


def test_unreadable_energy_file_says_how_to_grant_access(tmp_path: Path) -> None:
    zones = server_tree(tmp_path)
    (zones["package-0"] / "energy_uj").chmod(0o400)

    def read_as_user(path: Path) -> str:
        # Tests may run as root, which ignores modes: act as an ordinary user.
        if not path.stat().st_mode & stat.S_IROTH:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return path.read_text()

    with pytest.raises(RaplPermissionError) as info:
        RaplMeter(tmp_path, background=False, read_file=read_as_user)
    message = str(info.value)
    assert f"sudo chmod o+r {tmp_path}/intel-rapl:*/energy_uj" in message
    assert "\n" not in message


def test_missing_powercap_folder_is_a_one_line_error(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    with pytest.raises(RaplUnavailableError) as info:
        make_meter(root)
    assert str(info.value) == (
        f"no RAPL powercap counters under {root}; use --energy-meter cpu-estimate or nvml"
    )


def test_powercap_without_rapl_zones_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dtpm").mkdir()
    with pytest.raises(RaplUnavailableError, match="no RAPL powercap counters"):
        make_meter(tmp_path)


def test_mmio_zones_are_used_only_without_msr_zones(tmp_path: Path) -> None:
    msr = tmp_path / "both"
    add_zone(msr, "intel-rapl:0", "package-0", energy_uj=0)
    mmio_twin = add_zone(msr, "intel-rapl-mmio:0", "package-0", energy_uj=0)
    meter = make_meter(msr)
    set_energy(mmio_twin, 500_000)  # the same package seen through MMIO
    assert meter.read() == 0.0

    only = tmp_path / "mmio"
    mmio = add_zone(only, "intel-rapl-mmio:0", "package-0")
    meter = make_meter(only)
    set_energy(mmio, 500_000)
    assert meter.read() == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("energy_j", "duration_s", "reason"),
    [
        (1.0, 0.0, "zero length"),
        (0.0, 0.5, "did not advance"),
        (2500.0, 1.0, "above the plausible 2000 W for 2 package"),
    ],
)
def test_windows_that_cannot_be_measurements_are_refused(
    tmp_path: Path, energy_j: float, duration_s: float, reason: str
) -> None:
    server_tree(tmp_path, packages=2)
    meter = make_meter(tmp_path)
    with pytest.raises(MeasurementError, match=reason):
        meter.check_window(energy_j, duration_s)
    meter.check_window(150.0, 1.0)
