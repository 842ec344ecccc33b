"""The verdict of one evaluation: budgets, then the baseline comparison.

:func:`judge` runs every check the plugin makes for one result and
:func:`decide` turns the checks into pass, fail or accepted. A baseline entry
recorded on other hardware (a hard fingerprint field differs) or whose repeats
vary more than the tolerance allows (``too noisy to compare``) is not compared
on energy; software versions that changed are attributed, and compared. Nor is
energy compared where the served model's server also served other clients
during this run's window or the baseline's (``shared``): their joules are in it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_energy.baseline import baseline_mismatch
from pytest_energy.baseline_entry import BaselineEntry
from pytest_energy.budget_checks import check_budgets
from pytest_energy.budgets import Budgets
from pytest_energy.fingerprint import soft_changes
from pytest_energy.gate import ALPHA, compare, comparison_notes
from pytest_energy.metrics import EvalResult
from pytest_energy.outcome import UPDATE_NOTE, BaselineState, Check, Outcome, Status
from pytest_energy.prompts import describe_prompt_change
from pytest_energy.settings import Tolerance
from pytest_energy.stats import coefficient_of_variation

# Meters whose joules other processes on the CPU disturb, and how many cores of
# other work make a measurement too noisy to compare.
CPU_METERS = frozenset({"cpu-estimate", "rapl"})
MAX_OTHER_LOAD = 0.5


def decide(
    checks: Sequence[Check],
    accept_reason: str | None = None,
    *,
    baseline: BaselineState = "off",
    notes: Sequence[str] = (),
    baseline_problem: str | None = None,
    attribution: Sequence[str] = (),
    noise: str | None = None,
    prompt_change: str | None = None,
) -> Outcome:
    """The verdict: fail on any budget breach or regression.

    ``--energy-accept REASON`` turns regressions (and a ``baseline_problem`` such as
    a missing entry under strict baselines) into "accepted". Budget breaches are
    never accepted: budgets are absolute limits written in the repository, so
    changing one is a reviewed edit of the budgets file or marker.
    """
    breaches = [c for c in checks if c.kind == "budget" and not c.passed]
    relative = [c for c in checks if c.kind == "baseline" and not c.passed]
    all_notes = tuple(notes) + ((baseline_problem,) if baseline_problem else ())
    status: Status
    if breaches or ((relative or baseline_problem) and not accept_reason):
        status = "fail"
    elif relative or baseline_problem:
        status = "accepted"
    else:
        status = "pass"
    reason = accept_reason if status == "accepted" else None
    return Outcome(
        status,
        tuple(checks),
        baseline,
        all_notes,
        reason,
        tuple(attribution),
        noise,
        prompt_change=prompt_change,
    )


def judge(
    result: EvalResult,
    *,
    budgets: Budgets,
    entry: BaselineEntry | None,
    tolerance: Tolerance,
    accept_reason: str | None = None,
    update_baseline: bool = False,
    strict_baseline: bool = False,
    alpha: float = ALPHA,
) -> Outcome:
    """Everything the plugin checks for one evaluation: budgets, then the baseline."""
    checks = list(check_budgets(result, budgets))
    notes: list[str] = []
    problem: str | None = None
    state: BaselineState
    if update_baseline:
        state = "updated"
        notes.append(UPDATE_NOTE + ("recorded" if entry is None else "refreshed"))
    elif entry is None or (mismatch := baseline_mismatch(entry, result)) is not None:
        if entry is None:
            state = "missing"
            why = "no baseline entry for this test; record one with --energy-update-baseline"
        else:
            state = "estimated" if entry.estimated != result.estimated else "mismatch"
            why = mismatch or ""
        if strict_baseline:
            problem = why
        else:
            notes.append(why)
    else:
        tolerance = budgets.tolerance_or(tolerance)
        shared = shared_window(result, entry)
        noise = None if shared else too_noisy(result, entry, tolerance)
        state = "shared" if shared else "noisy" if noise else "compared"
        notes.extend(comparison_notes(result, entry))
        if shared:
            notes.append(shared)
        if noise:
            notes.append(
                f"too noisy to compare ({noise}): energy not compared, since such a run is no "
                "evidence either way; measure on a quiet machine or with more repeats, or "
                "raise the tolerance"
            )
        checks.extend(compare(result, entry, tolerance, alpha=alpha, energy=not (noise or shared)))
        return decide(
            checks,
            accept_reason,
            baseline=state,
            notes=notes,
            attribution=soft_changes(entry.fingerprint, result.fingerprint),
            noise=noise,
            prompt_change=prompt_change(entry, result),
        )
    if result.exclusive is False:
        notes.append(shared_note(result) + "; measure while no other client uses the server")
    return decide(checks, accept_reason, baseline=state, notes=notes, baseline_problem=problem)


def too_noisy(result: EvalResult, base: BaselineEntry, tolerance: Tolerance) -> str | None:
    """Why the energy of ``result`` and ``base`` cannot be compared, or None.

    The repeats of either side vary more than the tolerance (their coefficient of
    variation, outliers set aside), or, for a meter of CPU energy, other
    processes kept more than :data:`MAX_OTHER_LOAD` cores busy meanwhile: then
    contention, not the code, sets the joules, and one session differs from the
    next by more than any tolerance (4x was seen on a 2-core runner).
    """
    cvs = [result.energy_cv, coefficient_of_variation(base.samples.get("energy_j", ()))]
    cv = max((c for c in cvs if c is not None), default=None)
    if cv is not None and cv > tolerance.rel:
        return f"CV {cv:.0%}"
    load = result.other_load
    # "cpu-estimate (server pid 1234)" is a CPU meter too.
    cpu_meter = result.meter.split(" (")[0] in CPU_METERS
    if cpu_meter and load is not None and load > MAX_OTHER_LOAD:
        return f"other load {load:.1f} cores"
    return None


def shared_note(result: EvalResult) -> str:
    """That another client shared the server during ``result``'s window (its joules too)."""
    other = result.other_tokens
    beyond = f" ({other:,} tokens beyond ours)" if other else ""
    return (
        "shared: the model's server also served other clients during this run's measured "
        f"window{beyond}, so its energy includes theirs"
    )


