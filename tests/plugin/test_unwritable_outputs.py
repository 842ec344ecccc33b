"""A file the run must write that cannot be written: one line, never a traceback.

Checked before any measurement where it can be (pytest_configure); a folder
that goes away during the run is an ERROR line after the energy table, which is
still printed, and the run fails.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

RunEnergy = Callable[..., pytest.RunResult]

ONE_TEST = """
def test_direct(energy_eval):
    energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")
"""


def read_only_folder(pytester: pytest.Pytester, name: str) -> Path:
    """A folder ``name`` this process cannot create files in, even as root."""
    folder = pytester.path / name
    if os.geteuid() != 0:
        folder.mkdir(mode=0o555)
        return folder
    # root ignores modes; sysfs refuses new files to everyone.
    target = Path("/sys/kernel")
    try:
        fd, probe = tempfile.mkstemp(dir=target)
    except OSError:
        folder.symlink_to(target, target_is_directory=True)
        return folder
    os.close(fd)
    os.unlink(probe)
    pytest.skip("no folder here refuses new files to root")


def test_a_read_only_baseline_folder_fails_before_any_measurement(
    pytester: pytest.Pytester, run_energy: RunEnergy
) -> None:
    pytester.makepyfile(test_one=ONE_TEST)
    folder = read_only_folder(pytester, ".energy")

    result = run_energy("--energy-update-baseline")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: cannot write the baseline {folder}/baseline.json (cannot create files in "
            f"{folder}: *); make its folder writable, or give another path with --energy-baseline"
        ]
    )
    assert "Traceback" not in result.stderr.str()
    assert "test_one.py" not in result.stdout.str()  # nothing collected, nothing measured


def test_a_report_folder_gone_at_session_end_is_one_error_line_after_the_table(
    pytester: pytest.Pytester, run_energy: RunEnergy, dist: str
) -> None:
    pytester.makepyfile(
        test_one=ONE_TEST
        + "\n    from pathlib import Path\n"
        + "    Path('out').rmdir()\n"
        + "    Path('out').write_text('a file now')  # the report folder is gone\n"
    )
    (pytester.path / "out").mkdir()

    result = run_energy(dist, "--energy-report=out/report.md", "--energy-json=results.json")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "PASS*test_direct*",
            "energy results: results.json",
            f"ERROR: cannot write the report {pytester.path}/out/report.md (*); "
            "make its folder writable, or give another path with --energy-report",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert (pytester.path / "results.json").exists()
