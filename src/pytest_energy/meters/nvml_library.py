"""The NVML library as the ``nvml`` meter meets it: loading, typed errors, device mapping.

``pynvml`` is imported by :func:`load_pynvml` only, when a meter is created.
Its ``NVMLError`` codes become the typed, one-line errors below, each with the
fix; :func:`visible_devices` maps ``CUDA_VISIBLE_DEVICES`` to NVML indices.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from pytest_energy.errors import MeterError

INSTALL_HINT = "pip install 'pytest-energy[nvml]'"
OTHER_METERS = "or use --energy-meter rapl or cpu-estimate"


class NvmlError(MeterError):
    """NVML cannot measure; the message names the GPU and the fix."""


class NvmlNotInstalledError(NvmlError):
    """``nvidia-ml-py`` is not installed."""


class NvmlDriverError(NvmlError):
    """No NVIDIA driver, library or visible GPU."""


class NvmlPermissionError(NvmlError):
    """The driver refuses this user."""


class NvmlNotSupportedError(NvmlError):
    """The GPU or driver lacks what the meter needs."""


class NvmlMigError(NvmlError):
    """MIG is enabled: NVML energy covers the whole physical GPU, not this instance."""


def load_pynvml() -> Any:
    """Import ``pynvml`` (only here, at meter creation)."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        raise NvmlNotInstalledError(
            f"the nvml meter needs nvidia-ml-py: {INSTALL_HINT}, {OTHER_METERS}"
        ) from None


def translate_error(nvml: Any, exc: BaseException, doing: str) -> NvmlError:
    """The typed, one-line error for an ``NVMLError`` raised while ``doing``."""
    code = getattr(exc, "value", None)
    if code == nvml.NVML_ERROR_LIBRARY_NOT_FOUND:
        return NvmlDriverError(
            f"NVML library libnvidia-ml.so.1 not found while {doing}: no NVIDIA driver is "
            f"installed; install it, {OTHER_METERS}"
        )
    if code == nvml.NVML_ERROR_DRIVER_NOT_LOADED:
        return NvmlDriverError(
            f"NVIDIA driver not loaded while {doing} (no GPU, or the kernel module is "
            f"missing); check that nvidia-smi works, {OTHER_METERS}"
        )
    if code == nvml.NVML_ERROR_NO_PERMISSION:
        return NvmlPermissionError(
            f"NVML denied permission while {doing}; run as a user that can open /dev/nvidia* "
            f"(e.g. in the video group) or as root, {OTHER_METERS}"
        )
    if code == nvml.NVML_ERROR_NOT_SUPPORTED:
        return NvmlNotSupportedError(
            f"{doing} is not supported by this GPU or driver; update the driver or use "
            "--energy-meter curve"
        )
    return NvmlError(f"NVML failed while {doing} ({exc}); check nvidia-smi, {OTHER_METERS}")


def visible_devices(spec: str | None, uuids: Sequence[str]) -> list[int]:
    """NVML indices of the GPUs CUDA sees, in CUDA order, given ``CUDA_VISIBLE_DEVICES``.

    Integer entries are taken as NVML indices, which match CUDA's numbering when
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (UUIDs are unambiguous either way); ``GPU-``
    entries are UUIDs or unique UUID prefixes. Like CUDA, the list ends at the
    first entry that names no GPU. ``MIG-`` entries raise :class:`NvmlMigError`.
    """
    if spec is None:
        return list(range(len(uuids)))
    found: list[int] = []
    for raw in spec.split(","):
        token = raw.strip()
        if token.startswith("MIG-"):
            raise NvmlMigError(
                f"CUDA_VISIBLE_DEVICES selects MIG instance {token}: NVML energy is counted per "
                "physical GPU and cannot be attributed to one instance; use --energy-meter curve"
            )
        index: int | None = None
        if token.isdigit() and int(token) < len(uuids):
            index = int(token)
        elif token.startswith("GPU-"):
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(token)]
            index = matches[0] if len(matches) == 1 else None
        if index is None or index in found:
            break
        found.append(index)
    return found