def shared_window(result: EvalResult, base: BaselineEntry) -> str | None:
    """Why the energy of ``result`` and ``base`` cannot be compared because another
    client shared the server during either window, or None.

    An unknown side (a server without token counters, an entry recorded before
    they were read) is compared as before: nothing says it was shared.
    """
    ours, theirs = result.exclusive is False, base.exclusive is False
    if not (ours or theirs):
        return None
    if not theirs:
        return (
            shared_note(result) + ": energy is not compared with an exclusive baseline "
            "(accuracy and tokens are); measure while no other client uses the server"
        )
    when = "during this run's window and " if ours else ""
    return (
        f"shared: the model's server also served other clients {when}when the baseline was "
        "recorded, so energy is not compared with it (accuracy and tokens are); re-record "
        "it with --energy-update-baseline while no other client uses the server"
    )


def failure_message(outcome: Outcome) -> str | None:
    """The one line for ``pytest.fail(..., pytrace=False)``, or None when nothing fails."""
    if outcome.status != "fail":
        return None
    parts = [c.message for c in outcome.checks if not c.passed]
    if not parts and outcome.notes:
        parts = [outcome.notes[-1]]
    return "; ".join(parts)


def prompt_change(entry: BaselineEntry, result: EvalResult) -> str | None:
    """What changed in the prompt since ``entry`` was recorded (None: nothing, or the
    entry predates prompt fingerprints)."""
    old, new = entry.prompt, result.prompt
    if not old.get("fingerprint") or not new.get("fingerprint"):
        return None
    if old["fingerprint"] == new["fingerprint"]:
        return None
    before = entry.summary.get("input_tokens")
    tokens = (
        (float(before) / entry.questions, result.input_tokens / result.questions)
        if isinstance(before, (int, float)) and entry.questions and result.questions
        else None
    )
    return describe_prompt_change(old.get("fields") or {}, new.get("fields") or {}, tokens)
