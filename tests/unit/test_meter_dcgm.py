"""The dcgm meter against recorded dcgm-exporter text served on loopback (2 nodes x 4 GPUs)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_energy.errors import MeasurementError, MeterError
from pytest_energy.fingerprint import SOFT_FIELDS
from pytest_energy.meters.base import EnergyMeter
from pytest_energy.meters.dcgm import (
    ENERGY_METRIC,
    POWER_METRIC,
    DcgmError,
    DcgmMeter,
    parse_exporter_text,
)
from pytest_energy.meters.select import (
    MIN_WINDOW_PERIODS,
    EnergyEstimateWarning,
    close_meter,
    create_meter,
)
from pytest_energy.settings import Settings
from pytest_energy.testing import FakeClock, FakeNvml
from pytest_energy.testing.dcgm import FakeDcgmExporter

DATA = Path(__file__).parent / "data"
NODE1 = (DATA / "dcgm_node1.txt").read_text()
NODE2 = (DATA / "dcgm_node2.txt").read_text()


@pytest.fixture
def node1() -> Iterator[FakeDcgmExporter]:
    with FakeDcgmExporter(NODE1) as exporter:
        yield exporter


Nodes = tuple[FakeDcgmExporter, FakeDcgmExporter]


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with FakeDcgmExporter(NODE1) as node1, FakeDcgmExporter(NODE2) as node2:
        yield node1, node2


def meter_on(*exporters: FakeDcgmExporter, **options: object) -> DcgmMeter:
    """A meter that skips the interval probe (the exporters' counters move only by hand)."""
    options.setdefault("collect_interval_s", 1.0)
    options.setdefault("timeout_s", 5.0)
    return DcgmMeter([e.url for e in exporters], **options)  # type: ignore[arg-type]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/metrics"


def error_of(exception: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exception.value)
    assert "\n" not in message
    assert ";" in message  # what went wrong; the fix
    return message


def test_recorded_text_parses_into_four_gpus_with_both_readings() -> None:
    gpus = parse_exporter_text("http://node1:9400/metrics", NODE1)
    assert [gpu.labels["gpu"] for gpu in gpus] == ["0", "1", "2", "3"]
    assert gpus[0].energy_mj == 41283550112
    assert gpus[0].power_w == pytest.approx(312.456)
    assert gpus[0].labels["Hostname"] == "node1"


def test_sums_every_gpu_of_every_node_in_joules_from_the_first_read(nodes: Nodes) -> None:
    node1, node2 = nodes
    meter = meter_on(node1, node2)
    assert len(meter.gpus) == 8
    assert meter.read() == 0.0
    node1.add_energy(2.0)  # 4 GPUs x 2 J
    node2.add_energy(3.5, uuid=node2.uuids[1])
    assert meter.read() == pytest.approx(4 * 2.0 + 3.5)
    node2.add_energy(0.25)
    assert meter.read() == pytest.approx(11.5 + 4 * 0.25)


def test_a_window_counts_the_energy_drawn_inside_it(nodes: Nodes) -> None:
    node1, node2 = nodes
    energy = EnergyMeter(meter_on(node1, node2))
    with energy.window() as window:
        node1.add_energy(1.0)
        node2.add_energy(0.5)
        time.sleep(0.05)
    assert window.energy_j == pytest.approx(6.0)
    assert window.meter == "dcgm"
    assert not window.estimated


def test_mig_instances_repeating_a_gpu_counter_count_it_once() -> None:
    row = (
        'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="0",UUID="GPU-a",device="nvidia0",'
        'modelName="NVIDIA A100-SXM4-80GB",GPU_I_PROFILE="2g.20gb",GPU_I_ID="{i}",'
        'Hostname="node1"}} 257858316'
    )
    text = "\n".join(row.format(i=i) for i in (3, 5)) + "\n"
    gpus = parse_exporter_text("http://node1:9400/metrics", text)
    assert len(gpus) == 1
    assert gpus[0].energy_mj == 257858316


# Selection


def test_selection_by_hostname_counts_and_requests_only_that_node(nodes: Nodes) -> None:
    node1, node2 = nodes
    meter = meter_on(node1, node2, select="Hostname=node2")
    assert [gpu.labels["Hostname"] for gpu in meter.gpus] == ["node2"] * 4
    assert meter.fingerprint()["nodes"] == "1"
    meter.read()
    requests = node1.requests
    node1.add_energy(10.0)
    node2.add_energy(1.0)
    assert meter.read() == pytest.approx(4.0)
    assert node1.requests == requests


def test_selection_by_gpu_index_takes_that_index_on_every_node(nodes: Nodes) -> None:
    node1, node2 = nodes
    meter = meter_on(node1, node2, select="gpu=0")
    assert [(g.labels["Hostname"], g.labels["gpu"]) for g in meter.gpus] == [
        ("node1", "0"),
        ("node2", "0"),
    ]
    meter.read()
    node1.add_energy(1.0)
    assert meter.read() == pytest.approx(1.0)


def test_filters_on_one_label_are_alternatives_and_on_different_labels_all_apply(
    nodes: Nodes,
) -> None:
    node1, node2 = nodes
    meter = meter_on(node1, node2, select="gpu=0, gpu=3, Hostname=node1")
    assert [(g.labels["Hostname"], g.labels["gpu"]) for g in meter.gpus] == [
        ("node1", "0"),
        ("node1", "3"),
    ]


def test_selection_by_uuid(nodes: Nodes) -> None:
    node1, node2 = nodes
    uuid = node2.uuids[2]
    meter = meter_on(node1, node2, select=f"UUID={uuid}")
    assert [gpu.labels["UUID"] for gpu in meter.gpus] == [uuid]
    meter.read()
    node2.add_energy(7.0)
    assert meter.read() == pytest.approx(7.0)
    assert meter.fingerprint()["gpu_count"] == "1"


def test_a_selection_matching_nothing_lists_what_exists(nodes: Nodes) -> None:
    node1, node2 = nodes
    with pytest.raises(DcgmError) as info:
        meter_on(node1, node2, select="Hostname=node3,gpu=0,rack=a")
    message = error_of(info)
    assert "'Hostname=node3,gpu=0,rack=a' matches none of the 8 GPUs" in message
    assert "(Hostname: node1, node2; gpu: 0, 1, 2, 3; no GPU has a rack label)" in message


def test_a_malformed_selection_is_a_one_line_error(node1: FakeDcgmExporter) -> None:
    with pytest.raises(DcgmError) as info:
        meter_on(node1, select="Hostname=node1,gpu")
    assert "energy_dcgm_select item 'gpu' is not label=value" in error_of(info)


# Counters that step, stall or go backwards


def test_a_counter_reset_mid_window_names_the_url_gpu_values_and_fix(nodes: Nodes) -> None:
    node1, node2 = nodes
    energy = EnergyMeter(meter_on(node1, node2))
    with pytest.raises(MeasurementError) as info, energy.window():
        node2.reset_counter(node2.uuids[3])
    message = error_of(info)
    assert node2.url in message
    assert f"GPU 3 ({node2.uuids[3]})" in message
    assert "went backwards from 38977401236 to 0 mJ" in message
    assert "the window is invalid, rerun" in message


def test_scripted_counter_values_per_read(node1: FakeDcgmExporter) -> None:
    meter = meter_on(node1)
    node1.script_energy([0.0, 10.0, 25.0, 20.0])
    assert [meter.read(), meter.read(), meter.read()] == pytest.approx([0.0, 40.0, 100.0])
    with pytest.raises(MeasurementError, match="went backwards"):
        meter.read()


@pytest.mark.parametrize("interval_s", [0.2, 30.0])
def test_the_probe_measures_the_collection_interval(interval_s: float) -> None:
    # One clock for exporter and meter, moved by the meter's sleeps: no timing here.
    clock = FakeClock(start_s=0.05)
    with FakeDcgmExporter(NODE1, collect_interval_s=interval_s, clock=clock) as exporter:
        meter = DcgmMeter(
            [exporter.url], clock=clock, sleep=clock.advance, probe_timeout_s=4 * interval_s
        )
    meter.close()
    # Each change is dated within half a poll of when it happened.
    assert meter.collect_interval_s == pytest.approx(interval_s, rel=0.05)


def test_the_session_meter_sets_ten_probed_intervals_as_the_shortest_window() -> None:
    with FakeDcgmExporter(NODE1, collect_interval_s=0.2) as exporter:
        meter = create_meter("dcgm", Settings(dcgm_urls=(exporter.url,)))
    close_meter(meter)
    assert isinstance(meter.meter, DcgmMeter)
    # Real time on a loopback server: the probe is near 0.2 s, however busy the machine.
    assert 0.1 < meter.meter.collect_interval_s < 0.4
    assert meter.min_window_s == pytest.approx(MIN_WINDOW_PERIODS * meter.meter.collect_interval_s)


def test_a_counter_that_never_changes_during_the_probe_is_an_error(
    node1: FakeDcgmExporter,
) -> None:
    with pytest.raises(DcgmError) as info:
        DcgmMeter([node1.url], probe_timeout_s=0.3)
    message = error_of(info)
    assert f"summed {ENERGY_METRIC} of 4 GPUs at {node1.url} changed 0 times in 0.3 s" in message
    assert "dcgm-exporter is not collecting" in message


def test_a_window_without_energy_is_refused(node1: FakeDcgmExporter) -> None:
    energy = EnergyMeter(meter_on(node1))
    refused = pytest.raises(MeasurementError, match=r"counted 0\.000 J .* exporter stopped")
    with refused, energy.window():
        time.sleep(0.01)


# Power fallback


def test_without_the_counter_power_samples_are_integrated() -> None:
    clock = FakeClock()
    with FakeDcgmExporter(NODE1, power_w=250.0) as exporter:
        exporter.drop(ENERGY_METRIC)
        meter = meter_on(exporter, clock=clock, background=False)
        assert meter.source == "power-samples"
        assert meter.read() == 0.0
        clock.advance(2.0)
        meter.sample_power()
        assert meter.read() == pytest.approx(2.0 * 250.0 * 4)
        clock.advance(1.0)  # the last power is held until the read
        assert meter.read() == pytest.approx(3.0 * 250.0 * 4)
    assert not meter.estimated
    assert meter.fingerprint()["energy_source"] == "power-samples"


def test_power_samples_run_in_the_background_until_closed() -> None:
    with FakeDcgmExporter(NODE1, power_w=100.0) as exporter:
        exporter.drop(ENERGY_METRIC)
        meter = meter_on(exporter, poll_interval_s=0.01)
        meter.read()
        start_s = time.monotonic()
        time.sleep(0.2)
        energy_j = meter.read()
        elapsed_s = time.monotonic() - start_s
        meter.close()
        meter.close()
    assert energy_j == pytest.approx(400.0 * elapsed_s, rel=0.3)


# Bad input: one line, naming the URL or metric and the fix; fingerprint; selection by name


def test_no_urls_tells_which_setting_to_set() -> None:
    with pytest.raises(MeterError) as info:
        create_meter("dcgm", Settings())
    assert "set energy_dcgm_urls" in error_of(info)
    assert "PYTEST_ENERGY_DCGM_URLS" in str(info.value)


def test_an_unreachable_url_is_named() -> None:
    url = closed_port_url()
    with pytest.raises(DcgmError) as info:
        DcgmMeter([url], timeout_s=2.0)
    message = error_of(info)
    assert f"cannot reach DCGM exporter {url}" in message
    assert "check that dcgm-exporter runs on that node and port" in message


def test_a_page_that_is_not_prometheus_text_is_named(node1: FakeDcgmExporter) -> None:
    node1.respond_with(200, "<html>\n<body>Grafana</body>\n</html>\n", "text/html")
    with pytest.raises(DcgmError) as info:
        meter_on(node1)
    message = error_of(info)
    assert f"{node1.url} did not serve Prometheus text" in message


def test_an_http_error_is_named(node1: FakeDcgmExporter) -> None:
    with pytest.raises(DcgmError) as info:
        DcgmMeter([node1.url.replace("/metrics", "/metric")], timeout_s=5.0)
    assert "answered HTTP 404" in error_of(info)


def test_an_endpoint_without_either_metric_names_both(node1: FakeDcgmExporter) -> None:
    node1.drop(ENERGY_METRIC)
    node1.drop(POWER_METRIC)
    with pytest.raises(DcgmError) as info:
        meter_on(node1)
    message = error_of(info)
    assert f"{node1.url} reports neither {ENERGY_METRIC} nor {POWER_METRIC}" in message
    assert "counters CSV" in message


def test_a_slow_exporter_times_out_with_the_setting_to_raise() -> None:
    with FakeDcgmExporter(NODE1, delay_s=2.0) as exporter, pytest.raises(DcgmError) as info:
        DcgmMeter([exporter.url], timeout_s=0.2, collect_interval_s=1.0)
    message = error_of(info)
    assert f"{exporter.url} did not answer within 0.2 s" in message
    assert "energy_request_timeout" in message


def test_the_same_gpus_behind_two_urls_are_refused(node1: FakeDcgmExporter) -> None:
    with FakeDcgmExporter(NODE1) as copy, pytest.raises(DcgmError) as info:
        meter_on(node1, copy)
    assert "list each node's exporter once" in error_of(info)


def without_lines(text: str, *needles: str) -> str:
    return "".join(
        line for line in text.splitlines(keepends=True) if not all(n in line for n in needles)
    )


def test_a_gpu_or_counter_that_vanishes_between_reads_is_an_error(
    node1: FakeDcgmExporter,
) -> None:
    meter = meter_on(node1)
    node1.respond_with(200, without_lines(NODE1, f'UUID="{node1.uuids[3]}"'))
    with pytest.raises(DcgmError) as info:
        meter.read()
    assert f"GPU 3 ({node1.uuids[3]}) at {node1.url} is no longer reported" in error_of(info)
    with FakeDcgmExporter(NODE1) as exporter:
        meter = meter_on(exporter)
        exporter.drop(ENERGY_METRIC)
        with pytest.raises(DcgmError, match=f"stopped reporting {ENERGY_METRIC}"):
            meter.read()


def test_gpus_that_each_lack_one_reading_are_refused() -> None:
    text = without_lines(NODE1, POWER_METRIC, 'gpu="0"')
    text = without_lines(text, ENERGY_METRIC, 'gpu="1"')
    with FakeDcgmExporter(text) as exporter, pytest.raises(DcgmError) as info:
        meter_on(exporter)
    assert f"GPU 0 ({exporter.uuids[0]}) at {exporter.url} reports no {POWER_METRIC}" in (
        error_of(info)
    )


def test_a_failing_power_sample_surfaces_at_the_next_read() -> None:
    with FakeDcgmExporter(NODE1) as exporter:
        exporter.drop(ENERGY_METRIC)
        meter = meter_on(exporter, poll_interval_s=0.01)
        exporter.respond_with(503, "exporter restarting")
        time.sleep(0.1)
        with pytest.raises(DcgmError, match="answered HTTP 503"):
            meter.read()
        meter.close()


def test_an_implausible_jump_within_a_window_is_refused(node1: FakeDcgmExporter) -> None:
    energy = EnergyMeter(meter_on(node1))
    with pytest.raises(MeasurementError, match="above the plausible 8000 W"), energy.window():
        node1.add_energy(1e6)


def test_fingerprint_has_the_gpu_model_counts_nodes_and_soft_driver(nodes: Nodes) -> None:
    node1, node2 = nodes
    fingerprint = EnergyMeter(meter_on(node1, node2)).fingerprint()
    assert fingerprint["meter"] == "dcgm"
    assert fingerprint["gpu"] == "NVIDIA H100 80GB HBM3"
    assert fingerprint["gpu_count"] == "8"
    assert fingerprint["nodes"] == "2"
    assert fingerprint["energy_source"] == "counter"
    assert fingerprint["nvidia_driver"] == "550.90.07"
    assert "nvidia_driver" in SOFT_FIELDS
    assert fingerprint["gpu_uuid"].split(",") == node1.uuids + node2.uuids


def test_auto_never_picks_dcgm_even_with_urls(tmp_path: Path, node1: FakeDcgmExporter) -> None:
    settings = Settings(dcgm_urls=(node1.url,), powercap_root=tmp_path / "none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EnergyEstimateWarning)
        meter = create_meter("auto", settings, nvml_module=FakeNvml(init_error=9))
    assert meter.name == "cpu-estimate"
    assert node1.requests == 0


def test_importing_the_meters_does_not_import_prometheus_client() -> None:
    code = "import sys, pytest_energy.meters.select; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
