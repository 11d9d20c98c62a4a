"""``batchgen review STATE``: a local page to pick the best take of each row, reject, or mark for redo.

The server binds to 127.0.0.1 (``--host`` to change) on a free port (``--port``) and prints a URL
carrying a random token; every request (page, API, media) must carry that token, compared in
constant time, or it gets 403. It serves only files inside the output folder: a path is resolved
(symbolic links followed) and refused when it ends up outside. It needs no API key and never
reads one, so none can reach the page.

Routes (all ``?token=...``):
    GET  /               the page (batchgen/review/page.py)
    GET  /api/rows       the rows, their takes and the picks, as JSON
    POST /api/pick       {"row": KEY, "status": "picked"|"rejected"|"redo"|"", "take": JOB_KEY, "note": TEXT};
                         "" clears the row's verdict. Saved to <out>/picks.json before answering.
    GET  /files/PATH     a file of the output folder (videos with range requests, posters, thumbnails)

Posters and source thumbnails are the report's (``<out>/.report/``), made at start when missing.
The rows are read again from the state when it changed, so reloading the page shows the takes a
``run --redo`` made meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import threading
import webbrowser
from pathlib import Path
from typing import Any

from aiohttp import web

from ..cli_types import state_file
from ..errors import StateError, UsageError
from ..lifecycle import JobStatus
from ..picks import PICKS_FILE, group_rows, kept_redo_link, load_picks, make_pick, save_picks
from ..report import assets_dir, make_pictures, plan_cards
from ..report_page import LABELS, Card, billed, model_line
from ..state import load
from .page import render_shell

_HEADERS = {"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff"}


def add_review_arguments(subparsers: Any) -> None:
    review = subparsers.add_parser(
        "review", help="a local page to pick takes, reject and mark redos",
        description="Serve a page of the batch, one row per source image with its takes side by side, on this "
                    "machine only (a token in the printed URL guards every request). Keys: arrows or j/k move, "
                    "1-9 pick a take, x rejects, r marks a redo with a note, u clears. Picks are saved to "
                    "<out>/picks.json as they are made; 'batchgen export' delivers them.")
    review.add_argument("state", type=state_file, help="the state file of the batch, or its folder")
    review.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    review.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    review.add_argument("--open", action="store_true", help="open the page in the default browser")


def review_command(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port; give 1-65535, or 0 for any free port")
    review = Review(args.state)
    try:
        asyncio.run(_serve_forever(review, args.host, args.port, args.open))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; pick another --port") from exc
    return 0


async def _serve_forever(review: Review, host: str, port: int, open_browser: bool) -> None:
    runner, url = await review.start(host, port)
    print(f"reviewing {len(review.rows)} row(s) of {review.out_dir}; picks are saved to {review.out_dir / 'picks.json'}")
    print(f"open {url}  (Ctrl-C to stop)", flush=True)
    if open_browser:
        webbrowser.open(url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class Review:
    """One batch under review: its rows (read again when the state changes), its picks, and the web app."""

    def __init__(self, state_path: Path, token: str | None = None):
        state_path = Path(state_path)
        if not state_path.is_file():
            raise StateError(f"{state_path}: no such state file; it is created by 'batchgen run' in the output folder")
        self.out_dir = state_path.resolve().parent
        self.token = token or secrets.token_urlsafe(24)
        load_picks(self.out_dir)  # a broken picks.json is said now, not at the page's first request
        self.state_path, self._seen = state_path, (0, 0)
        #: One re-read at a time: two reloads at once would write the same pictures' temporaries.
        self._reading = threading.Lock()
        self._refresh()
        self.app = web.Application(middlewares=[self._check_token])
        self.app.add_routes([web.get("/", self._page), web.get("/api/rows", self._rows),
                             web.post("/api/pick", self._pick), web.get("/files/{path:.+}", self._file)])

    def _refresh(self) -> None:
        """Read the state again when it changed since (a 'run --redo' added takes while the page was open)."""
        with self._reading:
            info = self.state_path.stat()
            if (info.st_mtime_ns, info.st_size) == self._seen:
                return
            state = load(self.state_path)
            self.rows = group_rows(state)
            self.problems = self._pictures(state)
            self._seen = (info.st_mtime_ns, info.st_size)

    def _pictures(self, state) -> list[str]:
        cards, pictures = plan_cards(state, self.out_dir, assets_dir(self.out_dir), Path.cwd())
        _, _, problems = make_pictures(pictures)
        self.cards = {c.rec.key: c for c in cards}
        for card in cards:
            card.thumb = self._rel(card.thumb_file) if card.thumb_file and card.thumb_file not in problems else ""
            card.poster = self._rel(card.poster_file) if card.poster_file and card.poster_file not in problems else ""
        return list(problems.values())

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        return runner, f"http://{shown}:{bound_port}/?token={self.token}"

    @web.middleware
    async def _check_token(self, request: web.Request, handler) -> web.StreamResponse:
        given = request.query.get("token", "")
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPForbidden(text="403: this page needs the token printed by 'batchgen review'; "
                                         "open the exact URL it printed", headers=_HEADERS)
        response = await handler(request)
        response.headers.update(_HEADERS)
        return response

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=render_shell(self.out_dir.name, str(self.out_dir)), content_type="text/html")

    async def _rows(self, request: web.Request) -> web.Response:
        # The pictures of new takes are made off the event loop: picks and videos keep being served.
        try:
            await asyncio.to_thread(self._refresh)
        except (OSError, StateError) as exc:
            raise web.HTTPConflict(text=f"cannot read the batch again: {exc}; the rows shown are the ones read "
                                        "before", headers=_HEADERS) from exc
        picks = self._saved_picks()
        rows = [row_json(row, self.cards, picks.get(row.key)) for row in self.rows]
        return web.json_response({"title": self.out_dir.name, "rows": rows, "problems": self.problems})

    async def _pick(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            row = next((r for r in self.rows if r.key == body.get("row")), None)
            if row is None:
                raise ValueError(f"no row {body.get('row')!r} in this batch")
            status = str(body.get("status", ""))
            entry = make_pick(row, status, str(body.get("take", "")), str(body.get("note", ""))) if status else None
        except (ValueError, AttributeError) as exc:
            raise web.HTTPBadRequest(text=f"bad pick: {exc}", headers=_HEADERS) from exc
        # Re-read: 'run --redo' links its new take into picks.json while this page is open, and a
        # stale copy written back would drop that link and make the next --redo pay for another take.
        picks = self._saved_picks()
        if entry is None:
            picks.pop(row.key, None)
        else:
            picks[row.key] = entry = kept_redo_link(picks.get(row.key), entry)
        try:
            save_picks(self.out_dir, picks)
        except OSError as exc:
            raise web.HTTPInternalServerError(
                text=f"pick not saved: cannot write {self.out_dir / PICKS_FILE} ({exc.strerror}); free some space "
                     "or fix the folder's permissions, then pick again", headers=_HEADERS) from exc
        return web.json_response({"row": row.key, "pick": entry})

    def _saved_picks(self) -> dict[str, dict[str, Any]]:
        """picks.json as it is now: the page's picks, and the takes 'run --redo' linked meanwhile."""
        try:
            return load_picks(self.out_dir)
        except StateError as exc:
            raise web.HTTPConflict(text=f"cannot read the picks: {exc}", headers=_HEADERS) from exc

    async def _file(self, request: web.Request) -> web.StreamResponse:
        target = confined(self.out_dir, request.match_info["path"])
        if target is None:
            raise web.HTTPNotFound(text="404: not a file of this batch's output folder", headers=_HEADERS)
        return web.FileResponse(target)


