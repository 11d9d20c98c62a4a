"""Text for people: how the CLI shows what estimate.py and status.py computed (``--json`` prints their data as is)."""

from __future__ import annotations

from typing import Any

from .estimate import BUCKETS, Estimate, Fallback

_BUCKET_LABELS = {"paid": "already paid", "in_flight": "in flight", "failed": "failed", "to_pay": "still to pay"}
#: Jobs listed per kind in plain ``status``; ``--json`` lists them all.
_LISTED = 10
#: What to do about a failed job, by its failure class.
_FAILED_ADVICE = {
    "task": "the provider failed the generation; change the row's prompt or image, or run with --retry-failed",
    "rejected": "the provider refused the request; fix the row in the manifest, then run again",
    "expired": "PAID, but the provider deleted the video before it was downloaded (Replicate keeps outputs about "
               "an hour); run with --retry-failed to submit it again (paid again)",
}
_FAILED_DEFAULT = "run again with --retry-failed to try it again"
#: A failure before any task was made (every submit refused): nothing was paid, the job is simply still to do.
_NEVER_BILLED = "not billed: the next run submits it again (no --retry-failed needed)"
#: What the next plain run does with a job that is not finished yet.
_UNFINISHED = {
    "submit": "not submitted yet; run the same command to submit it",
    "poll": "submitted, not finished (or stalled); run the same command to poll it",
    "download": "generated, not on disk; run the same command to download it",
}


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


# -- status --------------------------------------------------------------------------------------
def render_status(summary: dict[str, Any]) -> str:
    c = summary["counts"]
    spend = summary["spend"]
    lines = [
        f"{summary['state']}: {summary['jobs']} jobs over {summary['runs']} run(s)",
        "  " + ", ".join(f"{name} {n}" for name, n in c.items() if n) if any(c.values()) else "  no jobs yet",
        f"  spend: ${spend['committed']:.2f} committed (${spend['downloaded']:.2f} downloaded, "
        f"${spend['in_flight']:.2f} in flight: {plural(summary['in_flight_jobs'], 'job')} billed or maybe billed, "
        "not yet on disk)",
    ]
    for item in summary["fallbacks"]:
        how = "switched to the fallback_model" if item["switched"] else "answered by another model"
        used = item["model_used"] or item["model_submitted"]
        lines.append(f"  fallback {item['id']}: asked {item['model_asked']}, got {used} ({how})")
    lines += _attention_lines(summary)
    for item in summary.get("unmatched", ()):
        lines.append(f"  unmatched {item['path']} ({item['model']}): paid, no job could be matched to it: {item['why']}")
    nxt = summary["next_run"]
    lines.append(f"  next run: submit {nxt['submit']}, poll {nxt['poll']}, download {nxt['download']}; "
                 f"{nxt['skip_failed']} failed kept (--retry-failed), {nxt['unknown']} unknown "
                 "(reconciled with the provider, or --resubmit-unknown)")
    return "\n".join(lines)


def _attention_lines(summary: dict[str, Any]) -> list[str]:
    """The jobs that need the user (failed, unknown) or another run (not finished), with what to do."""
    lines = []
    resubmitted = {j["key"] for j in summary["job_list"] if j["status"] == "failed" and j["next_action"] == "submit"}
    for item in summary["failed"]:
        advice = _NEVER_BILLED if item["key"] in resubmitted else _FAILED_ADVICE.get(item["class"], _FAILED_DEFAULT)
        lines.append(f"  failed  {item['id']} ({item['where']}) [{item['class']}]: {item['error']}\n"
                     f"          -> {advice}")
    for item in summary["unknown"]:
        lines.append(f"  unknown {item['id']} ({item['where']}): {item['error']}\n"
                     "          -> its submit may have been charged; the next run asks the provider, "
                     "or check its dashboard and use --resubmit-unknown")
    # A failed job was listed above with what to do, even one the next run submits again.
    unfinished = [j for j in summary["job_list"]
                  if not j["superseded_by"] and j["status"] != "failed" and j["next_action"] in _UNFINISHED]
    for job in unfinished[:_LISTED]:
        lines.append(f"  {job['status']:<8} {job['id']} ({job['where']}): {_UNFINISHED[job['next_action']]}")
    if len(unfinished) > _LISTED:
        lines.append(f"  ... and {plural(len(unfinished) - _LISTED, 'more unfinished job')} (status --json lists all)")
    return lines


