"""``curve``: joules predicted from token counts with a calibrated operating curve.

Not a measurement: the counter advances only when the engine reports the
tokens a phase processed (:class:`~pytest_energy.meters.base.TokenAccounting`),
by the amount the curve predicts for them. The curve was fitted on batch-1
generations, so batched runs are predicted as if each sequence ran alone. It is
labelled ``estimated`` everywhere and never compared with a measured baseline.
Create the curve with ``pytest-energy calibrate --model MODEL -o curve.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pytest_energy.curves import Curve, CurveError, CurveStore
from pytest_energy.errors import MeterError
from pytest_energy.meters.base import EnergyMeter, Phase

if TYPE_CHECKING:
    from pytest_energy.settings import Settings

# Keys of the sweep meter's own fingerprint that would misdescribe this meter.
_SWEEP_ONLY_KEYS = ("meter", "estimated")


class CurveMeter:
    """A cumulative counter of the joules a :class:`~pytest_energy.curves.Curve` predicts.

    ``account("prefill", n_in, _)`` adds ``curve.prefill_j(n_in)``;
    ``account("decode", n_ctx, n_out)`` adds ``curve.decode_j(n_ctx, n_out)``,
    where ``n_ctx`` is the prompt length the generated tokens attend to. A
    prefill plus a decode of one sequence therefore add ``curve.energy_j``.
    A phase whose prediction is negative (a fitted intercept below zero, for
    a tiny prompt) counts as 0 J rather than running the counter backwards.
    """

    name = "curve"
    estimated = True

    def __init__(self, curve: Curve) -> None:
        self.curve = curve
        self._total_j = 0.0

    @classmethod
    def for_model(
        cls, store: CurveStore, model: str, fingerprint: Mapping[str, str] | None = None
    ) -> CurveMeter:
        """The meter for ``model``'s curve in ``store``.

        With ``fingerprint`` the curve must match it exactly; without, the model
        must have exactly one curve in the store.
        """
        try:
            return cls(store.find(model, fingerprint))
        except CurveError as exc:
            raise MeterError(str(exc)) from None

    def read(self) -> float:
        return self._total_j

    def account(self, phase: Phase, input_tokens: int, output_tokens: int) -> None:
        if input_tokens < 0 or output_tokens < 0:
            raise ValueError(f"negative token count ({input_tokens}, {output_tokens})")
        if phase == "prefill":
            predicted_j = self.curve.prefill_j(input_tokens)
        elif phase == "decode":
            predicted_j = self.curve.decode_j(input_tokens, output_tokens)
        else:
            raise ValueError(f"unknown phase {phase!r}; use 'prefill' or 'decode'")
        self._total_j += max(0.0, predicted_j)

    def fingerprint(self) -> dict[str, str]:
        """The hardware the curve was fitted on, and which curve predicts."""
        result = {k: v for k, v in self.curve.fingerprint.items() if k not in _SWEEP_ONLY_KEYS}
        result["curve_meter"] = self.curve.meter
        result["meter_source"] = f"curve:{self.curve.model}"
        return result


def create_curve_meter(settings: Settings, model: str | None = None) -> EnergyMeter:
    """The session's ``curve`` meter, from the curve file ``energy_curve`` names.

    Without ``model`` the file must hold exactly one curve.
    """
    fix = (
        "run 'pytest-energy calibrate --model MODEL -o curve.json' and set "
        "'energy_curve = curve.json' in the ini file"
    )
    path = settings.curve_path
    if path is None:
        raise MeterError(f"--energy-meter curve needs an operating curve file; {fix}")
    if not path.is_file():
        raise MeterError(f"operating curve file {path} does not exist; {fix}")
    try:
        store = CurveStore.load(path)
    except CurveError as exc:
        raise MeterError(str(exc)) from None
    if model is not None:
        return EnergyMeter(CurveMeter.for_model(store, model))
    curves = store.curves()
    if len(curves) != 1:
        listed = ", ".join(store.models()) or "none"
        raise MeterError(
            f"operating curve file {path} holds {len(curves)} curves (models: {listed}); "
            "keep one curve per file for the curve meter"
        )
    return EnergyMeter(CurveMeter(curves[0]))
