"""WaveSpeed v3 over aiohttp: the only module that knows WaveSpeed's JSON.

Every answer is classified here into a typed record or a batchgen.errors class, so the
runner never sees HTTP. The API key is sent only to ``base_url``'s origin; uploads' PUT
targets and output files get no Authorization header.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiofiles
import aiohttp

from ..errors import (
    AmbiguousSubmitError,
    UsageError,
    ExpiredLinkError,
    FatalError,
    ModelUnavailableError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from ..models import ModelSpec, body_hash
from ..webhooks import WAVESPEED_SCHEME
from .base import Download, ListedPrediction, Listing, Prediction, PredictionStatus, ProviderInfo, ProviderPolicy

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
POLICY = ProviderPolicy(
    name="wavespeed",
    key_variable="WAVESPEED_API_KEY",
    default_base_url=DEFAULT_BASE_URL,
    # Uploads are kept 7 days (docs "Media Upload API"); a day's margin before reusing a URL.
    upload_lifetime=6 * 86400.0,
    # Predictions and their outputs are deleted after 7 days (docs "What are Predictions").
    output_lifetime=7 * 86400.0,
    # A failed task is not billed: unconfirmed (shared/API.md), so it stays a setting.
    failed_tasks_billed=False,
    # Over the concurrency cap a submit waits in `created` (docs "Account Levels & Rate Limits").
    queues_over_limit=True,
    # Docs "Verifying Webhooks" (shared/API.md "Webhooks").
    webhook_scheme=WAVESPEED_SCHEME,
)
USER_AGENT = "batchgen/0.1"
_TERMINAL_FAILURES = {"failed", "cancelled", "timeout", "deleted"}
_VIDEO_TYPES = ("video/", "application/octet-stream", "binary/octet-stream")
_CHUNK = 1 << 16


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date) or retry-after-ms."""
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when - (time.time() if now is None else now))
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            return None
    return None


