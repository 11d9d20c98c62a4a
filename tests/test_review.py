"""``batchgen review``: the token on every request, files confined to the output folder, picks saved and
reloaded, all against a real batch (3 rows x 2 takes) made by the simulator, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from conftest import run
from runner_helpers import make_images, run_cli, write_manifest

from batchgen.picks import group_rows, load_picks
from batchgen.redo import link_redo_takes
from batchgen.review import Review
from batchgen.state import load

SECRET_KEY = "sk-review-must-never-see-this-0123456789"


def build_takes_batch(make_sim, folder: Path) -> Path:
    """A real batch: three manifest rows, one image each, ``takes: 2``; returns its state file."""
    make_images(folder / "img", 3)
    rows = [{"image": f"img/shot0{i}.png", "prompt": f"slow push-in on product {i}", "duration": 4, "takes": 2}
            for i in range(3)]
    write_manifest(folder, rows)
    assert run_cli(make_sim(), folder / "batch.yaml", folder / "out") == 0
    return folder / "out" / "state.jsonl"


@pytest.fixture
def takes_batch(make_sim, tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return build_takes_batch(make_sim, tmp_path)


async def _served(state: Path, body):
    review = Review(state)
    runner, url = await review.start()
    try:
        async with aiohttp.ClientSession() as session:
            return await body(review, url.split("/?")[0], session)
    finally:
        await runner.cleanup()


def test_the_printed_url_is_on_loopback_with_a_long_random_token(takes_batch):
    async def body(review, base, session):
        return base, review.token
    base, token = run(_served(takes_batch, body))
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base) and not base.endswith(":0")
    assert len(token) >= 32 and token != Review(takes_batch).token


def test_every_request_without_the_right_token_is_refused(takes_batch, monkeypatch):
    monkeypatch.setenv("WAVESPEED_API_KEY", SECRET_KEY)

    async def body(review, base, session):
        seen = {}
        rows = await (await session.get(f"{base}/api/rows?token={review.token}")).json()
        video = rows["rows"][0]["takes"][0]["video"]
        poster = rows["rows"][0]["takes"][0]["poster"]
        for name, path in (("page", "/"), ("api", "/api/rows"), ("video", f"/files/{video}"),
                           ("poster", f"/files/{poster}")):
            for token in ("", "?token=", "?token=wrong", f"?token={review.token[:-1]}", f"?token={review.token}"):
                async with session.get(base + path + token) as answer:
                    seen[name, token.rsplit("=", 1)[-1]] = answer.status
                    if answer.status == 200 and name != "video" and name != "poster":
                        assert SECRET_KEY not in await answer.text(), "the key never reaches the page"
        async with session.post(f"{base}/api/pick", json={"row": rows["rows"][0]["key"], "status": "rejected"}) as a:
            seen["post", ""] = a.status
        return seen, review.token
    seen, token = run(_served(takes_batch, body))
    for (name, given), status in seen.items():
        assert status == (200 if given == token else 403), (name, given, status)
    assert load_picks(takes_batch.parent) == {}, "a refused pick is not saved"


def test_only_files_inside_the_output_folder_are_served(takes_batch, tmp_path):
    out = takes_batch.parent
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", out / "link.txt")
    os.symlink(tmp_path, out / "up")

    async def body(review, base, session):
        statuses = {}
        for path in ("../secret.txt", "%2e%2e/secret.txt", "%2E%2E%2Fsecret.txt", quote(str(tmp_path / "secret.txt")),
                     "link.txt", "up/secret.txt", "nothing.mp4", "img", "x" * 300 + ".mp4", "a/" * 3000 + "b",
                     "state.jsonl%00.mp4", "shot00-4s-720p-take1.mp4"):
            async with session.get(f"{base}/files/{path}?token={review.token}") as answer:
                statuses[path] = (answer.status, await answer.read())
        async with session.get(f"{base}/files/shot00-4s-720p-take1.mp4?token={review.token}",
                               headers={"Range": "bytes=0-99"}) as answer:
            statuses["range"] = (answer.status, await answer.read())
        return statuses
    statuses = run(_served(takes_batch, body))
    video = (out / "shot00-4s-720p-take1.mp4").read_bytes()
    assert statuses.pop("shot00-4s-720p-take1.mp4") == (200, video)
    assert statuses.pop("range") == (206, video[:100]), "players seek with range requests"
    for path, (status, data) in statuses.items():
        assert status in (403, 404) and b"outside" not in data, (path, status)


def test_picks_are_saved_as_made_and_shown_again_after_a_restart(takes_batch):
    async def pick(review, base, session):
        rows = (await (await session.get(f"{base}/api/rows?token={review.token}")).json())["rows"]
        first, second, third = rows
        answers = []
        for row, status, take, note in ((first, "picked", first["takes"][1]["key"], ""),
                                        (second, "rejected", "", ""), (third, "redo", "", "  slower camera "),
                                        (second, "picked", second["takes"][0]["key"], "")):
            async with session.post(f"{base}/api/pick?token={review.token}",
                                    json={"row": row["key"], "status": status, "take": take, "note": note}) as a:
                answers.append(a.status)
        for bad in ({"row": "nope", "status": "rejected"}, {"row": first["key"], "status": "loved"},
                    {"row": first["key"], "status": "picked", "take": "not-a-job"}):
            async with session.post(f"{base}/api/pick?token={review.token}", json=bad) as a:
                answers.append((a.status, (await a.text())[:9]))
        return rows, answers
    rows, answers = run(_served(takes_batch, pick))
    assert answers == [200] * 4 + [(400, "bad pick:")] * 3
    saved = json.loads((takes_batch.parent / "picks.json").read_text())
    assert saved["version"] == 1 and set(saved["rows"]) == {r["key"] for r in rows}
    assert saved["rows"][rows[0]["key"]]["take"] == rows[0]["takes"][1]["key"]
    assert saved["rows"][rows[0]["key"]]["job"] == "shot00-4s-720p-take2"
    assert saved["rows"][rows[2]["key"]] == {**saved["rows"][rows[2]["key"]], "status": "redo", "note": "slower camera"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", saved["rows"][rows[1]["key"]]["time"])

    async def reread(review, base, session):
        return (await (await session.get(f"{base}/api/rows?token={review.token}")).json())["rows"]
    again = run(_served(takes_batch, reread))
    assert [r["pick"]["status"] for r in again] == ["picked", "picked", "redo"]
    assert [r["pick"]["take"] for r in again[:2]] == [rows[0]["takes"][1]["key"], rows[1]["takes"][0]["key"]]


def test_a_pick_keeps_a_redo_link_made_meanwhile_and_a_failed_save_says_where_and_why(takes_batch, monkeypatch):
    """'run --redo' links its take into picks.json while the page is open; the page's next save keeps that
    link (else the next --redo pays for another take) and a reload shows the file as it is now."""
    out = takes_batch.parent

    async def body(review, base, session):
        rows = (await (await session.get(f"{base}/api/rows?token={review.token}")).json())["rows"]
        api = f"{base}/api/pick?token={review.token}"
        async with session.post(api, json={"row": rows[0]["key"], "status": "redo", "note": "slower"}) as a:
            assert a.status == 200
        link_redo_takes(out, {rows[0]["key"]: "take-key-of-the-redo"})
        async with session.post(api, json={"row": rows[1]["key"], "status": "rejected"}) as a:
            assert a.status == 200
        again = (await (await session.get(f"{base}/api/rows?token={review.token}")).json())["rows"]
        (out / "picks.json").write_text("{half a file")
        async with session.post(api, json={"row": rows[2]["key"], "status": "rejected"}) as a:
            refused = a.status, await a.text()
        (out / "picks.json").unlink()

        def disk_full(src, dst):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(os, "replace", disk_full)
        async with session.post(api, json={"row": rows[2]["key"], "status": "rejected"}) as a:
            failed = a.status, await a.text()
        monkeypatch.undo()
        return rows, again, refused, failed
    rows, again, refused, failed = run(_served(takes_batch, body))
    assert again[0]["pick"]["redo_take"] == "take-key-of-the-redo"
    assert refused[0] == 409 and "picks.json" in refused[1] and "fix or remove the file" in refused[1]
    assert failed[0] == 500 and f"cannot write {out / 'picks.json'} (No space left" in failed[1], failed
    assert [p.name for p in out.iterdir() if p.name.startswith(".picks-")] == [], "no temporary file left"


def test_marking_a_redone_row_redo_again_keeps_its_take_unless_the_note_changes(takes_batch):
    """The page sends redo as soon as r is pressed (the note box opens after): r then Esc on a row an
    earlier --redo served must not order a second paid take; a new note is a new request."""
    out = takes_batch.parent

    async def body(review, base, session):
        rows = (await (await session.get(f"{base}/api/rows?token={review.token}")).json())["rows"]
        api, key = f"{base}/api/pick?token={review.token}", rows[0]["key"]

        async def redo(note):
            async with session.post(api, json={"row": key, "status": "redo", "note": note}) as answer:
                return (await answer.json())["pick"].get("redo_take")
        await redo("slower")
        link_redo_takes(out, {key: "take-key-of-the-redo"})     # what a confirmed 'run --redo' does
        return [await redo("slower"), await redo("slower"), await redo("faster")]
    assert run(_served(takes_batch, body)) == ["take-key-of-the-redo", "take-key-of-the-redo", None]
    assert "redo_take" not in load_picks(out)[group_rows(load(takes_batch))[0].key]


def test_a_reload_shows_the_take_a_redo_run_made_while_the_page_was_open(sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = build_takes_batch(lambda: sim, tmp_path)

    async def body(review, base, session):
        api = f"{base}/api/rows?token={review.token}"
        rows = (await (await session.get(api)).json())["rows"]
        async with session.post(f"{base}/api/pick?token={review.token}",
                                json={"row": rows[1]["key"], "status": "redo", "note": "slower"}) as answer:
            assert answer.status == 200
        assert await asyncio.to_thread(run_cli, sim, tmp_path / "batch.yaml", state.parent, "--redo") == 0
        return rows, (await (await session.get(api)).json())["rows"]
    before, after = run(_served(state, body))
    assert [len(r["takes"]) for r in before] == [2, 2, 2] and [len(r["takes"]) for r in after] == [2, 3, 2]
    new = after[1]["takes"][2]
    assert new["take"] == 3 and new["pickable"] and new["poster"] and new["video"] == "shot01-4s-720p-take3.mp4"


def test_reloads_at_once_read_the_changed_batch_one_at_a_time(takes_batch):
    # Two re-reads at once wrote the same pictures' temporaries under .report/ (a 500 or a torn poster).
    async def body(review, base, session):
        inside, most, read = [0], [0], review._pictures

        def counted(state):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            time.sleep(0.2)  # long enough for the other reloads to arrive while this one reads
            try:
                return read(state)
            finally:
                inside[0] -= 1
        review._pictures = counted
        os.utime(takes_batch, ns=(time.time_ns(), time.time_ns() + 10**9))  # the state changed since
        answers = await asyncio.gather(*(session.get(f"{base}/api/rows?token={review.token}") for _ in range(4)))
        return [a.status for a in answers], most[0]
    statuses, most = run(_served(takes_batch, body))
    assert statuses == [200] * 4 and most == 1


def test_rows_carry_takes_models_cost_and_generation_time(takes_batch):
    async def body(review, base, session):
        return await (await session.get(f"{base}/api/rows?token={review.token}")).json()
    data = run(_served(takes_batch, body))
    assert [r["image"] for r in data["rows"]] == ["img/shot00.png", "img/shot01.png", "img/shot02.png"]
    assert data["problems"] == []
    for row in data["rows"]:
        assert re.search(r"batch\.yaml:\d+$", row["where"]) and row["thumb"].startswith(".report/src-")
        assert [t["take"] for t in row["takes"]] == [1, 2]
        for take in row["takes"]:
            assert take["asked"] == take["used"] == "openai/sora-2/image-to-video-pro"
            assert take["billed"] == 1.2 and take["seconds"] > 0 and take["pickable"]
            assert take["poster"].startswith(".report/poster-") and take["video"].endswith(".mp4")
            assert (takes_batch.parent / take["poster"]).is_file()


def test_the_command_prints_a_loopback_url_that_serves_the_page(takes_batch):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "batchgen", "review", str(takes_batch)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        url = re.search(r"open (http://127\.0\.0\.1:\d+/\?token=[\w-]+)", lines[1]).group(1)

        async def fetch():
            async with aiohttp.ClientSession() as session:
                async with session.get(url) as answer:
                    page = await answer.text()
                async with session.get(url.split("?")[0]) as answer:
                    return page, answer.status
        page, refused = run(fetch())
        assert "batchgen review" in page and "<script>" in page and refused == 403
        assert "reviewing 3 row(s)" in lines[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_a_port_out_of_range_is_a_usage_error(takes_batch, capsys):
    from batchgen.cli import main
    assert main(["review", str(takes_batch), "--port", "70000"]) == 2
    assert "--port 70000 is not a port" in capsys.readouterr().err
