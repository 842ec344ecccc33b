"""The typed stash keys that the plugin's hooks and fixtures share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_energy.settings import Settings

if TYPE_CHECKING:
    from pytest_energy.session import EnergySession

session_key: pytest.StashKey[EnergySession] = pytest.StashKey()
settings_key = pytest.StashKey[Settings]()
# On a test item: the serialised (result, outcome) of each energy_eval call.
rows_key = pytest.StashKey[list[dict[str, Any]]]()
