"""Masking an API key in any text: error messages, stored state, printed lines.

A key is masked only when it is at least ``MIN_KEY_LENGTH`` characters long: a shorter "key"
(a test key such as ``k``) would match inside ordinary words and turn them into garbage, and
is no secret worth the damage. Only whole occurrences of the key are masked, never fragments
of it; where the key is glued to other key-like characters (``xyz<key>``, a server echoing it
without a separator) the whole glued token is masked, so no part of the key survives.
"""

from __future__ import annotations

import string
from typing import Any, Iterable
from urllib.parse import quote

MIN_KEY_LENGTH = 8
MASK = "***"
# Characters that glue a key into a longer word: letters, digits, "_" and "-" (the key itself
# may hold any character; it is matched exactly).
_TOKEN = frozenset(string.ascii_letters + string.digits + "_-")


class Redactor:
    """Masks one key (and its ``Bearer <key>`` and URL-encoded forms) in text."""

    def __init__(self, key: str | None):
        key = (key or "").strip()
        self._forms = sorted({key, quote(key, safe="")}, key=len, reverse=True) if len(key) >= MIN_KEY_LENGTH else []

    def __bool__(self) -> bool:
        """False for a key too short to mask (nothing would ever be masked)."""
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        spans = sorted(span for form in self._forms for span in _spans(text, form))
        if not spans:
            return text
        pieces, done = [], 0
        for start, end in spans:
            if start < done:  # inside or overlapping the span just masked: widen it
                done = max(done, end)
                continue
            pieces += [text[done:start], MASK]
            done = end
        return "".join(pieces) + text[done:]


def _spans(text: str, form: str) -> list[tuple[int, int]]:
    """Where ``form`` occurs, each widened to the whole token it is glued into. A plain scan
    (no regex with two open-ended runs) so a long text costs linear time."""
    spans: list[tuple[int, int]] = []
    at = text.find(form)
    while at >= 0:
        end = at + len(form)
        if spans and at <= spans[-1][1]:
            start, before = spans.pop()  # glued to the occurrence before: one token
            end = max(end, before)
        else:
            start = at
            while start and text[start - 1] in _TOKEN:
                start -= 1
        while end < len(text) and text[end] in _TOKEN:
            end += 1
        spans.append((start, end))
        at = text.find(form, at + 1)
    return spans


def redact(text: str, key: str | None) -> str:
    """``text`` with ``key`` masked (see the module's rules)."""
    return Redactor(key)(text)


def redactors(keys: Iterable[str | None]) -> tuple[Redactor, ...]:
    """One Redactor per key worth masking."""
    return tuple(r for r in map(Redactor, keys) if r)


def mask_all(value: Any, masks: tuple[Redactor, ...]) -> Any:
    """``value`` with every key masked in every string inside it (dicts and lists are walked): for
    records about to be stored, such as a state line whose error message echoes the key."""
    if isinstance(value, str):
        for mask in masks:
            value = mask(value)
        return value
    if isinstance(value, dict):
        return {k: mask_all(v, masks) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_all(v, masks) for v in value]
    return value


__all__ = ["MASK", "MIN_KEY_LENGTH", "Redactor", "mask_all", "redact", "redactors"]
