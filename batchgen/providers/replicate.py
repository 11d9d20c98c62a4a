"""Replicate's HTTP API over aiohttp: the only module that knows Replicate's JSON (docs/replicate.md).

Every answer is classified here into a typed record or a batchgen.errors class. The API token
goes only to ``base_url``'s origin: output files (replicate.delivery in production) and listing
``next`` links that point elsewhere never get it. A submit that fails after it was sent is an
AmbiguousSubmitError unless the server provably refused it (a 4xx answer); the listing carries
each prediction's ``input``, so such a submit is then found exactly by ``body_hash``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..errors import (
    AmbiguousSubmitError,
    FatalError,
    ModelUnavailableError,
    OutputExpiredError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from ..models import SEEDANCE as WAVESPEED_SEEDANCE
from ..models import ModelSpec, ModelTable, body_hash
from ..webhooks import STANDARD_SCHEME
from .base import Download, ListedPrediction, Listing, Prediction, PredictionStatus, ProviderInfo, ProviderPolicy
from .http import checked_base_url, connection_failed, standard_body
from .streams import DownloadLimits, download_output
from .wavespeed import USER_AGENT
from .wire import parse_retry_after, snippet

DEFAULT_BASE_URL = "https://api.replicate.com"
POLICY = ProviderPolicy(
    name="replicate",
    # The official client's variable (replicate/client.py, _get_api_token_from_environment).
    key_variable="REPLICATE_API_TOKEN",
    default_base_url=DEFAULT_BASE_URL,
    # Images go through the Files API (a data URI would put every picture into the state's upload
    # line). A file's default lifetime is unconfirmed (it carries an expires_at): an hour, the window
    # Replicate keeps prediction data, keeps a reused URL on the safe side; uploading again is cheap.
    upload_lifetime=3600.0,
    # API predictions' inputs, outputs and files are removed after an hour (docs "Data retention").
    output_lifetime=3600.0,
    # Public models bill active time only; a prediction aborted before it started costs nothing
    # (docs "Billing", "Prediction lifecycle"). Per-output official models: unconfirmed.
    failed_tasks_billed=False,
    # There is no account concurrency cap that refuses a create: over capacity a prediction waits in
    # `starting` (docs "Prediction lifecycle"); only the request rate answers 429 (docs "Rate limits").
    queues_over_limit=True,
    # Standard Webhooks (docs "Verify webhooks").
    webhook_scheme=STANDARD_SCHEME,
)

#: Seedance 2.0 as Replicate names it (docs/replicate.md): one model for text and image to video.
SEEDANCE = "bytedance/seedance-2.0"
#: The same model as WaveSpeed's Seedance 2.0 row (durations, resolutions and, unconfirmed, its prices);
#: only the name and the extra fields of Replicate's schema differ.
MODELS: tuple[ModelSpec, ...] = (
    dataclasses.replace(
        ModelTable().get(WAVESPEED_SEEDANCE),
        id=SEEDANCE,
        extra_fields={
            "aspect_ratio": ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9", "adaptive"),
            "last_frame_image": (),
            "generate_audio": ("true", "false", "True", "False"),
            "seed": (),
        },
        confirmed=False,
        note="fields from Replicate's schema page; 1080p and every price unconfirmed (WaveSpeed's figures)",
        family="seedance-2.0",
    ),
)

_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_FAILED = {"failed", "canceled", "aborted"}
_STATUS = {"starting": PredictionStatus.CREATED, "processing": PredictionStatus.PROCESSING,
           "succeeded": PredictionStatus.COMPLETED}
_MODEL_REFUSALS = ("unavailable", "disabled", "not found", "does not exist", "retired", "no longer")
_MAYBE_CREATED = ("; the prediction may have been created, so it is sent again only if the listing, searched for "
                  "its input, proves it was not")
#: Listing pages read at most per call: 100 items each (docs), so 5,000 recent predictions.
MAX_PAGES = 50


def parse_time(value: Any) -> float | None:
    """Epoch seconds of Replicate's ISO 8601 timestamps (``2023-09-08T16:19:34.765994Z``)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _outputs(output: Any) -> tuple[str, ...]:
    if isinstance(output, str):
        return (output,)
    if isinstance(output, list):
        return tuple(str(item) for item in output if isinstance(item, str))
    return ()


def parse_prediction(payload: Any, where: str) -> Prediction:
    """A prediction object as a Prediction; OutputExpiredError when a success's outputs were removed."""
    if not isinstance(payload, dict) or not payload.get("id"):
        raise PermanentError(f"{where}: the answer is not a prediction: {snippet(payload)}")
    raw = str(payload.get("status") or "starting").lower()
    status = PredictionStatus.FAILED if raw in _FAILED else _STATUS.get(raw, PredictionStatus.PROCESSING)
    if status is PredictionStatus.COMPLETED and payload.get("data_removed") is True:
        raise OutputExpiredError(
            f"{where}: Replicate removed prediction {payload['id']}'s output (outputs of API predictions are "
            "deleted after about an hour); the video was paid for but can no longer be downloaded",
            prediction_id=str(payload["id"]), model=str(payload.get("model") or "") or None)
    error = str(payload.get("error") or "")
    if status is PredictionStatus.FAILED and not error:
        error = f"the prediction ended as {raw}"
    metrics = payload.get("metrics") if isinstance(payload.get("metrics"), dict) else {}
    seconds = metrics.get("predict_time")
    return Prediction(
        id=str(payload["id"]),
        model=str(payload.get("model") or ""),
        status=status,
        outputs=_outputs(payload.get("output")) if status is PredictionStatus.COMPLETED else (),
        error=error,
        inference_ms=round(seconds * 1000) if isinstance(seconds, (int, float)) else None,
        created_at=str(payload.get("created_at") or ""),
    )


