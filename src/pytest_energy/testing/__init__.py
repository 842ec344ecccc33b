"""Fakes for testing code that uses pytest-energy, without hardware or a model.

Each fake stands in for one side effect behind a small protocol, so a test
drives it by hand and checks the logic around it:

- :class:`FakeMeter`: a meter whose cumulative counter a test advances
  (``meter.advance(2.5)``); give it to ``EnergyMeter`` or return it from the
  ``pytest_energy_make_meter`` hook.
- :class:`FakeNvml` with :class:`FakeGpu` and :class:`FakeClock`: the subset of
  ``pynvml`` the ``nvml`` meter calls, with counters, power, errors and processes.
- :class:`FakeOpenAIServer`: an OpenAI-compatible server on loopback with a
  scripted fake model, for the served backend (``energy_eval(server.url, ...)``).
- :class:`FakeDcgmExporter`: a DCGM exporter on loopback serving recorded
  exporter text, whose energy counters a test advances, for the ``dcgm`` meter.

They are for unit tests of logic. A result measured with a fake is not a
measurement: the end-to-end path always runs a real model with a real meter.
"""

from __future__ import annotations

from pytest_energy.testing.dcgm import FakeDcgmExporter
from pytest_energy.testing.meter import FakeMeter
from pytest_energy.testing.nvml import FakeClock, FakeGpu, FakeNvml
from pytest_energy.testing.openai_server import FakeOpenAIServer

__all__ = [
    "FakeClock",
    "FakeDcgmExporter",
    "FakeGpu",
    "FakeMeter",
    "FakeNvml",
    "FakeOpenAIServer",
]
