"""WaveSpeed's wire format, parsed once: envelopes, predictions, Retry-After, error answers.

Pure functions of an answer's status, headers and bytes, so every hostile shape is tested
without a socket. Nothing here lets a raw TypeError, ValueError or OverflowError out: a
malformed answer is a ``BadAnswer``, which the client turns into the error its context needs
(after a submit: the task may exist; after a read: read again later).
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from datetime import datetime, timezone
from typing import Any

from ..errors import (
    AmbiguousSubmitError,
    FatalError,
    ModelUnavailableError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from ..models import body_hash
from .base import ListedPrediction, Prediction, PredictionStatus

#: The longest wait a server may ask for: past it, its advice is clamped (inf, a date a day
#: ahead or an absurd number must not park a paid batch; one signal must end every wait).
RETRY_AFTER_CAP = 300.0
_TERMINAL_FAILURES = {"failed", "cancelled", "timeout", "deleted"}
_KNOWN_STATUSES = {s.value for s in PredictionStatus} | _TERMINAL_FAILURES
# A prediction id goes into a URL path: letters, digits and a few separators, nothing that
# could climb out of /predictions/<id>/ or start a query.
_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.:-]{0,199}")
_MODEL_REFUSALS = ("unavailable", "not found", "retired", "deprecated", "no longer", "shut down")
_TEXT_LIMIT = 2000


class BadAnswer(Exception):
    """A 2xx answer batchgen cannot read; ``prediction_id`` when it still names a task."""

    def __init__(self, message: str, prediction_id: str | None = None):
        super().__init__(message)
        self.prediction_id = prediction_id


class UnknownStatus(BadAnswer):
    """A readable prediction whose status is none of the documented ones."""

    def __init__(self, status: str, prediction_id: str):
        super().__init__(f"status {status!r} is not one batchgen knows", prediction_id)
        self.status = status


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date) or retry-after-ms, clamped to
    0..RETRY_AFTER_CAP; None when absent or unreadable (NaN included)."""
    value = (headers.get("Retry-After") or "").strip()
    seconds = _number(value)
    if seconds is None and value:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            seconds = None
    if seconds is None:
        ms = _number((headers.get("retry-after-ms") or "").strip())
        seconds = None if ms is None else ms / 1000.0
    return None if seconds is None else min(RETRY_AFTER_CAP, max(0.0, seconds))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    return None if math.isnan(value) else value


def load_json(body: bytes | None) -> Any:
    """The JSON value of ``body``, or None when it is absent, too big (None) or not JSON."""
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def data_id(payload: Any) -> str | None:
    """``data.id`` when the answer names a task with a usable id."""
    data = payload.get("data") if isinstance(payload, dict) else None
    raw = data.get("id") if isinstance(data, dict) else None
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    return raw if isinstance(raw, str) and _ID.fullmatch(raw) else None


def parse_prediction(payload: Any, *, strict_status: bool) -> Prediction:
    """The envelope's ``data`` as a Prediction, or BadAnswer. An unknown status is
    UnknownStatus when ``strict_status`` (a result read), PROCESSING otherwise (a submit's
    answer: the id is what counts)."""
    pid = data_id(payload)
    if pid is None:
        raise BadAnswer(f"the answer has no usable data.id: {snippet(payload)}")
    data = payload["data"]
    raw_status = _text(data.get("status"), "status", pid).lower() or "created"
    if raw_status not in _KNOWN_STATUSES and strict_status:
        raise UnknownStatus(raw_status, pid)
    status = PredictionStatus.FAILED if raw_status in _TERMINAL_FAILURES else (
        PredictionStatus(raw_status) if raw_status in _KNOWN_STATUSES else PredictionStatus.PROCESSING)
    error = _text(data.get("error"), "error", pid)
    if status is PredictionStatus.FAILED and raw_status != "failed" and not error:
        error = f"the task ended as {raw_status}"
    return Prediction(id=pid, model=_text(data.get("model"), "model", pid), status=status,
                      outputs=_outputs(data.get("outputs"), pid), error=error,
                      inference_ms=_inference_ms(data.get("timings")),
                      created_at=_text(data.get("created_at"), "created_at", pid))


def _text(value: Any, name: str, pid: str) -> str:
    """A text field: a string, a plain number, or an error object's message."""
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        value = value["message"]
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:_TEXT_LIMIT]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise BadAnswer(f"data.{name} is {type(value).__name__}, not text: {snippet(value)}", pid)


def _outputs(value: Any, pid: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(o, str) and 0 < len(o) <= 8192 for o in items):
        raise BadAnswer(f"data.outputs is not a list of URLs: {snippet(value)}", pid)
    return tuple(items)


