"""Hooks that users' conftest files or plugins can implement."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_energy.meters.base import Meter
    from pytest_energy.settings import Settings


@pytest.hookspec(firstresult=True)
def pytest_energy_make_meter(settings: Settings) -> Meter | None:
    """Return a custom meter (anything with ``name``, ``estimated`` and ``read()``
    returning cumulative joules), e.g. a smart PDU or an external power analyser.

    Return None to let ``--energy-meter`` choose. The first non-None result wins.
    """