def confined(root: Path, rel: str) -> Path | None:
    """``root/rel`` as a real file inside ``root`` (links resolved), or None: nothing outside is served."""
    base = root.resolve()
    try:
        target = (base / rel).resolve()
        # is_file raises for a name too long for the disk: such a request is a 404, not a 500.
        return target if target.is_relative_to(base) and target.is_file() else None
    except (OSError, RuntimeError, ValueError):
        return None


def row_json(row, cards: dict[str, Card], pick: dict[str, Any] | None) -> dict[str, Any]:
    first = cards[row.takes[0].key]
    return {"key": row.key, "image": row.image, "where": row.where, "thumb": first.thumb,
            "thumb_note": first.thumb_note, "prompt": row.takes[0].prompt, "pick": pick,
            "failed": any(r.status is JobStatus.FAILED for r in row.takes),
            "takes": [take_json(row, rec, cards[rec.key]) for rec in row.takes]}


def take_json(row, rec, card: Card) -> dict[str, Any]:
    asked, used = model_line(rec)
    seconds = rec.inference_ms / 1000 if rec.inference_ms else None
    return {"key": rec.key, "id": rec.id, "take": row.take_number(rec), "status": LABELS[rec.status],
            "pickable": rec.status is JobStatus.DOWNLOADED and bool(card.video), "asked": asked, "used": used,
            "billed": billed(rec), "price": rec.cost, "seconds": seconds,
            "video": rec.path if card.video else "", "poster": card.poster, "prompt": rec.prompt,
            "params": rec.params, "error": rec.error if rec.status is not JobStatus.DOWNLOADED else "",
            "note": card.video_note}


class ReviewThread:
    """The review server on a background thread (for the screenshot script and tests): ``with
    ReviewThread(state) as review: review.url``."""

    def __init__(self, state_path: Path, host: str = "127.0.0.1", port: int = 0):
        self.review = Review(state_path)
        self._where = (host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="batchgen-review", daemon=True)
        self.url = ""

    def __enter__(self) -> "ReviewThread":
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self.review.start(*self._where), self._loop)
        self._runner, self.url = started.result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
