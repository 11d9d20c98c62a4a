"""Which provider a model id or a prediction id belongs to: its ``provider:`` prefix.

``replicate:bytedance/seedance-2.0`` is Replicate's model ``bytedance/seedance-2.0``; an id
without a prefix is WaveSpeed's, so every manifest and state written before there was a second
provider means what it meant. Prediction ids are tagged the same way (``replicate:<id>``), which
lets a resumed run route result reads without any extra state. Pure: no I/O, no imports of the
providers (the model table uses this and the providers use the model table).
"""

from __future__ import annotations

import re

DEFAULT_PROVIDER = "wavespeed"
#: A provider name: a model path always holds a '/', so ``owner/name:tag`` is never read as a prefix.
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def split(name: str) -> tuple[str, str]:
    """(provider, id as that provider knows it); an untagged id is the default provider's."""
    head, sep, rest = name.partition(":")
    if sep and rest and _NAME.match(head):
        return head, rest
    return DEFAULT_PROVIDER, name


def tag(provider: str, name: str) -> str:
    """``name`` as batchgen writes it: prefixed unless it is the default provider's."""
    return name if provider == DEFAULT_PROVIDER else f"{provider}:{name}"


def provider_of(name: str) -> str:
    return split(name)[0]


__all__ = ["DEFAULT_PROVIDER", "provider_of", "split", "tag"]
