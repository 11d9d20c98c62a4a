"""What every HTTP provider does alike before and around its own JSON: the key and base-URL checks
a constructor makes, the submit body of the image-to-video models, and what a failed connection means."""

from __future__ import annotations

from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from ..errors import AmbiguousSubmitError, ProviderError, TransientError, UsageError
from ..models import ModelSpec
from .base import ProviderPolicy


def checked_base_url(policy: ProviderPolicy, api_key: str, base_url: str, *, key_noun: str = "API key",
                     redact: Callable[[str], str] = str) -> str:
    """``base_url`` without its trailing slash, or UsageError for a missing key or a URL that is not http(s)."""
    if not api_key:
        raise UsageError(f"no {key_noun}: set the {policy.key_variable} environment variable")
    stripped = base_url.rstrip("/")
    parts = urlsplit(stripped)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(redact(f"the base URL {base_url!r} is not an http(s) URL; give one like "
                                f"{policy.default_base_url}"))
    return stripped


def standard_body(spec: ModelSpec, image_url: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The body image-to-video models take: image, prompt, duration, the resolution when the model has
    a choice, and the model's extra fields when given (WaveSpeed's body; Replicate's ``input``)."""
    body: dict[str, Any] = {
        "image": image_url,
        "prompt": prompt,
        "duration": int(params.get("duration", spec.default_duration)),
    }
    if spec.sends_resolution:
        body["resolution"] = params.get("resolution", spec.default_resolution)
    for name in spec.extra_fields:
        if params.get(name) is not None:
            body[name] = params[name]
    return body


def connection_failed(kind: str, exc: BaseException, *, submit: bool, maybe_created: str) -> ProviderError:
    """A connection that broke after the request may have been sent: a submit may have created its
    task (``maybe_created`` says so and what happens next), anything else is read again later."""
    message = f"{kind}: the connection failed ({type(exc).__name__}: {exc or 'no answer'})"
    if submit:
        return AmbiguousSubmitError(message + maybe_created)
    return TransientError(message)
