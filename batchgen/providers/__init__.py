"""Video API providers, by name.

A provider is one module that defines a client class following ``base.Provider`` and an
``INFO = ProviderInfo(policy, factory)``; one line in ``_MODULES`` registers it (imported only
when used). ``register`` adds one at run time (tests, plugins).
"""

from __future__ import annotations

import importlib

from ..errors import UsageError
from .base import ProviderInfo

_MODULES: dict[str, str] = {
    "wavespeed": "batchgen.providers.wavespeed",
    "replicate": "batchgen.providers.replicate",
}
_REGISTERED: dict[str, ProviderInfo] = {}


def register(info: ProviderInfo) -> None:
    """Make a provider available under ``info.policy.name``."""
    _REGISTERED[info.policy.name] = info


def provider_names() -> list[str]:
    return sorted({*_MODULES, *_REGISTERED})


def provider_info(name: str) -> ProviderInfo:
    """The registered provider ``name``; a UsageError naming the known ones otherwise."""
    if name not in _REGISTERED:
        module = _MODULES.get(name)
        if module is None:
            raise UsageError(f"unknown provider {name!r}; known: {', '.join(provider_names())}")
        register(importlib.import_module(module).INFO)
    return _REGISTERED[name]


__all__ = ["ProviderInfo", "provider_info", "provider_names", "register"]