def _inference_ms(timings: Any) -> int | None:
    """Generation time, informational only: an absurd value (inf, NaN, negative, a string) is
    dropped rather than failing a task that was created and billed."""
    value = timings.get("inference") if isinstance(timings, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if math.isfinite(value) and 0 <= value < 1e12 else None


def upload_url(payload: Any) -> str:
    """An upload answer's ``data.download_url`` (or ``url``), or BadAnswer."""
    data = payload.get("data") if isinstance(payload, dict) else None
    url = (data.get("download_url") or data.get("url")) if isinstance(data, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 8192:
        raise BadAnswer(f"the answer has no download_url: {snippet(payload)}")
    return url


def refuses_model(status: int, message: str) -> bool:
    """A submit refused because the model cannot be used (retired upstream, switched off): the
    wire edge reads the message once, so the runner can act on a typed error."""
    return status in (400, 404, 410, 503) and any(word in message.lower() for word in _MODEL_REFUSALS)


def snippet(value: Any, limit: int = 200) -> str:
    if not isinstance(value, str):
        try:
            value = json.dumps(value, default=str)
        except (ValueError, RecursionError):
            value = repr(type(value))
    return value if len(value) <= limit else value[:limit] + "..."


def proves_unsent(status: int) -> bool:
    """An error status that proves a submit was not taken: a 4xx refusal, or 503 (the server
    declined to process it). A 500, 502, 504 or a redirect may follow a created task."""
    return 400 <= status < 500 or status == 503


def answer_payload(status: int, headers: Any, body: bytes | None, *, kind: str, submit: bool,
                   key_variable: str) -> dict[str, Any]:
    """The envelope of a successful answer (``body`` None: it was over the size cap), or
    raise what the answer means: BadAnswer for an unreadable success, a ProviderError otherwise."""
    payload = load_json(body)
    code = payload.get("code") if isinstance(payload, dict) else None
    if 200 <= status < 300 and isinstance(code, int) and not isinstance(code, bool) and code >= 400:
        status = code  # an error inside a 200 envelope is that error
    if 200 <= status < 300:
        if isinstance(payload, dict):
            return payload
        what = "is over the answer size cap" if body is None else f"is not JSON: {snippet(_body_text(body))}"
        raise BadAnswer(f"HTTP {status} but the answer {what}")
    raise answer_error(status, headers, payload, body, kind=kind, submit=submit, key_variable=key_variable)


#: What a lost submit answer means for the job: the run settles it from the listing (settling.py).
MAYBE_CREATED = ("; the task may have been created, so it is sent again only if the provider's listing proves it "
                 "was not")


def answer_error(status: int, headers: Any, payload: Any, body: bytes | None, *, kind: str, submit: bool,
                 key_variable: str) -> Exception:
    """The error an HTTP (or envelope) error status means for this request."""
    message = payload.get("message") or payload.get("error") if isinstance(payload, dict) else None
    message = snippet(message if isinstance(message, str) else _body_text(body) or f"HTTP {status}")
    where = f"{kind}: HTTP {status}: {message}"
    pid = data_id(payload)
    if submit and (pid is not None or not proves_unsent(status)):
        named = f" (it names task {pid})" if pid else ""
        return AmbiguousSubmitError(f"{where}{named}{MAYBE_CREATED}", prediction_id=pid, status=status)
    retry_after = parse_retry_after(headers)
    lowered = message.lower()
    if status == 401:
        return FatalError(f"the API refused the key (HTTP 401: {message}); set {key_variable} to a valid key",
                          status=status)
    if status == 402 or "balance" in lowered or "insufficient" in lowered:
        advice = "" if "top up" in lowered else "; top up the account"  # the simulator's own message says it
        return FatalError(f"{where}{advice}, then run the same command again", status=status)
    if submit and refuses_model(status, message):
        return ModelUnavailableError(where, temporary=status >= 500, status=status, retry_after=retry_after)
    if status == 429:
        return RateLimitedError(where, status=status, retry_after=retry_after)
    if status >= 500 or status in (408, 425):
        return TransientError(where, status=status, retry_after=retry_after)
    if status == 403:
        return FatalError(f"{where}; the key is not allowed to do this", status=status)
    return PermanentError(where, status=status)


def _body_text(body: bytes | None) -> str:
    return "" if body is None else body[:200].decode("utf-8", "replace").strip()


# -- the predictions listing (POST /api/v3/predictions) ------------------------------
def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_of(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=timezone.utc).timestamp()


def listing_page(payload: Any) -> tuple[list | None, int]:
    """A listing page's items and total, or (None, 0) when the answer is not one."""
    data = payload.get("data") if isinstance(payload, dict) else None
    items = data.get("items") if isinstance(data, dict) else None
    total = data.get("total") if isinstance(data, dict) else None
    if not isinstance(items, list) or not isinstance(total, int) or isinstance(total, bool):
        return None, 0
    return items, total


def listed_prediction(item: Any) -> ListedPrediction | None:
    """One listing item; ``input`` and its body hash only when the item carries the request input."""
    if not isinstance(item, dict) or not item.get("id"):
        return None
    given = item.get("input") if isinstance(item.get("input"), dict) else None
    outputs = item.get("outputs")
    return ListedPrediction(
        id=str(item["id"]), model=str(item.get("model") or ""), status=str(item.get("status") or ""),
        created_at=epoch_of(item.get("created_at")),
        outputs=tuple(str(o) for o in outputs if o) if isinstance(outputs, list) else (),
        input=given, body_hash=body_hash(given) if given is not None else "",
    )
