"""The per-run state behind the plugin: meter, data, engines, checks and collected results.

One :class:`EnergySession` is built in ``pytest_configure`` and kept in the
config stash. Everything heavy (meter, MMLU, models) is created on first use,
so a run without energy tests pays nothing. Workers measure; the controller
(or a plain run) collects results from test reports and writes files.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_energy.baseline import BaselineStore, baseline_mismatch
from pytest_energy.budgets import BudgetsFile
from pytest_energy.errors import ConfigError, EnergyError
from pytest_energy.files import shown_path, unwritable
from pytest_energy.gate import ALPHA
from pytest_energy.locking import Notify, device_lock
from pytest_energy.measure import measure_repeat
from pytest_energy.metrics import EvalResult, QuestionRecord, RepeatSample
from pytest_energy.mmlu.questions import question_set_id
from pytest_energy.notices import to_stderr, to_terminal
from pytest_energy.outcome import Outcome
from pytest_energy.rendering import ShotBook
from pytest_energy.selection import Selection
from pytest_energy.sequential import SequentialRepeats
from pytest_energy.settings import Settings
from pytest_energy.verdict import judge, shared_window

# --energy-repeats auto: the metric it watches, and the repeats a test without a
# comparable baseline gets (the fewest that give the gate a noise estimate).
SEQUENTIAL_METRIC = "j_per_question"
AUTO_MIN_REPEATS = 3

if TYPE_CHECKING:
    from pytest_energy.backends import Backend
    from pytest_energy.curves import Curve
    from pytest_energy.meters.base import EnergyMeter, Meter
    from pytest_energy.meters.idle import IdlePower
    from pytest_energy.mmlu import MMLU, Question
    from pytest_energy.models import ModelSpec
    from pytest_energy.prompts import Prompt
    from pytest_energy.rendering import Renderer
    from pytest_energy.report import Row
    from pytest_energy.strategies import Strategy, StrategyContext


class EnergySession:
    def __init__(
        self,
        settings: Settings,
        *,
        writes_files: bool,
        custom_meter: Callable[[], Meter | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._custom_meter = custom_meter
        self.writes_files = writes_files
        self.budgets = (
            BudgetsFile.load(settings.budgets_file) if settings.budgets_file else BudgetsFile()
        )
        self.baseline = BaselineStore.load(settings.baseline_path)
        self.rows: list[Row] = []
        # What the run collected (set by the plugin after collection); None: unknown.
        self.selection: Selection | None = None
        # Energy tests the run selected (None under xdist's controller: it sees ids
        # only), and whether pytest was interrupted: then nothing is recorded.
        self.energy_tests: int | None = None
        self.interrupted = False
        self._meter: EnergyMeter | None = None
        self._mmlu: MMLU | None = None
        self._engines: dict[ModelSpec, Backend] = {}
        self._shots = ShotBook(settings.mmlu, settings.rootdir)
        self._device: str | None = None
        self._curves: dict[str, Curve] = {}
        self._context: StrategyContext | None = None
        self._idle: IdlePower | None = None
        # Where "waiting for cuda:0 held by pid N" goes; the plugin points it at the terminal.
        self.notify: Notify = to_stderr

    @classmethod
    def start(cls, config: pytest.Config, settings: Settings) -> EnergySession:
        """The run's session, built in ``pytest_configure``; a problem is a UsageError.

        xdist workers measure and never write files. Outside the xdist
        controller, the meter is created now, so that one that cannot work (no
        RAPL, no NVML) stops the run before any test, and a fallback to an
        estimate warns once.
        """
        worker = hasattr(config, "workerinput")
        controller = not worker and getattr(config.option, "dist", "no") != "no"
        try:
            session = cls(
                settings,
                writes_files=not worker,
                custom_meter=lambda: config.hook.pytest_energy_make_meter(settings=settings),
            )
            session.notify = to_terminal(config)
            if session.writes_files:
                session.check_outputs()
            if not controller:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    session.meter  # noqa: B018
                for warning in caught:
                    if isinstance(warning.message, Warning):
                        config.issue_config_time_warning(warning.message, stacklevel=2)
        except EnergyError as exc:
            raise pytest.UsageError(str(exc)) from None
        return session

    def check_outputs(self) -> None:
        """Fail before any measurement when a file the run ends with cannot be written."""
        for output in self.settings.outputs():
            why = unwritable(output.path)
            if why is not None:
                raise ConfigError(output.problem(why))

    def header_lines(self, width: int) -> list[str]:
        """The session-start lines: meter, device and baseline (once the meter exists),
        and a warning when one repeat per evaluation leaves the gate no noise estimate;
        broken at spaces to fit a terminal of ``width`` columns below the wide layout."""
        lines = []
        if self._meter is not None:
            from pytest_energy.report import device_label
            from pytest_energy.report.terminal import render_header

            meter = self._meter
            label = device_label(meter.fingerprint())
            baseline = shown_path(self.settings.baseline_path, self.settings.rootdir)
            lines.append(render_header(meter.name, label, baseline, meter.estimated))
        if self.settings.repeats == 1 and self.settings.tolerance.rel > 0:
            lines.append(
                "energy: warning: --energy-repeats 1 gives no noise estimate, so a change "
                f"within noise can pass or fail the {self.settings.tolerance} tolerance; "
                "use 3 or more repeats"
            )
        if not lines:
            return lines
        from pytest_energy.report.terminal import COMPACT_BELOW
        from pytest_energy.report.terminal_text import wrap_words

        if width >= COMPACT_BELOW:
            return lines
        return [part for line in lines for part in wrap_words(line, width)]

    # -- lazily built resources -------------------------------------------------
    @property
    def meter(self) -> EnergyMeter:
        if self._meter is None:
            from pytest_energy.meters.base import EnergyMeter
            from pytest_energy.meters.select import create_meter

            custom = self._custom_meter()
            self._meter = (
                EnergyMeter(custom)
                if custom is not None
                else create_meter(self.settings.meter, self.settings)
            )
        return self._meter

    @property
    def mmlu(self) -> MMLU:
        if self._mmlu is None:
            from pytest_energy.mmlu import load_mmlu

            self._mmlu = load_mmlu(self.settings.mmlu, rootdir=self.settings.rootdir)
        return self._mmlu

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = self.settings.device
            if self._device == "auto":
                import torch

                from pytest_energy.locking import worker_device

                self._device = (
                    worker_device(torch.cuda.device_count()) if torch.cuda.is_available() else "cpu"
                )
        return self._device

    def engine(self, model: str) -> Backend:
        """The session's one backend for ``model`` (opened on first use: served, vLLM or
        the transformers engine, see :func:`~pytest_energy.backends.open_backend`)."""
        from pytest_energy.backends import model_spec, open_backend

        spec = model_spec(model, self.settings.rootdir)
        if spec not in self._engines:
            self._engines[spec] = open_backend(spec, self.settings, self.meter, lambda: self.device)
        return self._engines[spec]

    # -- evaluation ----------------------------------------------------------------
    def evaluate(
        self,
        model: str,
        strategy: str,
        *,
        n: int | None,
        subjects: str | Sequence[str] | None,
        seed: int,
        generation: Mapping[str, Any],
        test_id: str = "",
        marker_kwargs: Mapping[str, Any] | None = None,
        prompt: str | Prompt | None = None,
    ) -> EvalResult:
        """Run ``strategy`` with ``model`` on sampled questions, ``repeats`` times, measured.

        With ``--energy-repeats auto`` repeats are measured one at a time until
        :class:`~pytest_energy.sequential.SequentialRepeats` finds the comparison
        with the baseline decided (the tolerance is the test's own, from
        ``marker_kwargs`` and the budgets file); why it stopped is in
        ``details["repeats_stop"]``.
        """
        from pytest_energy.engine_results import Ledger
        from pytest_energy.strategies import build_strategy, parse_strategy

        spec = parse_strategy(strategy, generation)
        questions = self.mmlu.sample(n, subjects, seed)
        # The prompt and its shots are checked before any model loads.
        renderer = self.renderer(prompt if prompt is not None else spec["prompt"])
        renderer.check_shots(questions)
        prompt_record = {
            "name": renderer.prompt.name,
            "fingerprint": renderer.fingerprint(questions),
            "fields": renderer.prompt.fields(),
        }
        self.idle_power_w()  # once per session, while nothing runs yet
        engine = self.engine(model)
        renderer.use_chat(engine)  # chat: true on a model without a chat template fails here
        runner = build_strategy(spec, self.strategy_context(), renderer)
        runner.prepare(engine, questions, seed=seed)
        for _ in range(self.settings.warmup):
            # First calls compile kernels for new batch shapes; keep that out of
            # the measured repeats when asked to.
            runner.run(engine, questions, Ledger(), seed=seed)
        records: tuple[QuestionRecord, ...] = ()
        repeats: list[RepeatSample] = []
        policy: SequentialRepeats | None = None
        while True:
            answered, sample, details = self._measure(runner, engine, questions, seed)
            records = records or tuple(answered)
            repeats.append(sample)
            result = EvalResult(
                model=engine.spec.label,
                strategy=str(spec),
                meter=self.meter.name,
                estimated=self.meter.estimated,
                records=records,
                repeats=tuple(repeats),
                fingerprint={**self.meter.fingerprint(), **engine.fingerprint()},
                test_id=test_id,
                details=details,
                question_set=question_set_id(questions),
                sampled=spec.sampled,
                prompt=prompt_record,
            )
            if self.settings.repeats != "auto":
                if len(repeats) >= self.settings.repeats:
                    return result
                continue
            policy = policy or self.repeat_policy(result, marker_kwargs)
            stop = policy.reason(result.samples(SEQUENTIAL_METRIC))
            if stop is not None:
                details["repeats_stop"] = f"{stop} after {len(repeats)}"
                return result

    def renderer(self, choice: str | Prompt | None) -> Renderer:
        """The renderer of the prompt ``choice`` names (else ``energy_prompt``, else the
        default), with its shot rows."""
        from pytest_energy.prompts import resolve_prompt

        prompt = resolve_prompt(
            choice if choice is not None else self.settings.prompt, self.budgets.prompts
        )
        return self._shots.renderer(prompt)

    def repeat_policy(
        self, result: EvalResult, marker_kwargs: Mapping[str, Any] | None
    ) -> SequentialRepeats:
        """The ``--energy-repeats auto`` policy for ``result``'s test.

        Tested against the baseline entry's repeats of J/question when the entry
        can be compared with this run (same hard fingerprint fields, questions
        and meter kind, neither window shared); otherwise it stops at the minimum,
        as for a new test. A run that records the baseline measures the maximum.
        """
        budgets = self.budgets.budgets_for(
            result.test_id, result.model, result.strategy, marker_kwargs
        )
        tolerance = budgets.tolerance_or(self.settings.tolerance)
        entry = self.baseline.get(result.test_id)
        comparable = (
            entry is not None
            and baseline_mismatch(entry, result) is None
            and shared_window(result, entry) is None  # other clients' joules are no base
        )
        base = entry.samples.get(SEQUENTIAL_METRIC) if comparable and entry else None
        maximum = self.settings.max_repeats
        return SequentialRepeats(
            base,
            tolerance.rel,
            minimum=min(AUTO_MIN_REPEATS, maximum),
            maximum=maximum,
            recording=self.settings.update_baseline,
        )

    def _measure(
        self, runner: Strategy, engine: Backend, questions: Sequence[Question], seed: int
    ) -> tuple[list[QuestionRecord], RepeatSample, dict[str, Any]]:
        """One measured repeat (:func:`~pytest_energy.measure.measure_repeat`)."""
        return measure_repeat(
            runner,
            engine,
            questions,
            seed,
            meter=self.meter,
            lock=lambda: device_lock(
                self.device, timeout_s=self.settings.lock_timeout_s, notify=self.notify
            ),
            idle_power_w=self.idle_power_w,
            server_pid=self.settings.server_pid,
        )

    def idle_power_w(self) -> float | None:
        """Idle power of a measured meter, from one quiet window per session."""
        if self._idle is None:
            from pytest_energy.meters.idle import IdlePower

            self._idle = IdlePower(self.meter)
        return self._idle.power_w()

    def strategy_context(self) -> StrategyContext:
        if self._context is None:
            from pytest_energy.strategies import StrategyContext

            self._context = StrategyContext(
                engines=self.engine, curve=self.curve, mmlu=lambda: self.mmlu
            )
        return self._context

    def curve(self, engine: Backend) -> Curve:
        """The operating curve of ``engine``'s model: from ``energy_curve``, else calibrated
        once per session on the default grid with the session's meter."""
        from pytest_energy.curves import CurveStore

        label = engine.spec.label
        if label not in self._curves:
            if self.settings.curve_path is not None and self.settings.curve_path.is_file():
                store = CurveStore.load(self.settings.curve_path)
                # This machine's curve if the file has one, else the model's only
                # curve: a committed curve keeps budgets' token allowances the same
                # on every runner (its joules are then the calibrating machine's).
                here = {**self.meter.fingerprint(), **engine.fingerprint()}
                self._curves[label] = store.get(label, here) or store.find(label)
            else:
                from pytest_energy.calibration import calibrate, filler_text
                from pytest_energy.curves import default_grid

                text = filler_text(self.mmlu.sample(8, seed=0))
                self._curves[label] = calibrate(engine, default_grid("small"), text)[0]
        return self._curves[label]

    def judge(self, result: EvalResult, marker_kwargs: Mapping[str, Any] | None) -> Outcome:
        """Budgets and baseline for ``result``; with ``--energy-repeats auto`` the rank
        test runs at the threshold corrected for looking after every repeat."""
        alpha = ALPHA
        if self.settings.repeats == "auto":
            alpha = self.repeat_policy(result, marker_kwargs).alpha
        budgets = self.budgets.budgets_for(
            result.test_id, result.model, result.strategy, marker_kwargs
        )
        return judge(
            result,
            budgets=budgets,
            entry=self.baseline.get(result.test_id),
            tolerance=self.settings.tolerance,
            accept_reason=self.settings.accept_reason,
            update_baseline=self.settings.update_baseline,
            strict_baseline=self.settings.strict_baseline,
            alpha=alpha,
        )

    # -- session end (controller) -----------------------------------------------
    def collect(self, rows: Sequence[Row]) -> None:
        self.rows.extend(rows)

    def collect_serialised(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Rows as a test report carries them (from this process or an xdist worker)."""
        self.collect(
            [(EvalResult.from_dict(r["result"]), Outcome.from_dict(r["outcome"])) for r in rows]
        )

    def close(self) -> None:
        if self._meter is not None:
            from pytest_energy.meters.select import close_meter

            close_meter(self._meter)
        self._engines.clear()
