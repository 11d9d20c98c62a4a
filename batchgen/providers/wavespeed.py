"""WaveSpeed v3 over aiohttp: the only module that knows WaveSpeed's endpoints.

Every answer is classified here (its JSON by wire.py) into a typed record or a batchgen.errors
class, so the runner never sees HTTP. The promises a hostile or broken server cannot break:

- a submit is sent again only after an answer that proves it was not taken (a 4xx refusal, a
  503, a connection that never opened); any other failure after sending is AmbiguousSubmitError,
  carrying the task id when the unreadable answer still named one;
- a paid task's result read fails for good only on the provider's own terminal status, or after
  ODD_ANSWER_LIMIT answers in a row that contradict themselves (an unknown status, a status that
  went back): one glitch is transient;
- every wait is bounded: a total timeout per API call, Retry-After clamped to wire.RETRY_AFTER_CAP,
  a throughput floor on downloads, an answer size cap (MAX_ANSWER_BYTES, never buffered past);
- the key is sent only to ``base_url``'s origin, and every message raised is masked with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import aiohttp

from ..errors import (
    AmbiguousSubmitError,
    BatchgenError,
    FatalError,
    PermanentError,
    ProviderError,
    TransientError,
    UnreachableError,
)
from ..models import body_hash
from ..redact import Redactor
from ..webhooks import WAVESPEED_SCHEME
from .base import Download, Listing, Prediction, PredictionStatus, ProviderInfo, ProviderPolicy
from .http import checked_base_url, connection_failed, standard_body
from .streams import DOWNLOAD_MIN_RATE, DOWNLOAD_WINDOW, DownloadLimits, download_output, read_capped
from .wire import (MAYBE_CREATED, BadAnswer, UnknownStatus, answer_payload, iso_time, listed_prediction, listing_page,
                   load_json, parse_prediction, parse_retry_after, snippet, upload_url)

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
#: The largest API answer read; a bigger one is dropped unread (a result is a few kB).
MAX_ANSWER_BYTES = 4 << 20
#: Consecutive self-contradicting result answers for one task before it is given up.
ODD_ANSWER_LIMIT = 20
#: Connection failures in a row, or seconds of nothing but them, before any answer ever came,
#: that mean "wrong address or no network" (a blackholed host takes a connect timeout per try).
UNREACHABLE_AFTER = 3
UNREACHABLE_SECONDS = 10.0
#: An upload may take the API timeout plus this long per byte (64 KiB/s: 20 MB in ~5 min).
UPLOAD_MIN_RATE = 64 << 10


class WaveSpeedProvider:
    """A WaveSpeed v3 client; one aiohttp session shared by all jobs."""

    policy = POLICY

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, *, connect_timeout: float = 10.0,
                 api_timeout: float = 60.0, max_connections: int = 64, listing: bool = True,
                 download_min_rate: float = DOWNLOAD_MIN_RATE, download_window: float = DOWNLOAD_WINDOW,
                 unreachable_seconds: float = UNREACHABLE_SECONDS):
        """``api_timeout`` bounds each API call whole (an upload gets more per byte); a download
        is bounded by its head arriving within it, then by the throughput floor."""
        self._redact = Redactor(api_key)
        self.base_url = checked_base_url(POLICY, api_key, base_url, redact=self._redact)
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._listing = listing
        # A total bound per API call: a trickling answer cannot stretch it as a per-read timeout allows.
        # The connect bound is the TCP (and TLS) connect only, never a wait for a pooled connection,
        # so a connect timeout means "nothing was sent" (and counts towards an unreachable host).
        self._timeout = aiohttp.ClientTimeout(total=api_timeout, sock_connect=connect_timeout)
        self._limits = DownloadLimits(head_timeout=api_timeout, connect_timeout=connect_timeout,
                                      min_rate=download_min_rate, window=download_window)
        self._reached = False
        self._unreached = 0
        self._unreachable_seconds = unreachable_seconds
        self._first_try: float | None = None
        self._odd: Counter[str] = Counter()
        self._completed: set[str] = set()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=self._timeout,
            headers={"User-Agent": USER_AGENT, "X-Client-Name": "batchgen"},
        )

    async def close(self) -> None:
        await self._session.close()

    @contextlib.contextmanager
    def _masked(self) -> Iterator[None]:
        """Mask the key in every message raised, and in the messages of its causes: a server
        that echoes the Authorization header must not put the key in a state file or on screen."""
        try:
            yield
        except BatchgenError as exc:
            link: BaseException | None = exc
            while link is not None:
                if isinstance(link, (BatchgenError, BadAnswer)):
                    link.args = tuple(self._redact(a) if isinstance(a, str) else a for a in link.args)
                link = link.__cause__
            raise

    # -- the API ----------------------------------------------------------------------
    async def _api(self, method: str, path: str, *, kind: str, submit: bool = False, **kwargs: Any) -> dict[str, Any]:
        """One API call: auth to our origin only, the envelope of a success, or its error."""
        with self._masked():
            status, headers, body = await self._exchange(method, path, kind=kind, submit=submit, **kwargs)
            try:
                return answer_payload(status, headers, body, kind=kind, submit=submit,
                                      key_variable=POLICY.key_variable)
            except BadAnswer as exc:
                raise self._unreadable(f"{kind}: {exc}", exc, submit=submit) from exc

    async def _exchange(self, method: str, path: str, *, kind: str, submit: bool, **kwargs: Any) -> tuple:
        if self._first_try is None:
            self._first_try = time.monotonic()
        try:
            async with self._session.request(method, f"{self.base_url}{path}", headers=self._auth,
                                             allow_redirects=False, **kwargs) as resp:
                answer = resp.status, resp.headers, await read_capped(resp, MAX_ANSWER_BYTES)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # The TCP connection never opened: nothing was sent, so even a submit may retry.
            raise self._unreachable(kind, exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise connection_failed(kind, exc, submit=submit, maybe_created=MAYBE_CREATED) from exc
        self._reached, self._unreached = True, 0
        return answer

    def _unreachable(self, kind: str, exc: aiohttp.ClientError) -> ProviderError:
        """Transient, except a few failures in a row before any answer ever came: then the
        address is wrong or the network is down, and retrying for minutes helps nobody."""
        reason = getattr(exc, "os_error", None) or exc
        if not self._reached:
            self._unreached += 1
            waited = time.monotonic() - (self._first_try or 0.0)
            if self._unreached >= UNREACHABLE_AFTER or waited >= self._unreachable_seconds:
                return UnreachableError(f"cannot reach {self.base_url}: {reason}; check --base-url / your network",
                                  url=self.base_url)
        return TransientError(f"{kind}: cannot connect to {self.base_url}: {reason}", url=self.base_url)

    @staticmethod
    def _unreadable(message: str, exc: BadAnswer, *, submit: bool) -> ProviderError:
        """A success answer that cannot be read: after a submit the task may exist (and be
        billed), so it is never "rejected"; after a read the task is simply read again."""
        if submit:
            return AmbiguousSubmitError(message + MAYBE_CREATED, prediction_id=exc.prediction_id)
        return TransientError(message + "; reading it again later")

    build_body = staticmethod(standard_body)

    async def submit(self, model: str, body: dict[str, Any], webhook: str | None = None) -> Prediction:
        kind = f"submit {model}"
        # API.md: the query parameter, not the body's webhook_url (which one wins is unconfirmed).
        params = {"webhook": webhook} if webhook else None
        with self._masked():
            payload = await self._api("POST", f"/api/v3/{model}", kind=kind, submit=True, json=body, params=params)
            try:
                return parse_prediction(payload, strict_status=False)
            except BadAnswer as exc:
                raise self._unreadable(f"{kind}: {exc}", exc, submit=True) from exc

    async def webhook_secret(self) -> str:
        payload = await self._api("GET", "/api/v3/webhook/secret", kind="webhook secret")
        secret = payload.get("data", {}).get("secret") if isinstance(payload.get("data"), dict) else None
        if not isinstance(secret, str) or not secret:
            raise PermanentError(f"webhook secret: the answer has no data.secret: {snippet(payload)}")
        return secret

    @staticmethod
    def parse_webhook(body: bytes) -> Prediction:
        """A delivery carries the prediction's ``data`` fields (and ``input``), not the envelope."""
        payload = load_json(body)
        if isinstance(payload, dict) and not isinstance(payload.get("data"), dict):
            payload = {"data": payload}
        try:
            return parse_prediction(payload, strict_status=False)
        except BadAnswer as exc:
            raise PermanentError(f"webhook: {exc}") from exc

    async def result(self, prediction_id: str) -> Prediction:
        kind = f"result {prediction_id}"
        with self._masked():
            payload = await self._api("GET", f"/api/v3/predictions/{quote(prediction_id, safe='')}/result", kind=kind)
            try:
                pred = parse_prediction(payload, strict_status=True)
            except UnknownStatus as exc:
                raise self._odd_answer(prediction_id, f"the task reports {exc}") from exc
            except BadAnswer as exc:
                raise self._unreadable(f"{kind}: {exc}", exc, submit=False) from exc
            return self._consistent(prediction_id, pred)

    def _consistent(self, pid: str, pred: Prediction) -> Prediction:
        """``pred``, unless it contradicts itself or what this task said before."""
        if pred.id != pid:
            raise TransientError(f"result {pid}: the answer is about another task ({pred.id}); reading it again later")
        if pred.status is PredictionStatus.COMPLETED and not pred.outputs:
            raise self._odd_answer(pid, "the task is completed but names no output URL")
        if pred.status is not PredictionStatus.COMPLETED and pid in self._completed:
            # Completed is final: a later "processing" or "failed" is a glitch, not a lost paid video.
            raise self._odd_answer(pid, f"the task went back from completed to {pred.status.value}")
        if pred.status is PredictionStatus.COMPLETED:
            self._completed.add(pid)
        self._odd.pop(pid, None)
        return pred

    def _odd_answer(self, pid: str, what: str) -> ProviderError:
        """Transient at first; PermanentError after ODD_ANSWER_LIMIT in a row, so a task whose
        answers never make sense is not read forever."""
        self._odd[pid] += 1
        if self._odd[pid] >= ODD_ANSWER_LIMIT:
            return PermanentError(f"result {pid}: {what}, {self._odd[pid]} reads in a row; batchgen stops "
                                  "following it: look the task up on WaveSpeed's dashboard")
        return TransientError(f"result {pid}: {what}; reading it again later")

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        kind = f"upload {filename}"
        with self._masked():
            form = aiohttp.FormData()
            form.add_field("file", data, filename=filename, content_type=content_type)
            # The API's total bound plus time for the bytes themselves, so a large image on a slow line fits.
            timeout = aiohttp.ClientTimeout(total=self._timeout.total + len(data) / UPLOAD_MIN_RATE,
                                            sock_connect=self._timeout.sock_connect)
            payload = await self._api("POST", "/api/v3/media/upload/binary", kind=kind, data=form, timeout=timeout)
            try:
                return upload_url(payload)
            except BadAnswer as exc:
                raise self._unreadable(f"{kind}: {exc}", exc, submit=False) from exc

    async def list_predictions(self, *, model: str, created_after: float, created_before: float) -> Listing | None:
        """Every prediction of ``model`` created in the window (epoch seconds), paging to ``total``
        (``POST /api/v3/predictions``); None when there is no usable listing.

        ``complete`` only when every page up to the total was read: an error or odd page after the
        first ends the read with what it has, marked incomplete."""
        if not self._listing:
            return None
        filters = {"model": model, "created_after": iso_time(created_after), "created_before": iso_time(created_before)}
        items: dict[str, ListedPrediction] = {}
        for page in range(1, MAX_LIST_PAGES + 1):
            try:
                payload = await self._api("POST", "/api/v3/predictions", kind="list",
                                          json={"page": page, "page_size": LIST_PAGE_SIZE, **filters})
            except PermanentError:
                payload = None
            raw, total = listing_page(payload)
            if raw is None:
                return None if page == 1 else Listing(tuple(items.values()), complete=False)
            # Newest first: a prediction made while paging shifts older ones onto the next page (seen twice).
            items.update((p.id, p) for p in map(listed_prediction, raw) if p is not None)
            if (page - 1) * LIST_PAGE_SIZE + len(raw) >= total:
                return Listing(tuple(items.values()), complete=True)
            if not raw:
                break
        return Listing(tuple(items.values()), complete=False)

    async def balance(self) -> float | None:
        """``GET /api/v3/balance`` (shape unconfirmed upstream): dollars, or None for any error or odd answer."""
        try:
            payload = await self._api("GET", "/api/v3/balance", kind="balance")
        except ProviderError:
            return None
        data = payload.get("data")
        value = data.get("balance") if isinstance(data, dict) else data
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return None
        try:
            dollars = float(value)
        except ValueError:
            return None
        return dollars if dollars == dollars and abs(dollars) != float("inf") else None

    # -- files ------------------------------------------------------------------------
    async def download(self, url: str, dest: Path, *, max_bytes: int) -> Download:
        """Stream ``url`` into ``dest`` (no Authorization header: output URLs are signed)."""
        with self._masked():
            return await download_output(self._session, url, dest, max_bytes=max_bytes, limits=self._limits)


#: The listing's largest page (docs "Predictions API"), and a bound on pages read for one window.
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 200

INFO = ProviderInfo(policy=POLICY, factory=WaveSpeedProvider)

__all__ = ["DEFAULT_BASE_URL", "INFO", "MAX_ANSWER_BYTES", "POLICY", "ProviderError", "WaveSpeedProvider",
           "parse_prediction", "parse_retry_after"]