def parse_listed(item: Any) -> ListedPrediction | None:
    """One listing entry; its ``input`` is gone (``{}``) once Replicate removed the data."""
    if not isinstance(item, dict) or not item.get("id"):
        return None
    given = item.get("input")
    kept = given if isinstance(given, dict) and given and not item.get("data_removed") else None
    return ListedPrediction(
        id=str(item["id"]), model=str(item.get("model") or ""), status=str(item.get("status") or ""),
        created_at=parse_time(item.get("created_at")), outputs=_outputs(item.get("output")),
        input=kept, body_hash=body_hash(kept) if kept is not None else "",
    )


def _message(payload: Any, body: bytes, status: int) -> str:
    """RFC 7807 problem details (``detail``, ``title``) as the official client reads them."""
    if isinstance(payload, dict):
        text = payload.get("detail") or payload.get("title") or payload.get("error")
        if text:
            return str(text)
    return body[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"


class ReplicateProvider:
    """A Replicate client; one aiohttp session shared by all jobs."""

    policy = POLICY

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, *, connect_timeout: float = 10.0,
                 read_timeout: float = 60.0, max_connections: int = 64, webhook: str | None = None,
                 webhook_events: tuple[str, ...] = ("completed",)):
        self.base_url = checked_base_url(POLICY, api_key, base_url, key_noun="API token")
        parts = urlsplit(self.base_url)
        self._origin = (parts.scheme, parts.netloc)
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._webhook = webhook
        self._webhook_events = list(webhook_events)
        self._limits = DownloadLimits(head_timeout=read_timeout, connect_timeout=connect_timeout)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout),
            headers={"User-Agent": USER_AGENT},
        )

    async def close(self) -> None:
        await self._session.close()

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> Download:
        """Stream an output file (delivery URLs are public: no Authorization header)."""
        return await download_output(self._session, url, dest, max_bytes=max_bytes, limits=self._limits)

    # -- the API ----------------------------------------------------------------------
    async def _api(self, method: str, url: str, *, kind: str, submit: bool = False, **kwargs: Any) -> Any:
        """One API call to our own origin: auth attached here only, the answer classified."""
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self._origin:
            raise PermanentError(f"{kind}: the server pointed at {parts.scheme}://{parts.netloc}, not "
                                 f"{self.base_url}; the API token is not sent there")
        try:
            async with self._session.request(method, url, headers=self._auth, allow_redirects=False,
                                             **kwargs) as resp:
                body = await resp.read()
                return self._classify(resp.status, resp.headers, body, kind, submit)
        except aiohttp.ClientConnectorError as exc:
            # The TCP connection never opened: nothing was sent, so even a submit may retry.
            raise TransientError(f"{kind}: cannot connect to {self.base_url}: {exc.os_error or exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise connection_failed(kind, exc, submit=submit, maybe_created=_MAYBE_CREATED) from exc

    def _classify(self, status: int, headers: Any, body: bytes, kind: str, submit: bool) -> Any:
        try:
            payload = json.loads(body) if body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        if status in (200, 201):
            if not isinstance(payload, dict):
                if submit:
                    raise AmbiguousSubmitError(f"{kind}: HTTP {status} but the answer is unreadable: "
                                               f"{snippet(body[:200].decode('utf-8', 'replace'))}")
                raise PermanentError(f"{kind}: HTTP {status} but the answer is not JSON")
            return payload
        message = _message(payload, body, status)
        where = f"{kind}: HTTP {status}: {message}"
        self._raise_refusal(status, headers, message, where, kind)
        if submit:
            # A 5xx (or any odd answer) after the request was sent proves nothing: it may exist.
            raise AmbiguousSubmitError(where + _MAYBE_CREATED, status=status)
        if status >= 500 or status in (408, 425):
            raise TransientError(where, status=status, retry_after=parse_retry_after(headers))
        raise PermanentError(where, status=status)

    @staticmethod
    def _raise_refusal(status: int, headers: Any, message: str, where: str, kind: str) -> None:
        """The answers that prove nothing was created: the server said no, and why."""
        if status == 401:
            raise FatalError(f"Replicate refused the token (HTTP 401: {message}); set {POLICY.key_variable} "
                             "to a valid API token", status=status)
        if status in (402, 403):
            raise FatalError(f"{where}; check the account's credit and the token's permissions, then run the "
                             "same command again", status=status)
        if status == 429:
            raise RateLimitedError(where, status=status, retry_after=parse_retry_after(headers))
        if kind == "submit" and status in (404, 410):
            raise ModelUnavailableError(where + "; the model does not exist (or no longer does) on Replicate",
                                        temporary=False, status=status)
        if kind == "submit" and status == 503 and any(w in message.lower() for w in _MODEL_REFUSALS):
            raise ModelUnavailableError(where, temporary=True, status=status, retry_after=parse_retry_after(headers))
        if 400 <= status < 500:
            raise PermanentError(where, status=status)

    #: The prediction ``input``; Replicate's schema names the extra fields (e.g. last_frame_image).
    build_body = staticmethod(standard_body)

    async def submit(self, model: str, body: dict[str, Any], webhook: str | None = None) -> Prediction:
        if not _MODEL_NAME.match(model):
            raise PermanentError(f"submit: {model!r} is not a Replicate model name; use owner/name, "
                                 f"e.g. {SEEDANCE}", model=model)
        request: dict[str, Any] = {"input": body}
        webhook = webhook or self._webhook
        if webhook:
            request["webhook"] = webhook
            request["webhook_events_filter"] = self._webhook_events
        payload = await self._api("POST", f"{self.base_url}/v1/models/{model}/predictions", kind="submit",
                                  submit=True, json=request)
        try:
            return parse_prediction(payload, f"submit {model}")
        except PermanentError as exc:
            raise AmbiguousSubmitError(f"submit {model}: the answer names no prediction ({exc})",
                                       prediction_id=payload.get("id")) from exc

    async def result(self, prediction_id: str) -> Prediction:
        payload = await self._api("GET", f"{self.base_url}/v1/predictions/{prediction_id}", kind="result")
        return parse_prediction(payload, f"result {prediction_id}")

    async def cancel(self, prediction_id: str) -> Prediction:
        payload = await self._api("POST", f"{self.base_url}/v1/predictions/{prediction_id}/cancel", kind="cancel")
        return parse_prediction(payload, f"cancel {prediction_id}")

    @staticmethod
    def parse_webhook(body: bytes) -> Prediction:
        """A delivery's body is the prediction object, as a read answers it."""
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PermanentError(f"webhook: the body is not JSON ({exc})") from exc
        return parse_prediction(payload, "webhook")

    async def webhook_secret(self) -> str:
        """The account's signing secret (``whsec_...``) for verifying deliveries (webhooks.STANDARD_SCHEME)."""
        payload = await self._api("GET", f"{self.base_url}/v1/webhooks/default/secret", kind="webhook secret")
        key = payload.get("key")
        if not isinstance(key, str) or not key.startswith("whsec_"):
            raise PermanentError(f"webhook secret: the answer has no whsec_ key: {snippet(payload)}")
        return key

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Store the image with the Files API (multipart ``content``); its ``urls.get`` goes in the input.
        A lost answer only costs a stray file, so this is an ordinary retryable call."""
        form = aiohttp.FormData()
        form.add_field("content", data, filename=filename, content_type=content_type or "application/octet-stream")
        payload = await self._api("POST", f"{self.base_url}/v1/files", kind="upload", data=form)
        urls = payload.get("urls") if isinstance(payload.get("urls"), dict) else {}
        url = urls.get("get")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise PermanentError(f"upload {filename}: the answer has no urls.get: {snippet(payload)}")
        return url

    async def balance(self) -> float | None:
        """Replicate has no balance endpoint: unknown."""
        return None

    # -- the listing ------------------------------------------------------------------
    async def _pages(self, max_pages: int):
        """Listing pages, newest first, following ``next`` (a URL on our origin) until it ends."""
        url: str | None = f"{self.base_url}/v1/predictions"
        for _ in range(max_pages):
            if url is None:
                return
            payload = await self._api("GET", url, kind="list")
            results = payload.get("results")
            if not isinstance(results, list):
                raise PermanentError(f"list: the answer has no results list: {snippet(payload)}")
            url = payload.get("next") if isinstance(payload.get("next"), str) else None
            yield [item for item in map(parse_listed, results) if item is not None], url is None

    async def list_predictions(self, *, model: str, created_after: float, created_before: float) -> Listing | None:
        """Predictions of ``model`` created in the window; complete once a page reached past its start."""
        found: list[ListedPrediction] = []
        async for items, last in self._pages(MAX_PAGES):
            for item in items:
                when = item.created_at
                if item.model == model and when is not None and created_after <= when <= created_before:
                    found.append(item)
            oldest = min((i.created_at for i in items if i.created_at is not None), default=None)
            if last or (oldest is not None and oldest < created_after):
                return Listing(items=tuple(found), complete=True)
        return Listing(items=tuple(found), complete=False)


INFO = ProviderInfo(policy=POLICY, factory=ReplicateProvider, models=MODELS)

__all__ = ["DEFAULT_BASE_URL", "INFO", "MODELS", "POLICY", "SEEDANCE", "ReplicateProvider", "parse_listed",
           "parse_prediction", "parse_time"]