def parse_prediction(payload: Any, where: str) -> Prediction:
    """The envelope's ``data`` as a Prediction; PermanentError for nonsense."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or not data.get("id"):
        raise PermanentError(f"{where}: the answer has no data.id: {_snippet(payload)}")
    raw_status = str(data.get("status") or "created").lower()
    if raw_status in _TERMINAL_FAILURES:
        status = PredictionStatus.FAILED
    else:
        try:
            status = PredictionStatus(raw_status)
        except ValueError:
            status = PredictionStatus.PROCESSING
    outputs = data.get("outputs") or ()
    if isinstance(outputs, str):
        outputs = (outputs,)
    timings = data.get("timings") if isinstance(data.get("timings"), dict) else {}
    inference = timings.get("inference")
    error = data.get("error") or ""
    if status is PredictionStatus.FAILED and raw_status != "failed" and not error:
        error = f"the task ended as {raw_status}"
    return Prediction(
        id=str(data["id"]),
        model=str(data.get("model") or ""),
        status=status,
        outputs=tuple(str(o) for o in outputs),
        error=str(error),
        inference_ms=int(inference) if isinstance(inference, (int, float)) else None,
        created_at=str(data.get("created_at") or ""),
    )


_MODEL_REFUSALS = ("unavailable", "not found", "retired", "deprecated", "no longer", "shut down")


def _refuses_model(status: int, message: str) -> bool:
    """A submit refused because the model cannot be used (retired upstream, switched off): the
    wire edge reads the message once, so the runner can act on a typed error."""
    return status in (400, 404, 410, 503) and any(word in message.lower() for word in _MODEL_REFUSALS)


def _snippet(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


class WaveSpeedProvider:
    """A WaveSpeed v3 client; one aiohttp session shared by all jobs."""

    policy = POLICY

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_connections: int = 64,
        listing: bool = True,
    ):
        if not api_key:
            raise UsageError(f"no API key: set the {POLICY.key_variable} environment variable")
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"the base URL {base_url!r} is not an http(s) URL; give one like https://api.example.com")
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._listing = listing
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=self._timeout,
            headers={"User-Agent": USER_AGENT, "X-Client-Name": "batchgen"},
        )

    async def close(self) -> None:
        await self._session.close()

    # -- the API ----------------------------------------------------------------------
    async def _api(self, method: str, path: str, *, kind: str, submit: bool = False, **kwargs: Any) -> Any:
        """One API call: auth to our origin only, envelope parsed, errors classified."""
        url = f"{self.base_url}{path}"
        try:
            async with self._session.request(
                method, url, headers=self._auth, allow_redirects=False, **kwargs
            ) as resp:
                body = await resp.read()
                return self._classify(resp.status, resp.headers, body, kind)
        except aiohttp.ClientConnectorError as exc:
            # The TCP connection never opened: nothing was sent, so even a submit may retry.
            raise TransientError(f"{kind}: cannot connect to {self.base_url}: {exc.os_error or exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"{kind}: the connection failed ({type(exc).__name__}: {exc or 'no answer'})"
            if submit:
                raise AmbiguousSubmitError(
                    message + "; the task may have been created, so it is not sent again automatically"
                ) from None
            raise TransientError(message) from None

    def _classify(self, status: int, headers: Any, body: bytes, kind: str) -> Any:
        try:
            payload = json.loads(body) if body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        message = ""
        if isinstance(payload, dict):
            message = str(payload.get("message") or payload.get("error") or "")
        if not message:
            message = body[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
        if status == 200:
            if not isinstance(payload, dict):
                raise PermanentError(f"{kind}: HTTP 200 but the answer is not JSON: {_snippet(message)}")
            code = payload.get("code")
            if isinstance(code, int) and code >= 400:
                return self._classify(code, headers, body, kind)
            return payload
        where = f"{kind}: HTTP {status}: {message}"
        if status == 401:
            raise FatalError(f"the API refused the key (HTTP 401: {message}); set {POLICY.key_variable} to a valid key",
                             status=status)
        if status == 402 or "balance" in message.lower() or "insufficient" in message.lower():
            raise FatalError(f"{where}; top up the account, then run the same command again", status=status)
        if kind == "submit" and _refuses_model(status, message):
            raise ModelUnavailableError(where, temporary=status >= 500, status=status,
                                        retry_after=parse_retry_after(headers))
        if status == 429:
            raise RateLimitedError(where, status=status, retry_after=parse_retry_after(headers))
        if status >= 500 or status in (408, 425):
            raise TransientError(where, status=status, retry_after=parse_retry_after(headers))
        if status == 403:
            raise FatalError(f"{where}; the key is not allowed to do this", status=status)
        raise PermanentError(where, status=status)

    @staticmethod
    def build_body(spec: ModelSpec, image_url: str, prompt: str, params: Any) -> dict[str, Any]:
        """The submit body WaveSpeed's model endpoints take: image, prompt, duration, the
        resolution when the model has a choice, and the model's extra fields when given."""
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

    async def submit(self, model: str, body: dict[str, Any], webhook: str | None = None) -> Prediction:
        # API.md: the query parameter, not the body's webhook_url (which one wins is unconfirmed).
        params = {"webhook": webhook} if webhook else None
        payload = await self._api("POST", f"/api/v3/{model}", kind="submit", submit=True, json=body, params=params)
        return parse_prediction(payload, f"submit {model}")

    async def webhook_secret(self) -> str:
        payload = await self._api("GET", "/api/v3/webhook/secret", kind="webhook secret")
        secret = (payload.get("data") or {}).get("secret") if isinstance(payload.get("data"), dict) else None
        if not isinstance(secret, str) or not secret:
            raise PermanentError(f"webhook secret: the answer has no data.secret: {_snippet(payload)}")
        return secret

    @staticmethod
    def parse_webhook(body: bytes) -> Prediction:
        """A delivery carries the prediction's ``data`` fields (and ``input``), not the envelope."""
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PermanentError(f"webhook: the body is not JSON ({exc})") from exc
        if isinstance(payload, dict) and not isinstance(payload.get("data"), dict):
            payload = {"data": payload}
        return parse_prediction(payload, "webhook")

    async def result(self, prediction_id: str) -> Prediction:
        payload = await self._api("GET", f"/api/v3/predictions/{prediction_id}/result", kind="result")
        return parse_prediction(payload, f"result {prediction_id}")

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=filename, content_type=content_type)
        payload = await self._api("POST", "/api/v3/media/upload/binary", kind="upload", data=form)
        info = payload.get("data") if isinstance(payload, dict) else None
        url = (info or {}).get("download_url") or (info or {}).get("url")
        if not url:
            raise PermanentError(f"upload {filename}: the answer has no download_url: {_snippet(payload)}")
        return str(url)

    async def list_predictions(self, *, model: str, created_after: float, created_before: float) -> Listing | None:
        """Every prediction of ``model`` created in the window (epoch seconds), paging to ``total``
        (``POST /api/v3/predictions``); None when there is no usable listing.

        ``complete`` only when every page up to the total was read: an error or odd page after the
        first ends the read with what it has, marked incomplete."""
        if not self._listing:
            return None
        filters = {"model": model, "created_after": _iso(created_after), "created_before": _iso(created_before)}
        items: dict[str, ListedPrediction] = {}
        for page in range(1, MAX_LIST_PAGES + 1):
            try:
                payload = await self._api("POST", "/api/v3/predictions", kind="list",
                                          json={"page": page, "page_size": LIST_PAGE_SIZE, **filters})
            except PermanentError:
                payload = None
            raw, total = _page_of(payload)
            if raw is None:
                return None if page == 1 else Listing(tuple(items.values()), complete=False)
            # Newest first: a prediction made while paging shifts older ones onto the next page (seen twice).
            items.update((p.id, p) for p in map(_listed, raw) if p is not None)
            if (page - 1) * LIST_PAGE_SIZE + len(raw) >= total:
                return Listing(tuple(items.values()), complete=True)
            if not raw:
                break
        return Listing(tuple(items.values()), complete=False)

    # -- files ------------------------------------------------------------------------
    async def download(self, url: str, dest: Path, *, max_bytes: int) -> Download:
        """Stream ``url`` into ``dest``, hashing as it goes; never buffers the whole file."""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise PermanentError(f"the output URL uses {scheme or 'no'} scheme ({url[:80]}); only http(s) is downloaded")
        digest = hashlib.sha256()
        written = 0
        try:
            async with self._session.get(url, max_redirects=5) as resp:
                if resp.status in (401, 403, 404, 410):
                    raise ExpiredLinkError(f"download: HTTP {resp.status} (the link has expired)", status=resp.status)
                if resp.status == 429 or resp.status >= 500:
                    raise TransientError(f"download: HTTP {resp.status}", status=resp.status,
                                         retry_after=parse_retry_after(resp.headers))
                if resp.status != 200:
                    raise PermanentError(f"download: HTTP {resp.status}", status=resp.status)
                ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if ctype and not ctype.startswith(_VIDEO_TYPES):
                    raise PermanentError(f"download: the server sent {ctype!r}, not a video")
                expected = resp.content_length
                if expected is not None and expected > max_bytes:
                    raise PermanentError(f"download: the file is {expected:,} bytes, over the {max_bytes:,}-byte cap")
                async with aiofiles.open(dest, "wb") as fh:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise PermanentError(f"download: the file passed the {max_bytes:,}-byte cap")
                        digest.update(chunk)
                        await fh.write(chunk)
        except aiohttp.TooManyRedirects:
            raise PermanentError("download: too many redirects") from None
        except aiohttp.InvalidURL as exc:
            raise PermanentError(f"download: invalid URL ({exc})") from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise TransientError(f"download: the body was cut after {written:,} bytes ({type(exc).__name__})") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"download: the connection failed ({type(exc).__name__}: {exc})") from None
        if expected is not None and written != expected:
            raise TransientError(f"download: got {written:,} of {expected:,} bytes (truncated)")
        return Download(bytes=written, sha256=digest.hexdigest(), content_type=ctype,
                        length_checked=expected is not None)


