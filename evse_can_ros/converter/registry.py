"""Converter backends by name, lazily imported, extensible through entry points.

Built in: ``simulated`` and ``infypower`` (InfyPower REG/CEG modules). Third-party hardware
backends register a :class:`~evse_can_ros.converter.base.ConverterBackend` subclass in the
entry-point group ``evse_can_ros.converter_backends``, e.g. in their ``pyproject.toml``::

    [project.entry-points."evse_can_ros.converter_backends"]
    acme_dcdc = "acme_dcdc.backend:AcmeConverter"

and are selected with the ``converter_backend`` parameter (``converter_backend: acme_dcdc``).
A backend's parameters are its ``PARAMS`` config dataclass (see :mod:`evse_can_ros.config`),
created through its ``from_params(params, setpoint_timeout)`` class method.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from evse_can_ros.converter.base import ConverterBackend

ENTRY_POINT_GROUP = "evse_can_ros.converter_backends"

BUILTIN_BACKENDS: dict[str, tuple[str, str]] = {
    "simulated": ("evse_can_ros.converter.simulated", "SimulatedConverter"),
    "infypower": ("evse_can_ros.converter.infypower.backend", "InfyPowerConverter"),
}
"""name -> (module, class), imported only when used."""


class UnknownBackendError(LookupError):
    """No backend of that name (the message lists the available ones)."""


class BackendLoadError(ImportError):
    """A backend exists but cannot be imported or is not a ConverterBackend."""


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    """Names of the built-in and installed backends, sorted."""
    return sorted(set(BUILTIN_BACKENDS) | set(_entry_points()))


def backend_class(name: str) -> type[ConverterBackend]:
    """Return the backend class registered as ``name`` (importing it now)."""
    if name in BUILTIN_BACKENDS:
        module, attr = BUILTIN_BACKENDS[name]
        try:
            cls: Any = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise BackendLoadError(f"converter backend {name!r}: cannot import: {exc}") from exc
    else:
        ep = _entry_points().get(name)
        if ep is None:
            raise UnknownBackendError(
                f"unknown converter backend {name!r}; available: "
                f"{', '.join(available_backends())} (entry-point group {ENTRY_POINT_GROUP})"
            )
        try:
            cls = ep.load()
        except Exception as exc:
            raise BackendLoadError(
                f"converter backend {name!r} ({ep.value}): cannot load: {exc}"
            ) from exc
    if not (isinstance(cls, type) and issubclass(cls, ConverterBackend)):
        raise BackendLoadError(
            f"converter backend {name!r}: {cls!r} is not a ConverterBackend subclass"
        )
    return cls


def create_backend(
    name: str, params: Mapping[str, Any] | None = None, setpoint_timeout: float = 0.25
) -> ConverterBackend:
    """Create backend ``name`` from its parameters (not opened yet).

    Raises UnknownBackendError, BackendLoadError, or ConfigError/ValueError for bad parameters.
    """
    return backend_class(name).from_params(dict(params or {}), setpoint_timeout)