# -- estimate ------------------------------------------------------------------------------------
def render_estimate(est: Estimate) -> str:
    t = est.total
    lines = [f"{est.manifest}: {plural(t.jobs, 'job')}, {t.seconds} s of video, ${t.dollars:.2f} at list price"]
    lines += _estimate_table(est)
    for u in est.unconfirmed:
        lines.append(f"  * price unconfirmed: {u['model']}" + (f" ({u['note']})" if u["note"] else ""))
    if est.unconfirmed:
        lines.append("    set the real figures in a models file ($BATCHGEN_MODELS or ~/.config/batchgen/models.yaml) "
                     "or the manifest's models: block")
    if est.split is not None:
        lines += _split_lines(est)
    if est.max_cost is not None:
        lines.append(_cap_line(est))
    if est.fallback is not None:
        lines += _fallback_lines(est.fallback, est.split is not None)
    return "\n".join(lines)


def _estimate_table(est: Estimate) -> list[str]:
    t = est.total
    flagged = {u["model"] for u in est.unconfirmed}
    names = [r.model + (" *" if r.model in flagged else "") for r in est.rows]
    width = max([len("model"), len("total"), *map(len, names)])
    head = f"  {'model':<{width}}  {'resolution':<10}  {'$/s':>5}  {'jobs':>5}  {'seconds':>7}  {'dollars':>9}"
    lines = [head, "  " + "-" * (len(head) - 2)]
    for name, row in zip(names, est.rows):
        lines.append(f"  {name:<{width}}  {row.resolution:<10}  {row.price_per_second:>5.2f}  {row.jobs:>5}  "
                     f"{row.seconds:>7}  {row.dollars:>9.2f}")
    lines.append(f"  {'total':<{width}}  {'':<10}  {'':>5}  {t.jobs:>5}  {t.seconds:>7}  {t.dollars:>9.2f}")
    return lines


def _split_lines(est: Estimate) -> list[str]:
    lines = [f"  against {est.state}:"]
    for name in BUCKETS:
        a = est.split[name]
        extra = "  (not billed; paid again only with --retry-failed)" if name == "failed" and a.jobs else ""
        extra = extra or ("  (prices recorded at submit)" if name in ("paid", "in_flight") and a.jobs else "")
        lines.append(f"    {_BUCKET_LABELS[name]:<13} {a.jobs:>5} {'job ' if a.jobs == 1 else 'jobs'} {a.seconds:>7} s "
                     f"  {'$' + format(a.dollars, '.2f'):>10}{extra}")
    other = est.other_in_state
    if other and other["jobs"]:
        fetching = (f"; {other['fetching']} paid and not on disk yet: the next run fetches their videos"
                    if other["fetching"] else "")
        lines.append(f"    not in this manifest: {plural(other['jobs'], 'job')} in the state "
                     f"(${other['dollars']:.2f} committed{fetching}), left as they are")
    return lines


def _cap_line(est: Estimate) -> str:
    cap = est.max_cost
    if est.split is not None:
        committed = est.split["paid"].dollars + est.split["in_flight"].dollars
        need = round(committed + est.split["to_pay"].dollars, 2)
        subject = f"${committed:.2f} committed + ${est.split['to_pay'].dollars:.2f} to pay = ${need:.2f}"
    else:
        need = est.total.dollars
        subject = f"${need:.2f}"
    if need <= cap + 1e-9:
        return f"  max_cost ${cap:.2f}: {subject} fits"
    return (f"  max_cost ${cap:.2f}: {subject} does not fit; the run will refuse to start (--partial runs "
            "the jobs that fit; raise max_cost or --max-cost to finish)")


def _fallback_lines(fb: Fallback, with_state: bool) -> list[str]:
    which = "still to submit on other models" if with_state else "on other models"
    if not fb.jobs:
        return [f"  fallback {fb.model}: no job {which}; nothing would move to it"]
    accepted = "all" if fb.accepted_jobs == fb.jobs else f"the {fb.accepted_jobs} it accepts"
    lines = [f"  fallback {fb.model}: the {plural(fb.jobs, 'job')} {which} cost ${fb.dollars_asked:.2f} as asked; "
             f"on the fallback, {accepted} would cost ${fb.dollars_on_fallback:.2f}"]
    for item in fb.not_accepted:
        lines.append(f"    {plural(item['jobs'], 'job')} could not fall back: {item['problem']}")
    return lines


# -- validate ------------------------------------------------------------------------------------
def render_validate(manifest) -> str:
    """What a valid manifest buys: jobs, seconds of video, dollars at list price."""
    jobs = manifest.jobs
    seconds = sum(j.duration for j in jobs)
    cost = sum(manifest.models.get(j.model).price(j.resolution, j.duration) for j in jobs)
    return f"{manifest.path}: OK, {plural(len(jobs), 'job')}, {seconds} s of video, ${cost:.2f} at list price"