INFO = ProviderInfo(policy=POLICY, factory=WaveSpeedProvider)

__all__ = ["DEFAULT_BASE_URL", "INFO", "POLICY", "ProviderError", "WaveSpeedProvider", "parse_prediction", "parse_retry_after"]


#: The listing's largest page (docs "Predictions API"), and a bound on pages read for one window.
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 200


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=timezone.utc).timestamp()


def _page_of(payload: Any) -> tuple[list | None, int]:
    """A listing page's items and total, or (None, 0) when the answer is not one."""
    data = payload.get("data") if isinstance(payload, dict) else None
    items = data.get("items") if isinstance(data, dict) else None
    total = data.get("total") if isinstance(data, dict) else None
    if not isinstance(items, list) or not isinstance(total, int) or isinstance(total, bool):
        return None, 0
    return items, total


def _listed(item: Any) -> ListedPrediction | None:
    """One listing item; ``input`` and its body hash only when the item carries the request input."""
    if not isinstance(item, dict) or not item.get("id"):
        return None
    given = item.get("input") if isinstance(item.get("input"), dict) else None
    outputs = item.get("outputs")
    return ListedPrediction(
        id=str(item["id"]), model=str(item.get("model") or ""), status=str(item.get("status") or ""),
        created_at=_epoch(item.get("created_at")),
        outputs=tuple(str(o) for o in outputs if o) if isinstance(outputs, list) else (),
        input=given, body_hash=body_hash(given) if given is not None else "",
    )
