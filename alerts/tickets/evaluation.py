"""效果评估: did the matter calm down after the response? Compares the event before and after it.

From the event's ``event_members`` rows (by ``published_at``) we take a window before the response
and the same length after it, and compare posting rate, negative share and the peak hour. The
outcome is 平息 (subsided), 持续 (continuing) or 升级 (escalated); it is stored in
``tickets.evaluation``. A closed ticket becomes ``evaluated``; an 升级 after closing reopens it
(二次舆情), since the matter is evidently not settled.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.deadlines import DeadlinePolicy
from alerts.tickets import permissions as perm
from alerts.tickets import service as svc
from alerts.tickets import workflow as wf
from core.db.models import EventMemberRow
from core.errors import InvalidTransition

SUBSIDED, CONTINUING, ESCALATED = "平息", "持续", "升级"
OUTCOME_CODES = {SUBSIDED: "subsided", CONTINUING: "continuing", ESCALATED: "escalated"}


def window_stats(session: Session, *, event_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Volume, rate per hour, negative share, unique authors and peak hour of an event in [start, end)."""
    rows = session.execute(
        select(EventMemberRow.published_at, EventMemberRow.negative, EventMemberRow.author_hash).where(
            EventMemberRow.event_id == event_id, EventMemberRow.published_at >= start,
            EventMemberRow.published_at < end)
    ).all()
    hours = max((end - start).total_seconds() / 3600.0, 1e-9)
    buckets = Counter(r[0].replace(minute=0, second=0, microsecond=0) for r in rows)
    volume = len(rows)
    return {
        "volume": volume,
        "hours": round(hours, 3),
        "rate_per_hour": round(volume / hours, 4),
        "negative_share": round(sum(1 for r in rows if r[1]) / volume, 4) if volume else 0.0,
        "unique_authors": len({r[2] for r in rows if r[2]}),
        "peak_hour": max(buckets.values()) if buckets else 0,
    }


def classify(
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    subside_ratio: float = 0.5,
    escalate_ratio: float = 1.2,
    negative_jump: float = 0.15,
    min_posts: int = 3,
) -> str:
    """平息 / 持续 / 升级 from the before and after statistics (thresholds are parameters)."""
    rb, ra = before["rate_per_hour"], after["rate_per_hour"]
    neg_up = after["negative_share"] - before["negative_share"] > negative_jump and after["volume"] >= min_posts
    if before["volume"] == 0:
        return ESCALATED if after["volume"] >= min_posts else (CONTINUING if after["volume"] else SUBSIDED)
    if ra > rb * escalate_ratio and after["volume"] >= min_posts:
        return ESCALATED
    if neg_up and ra >= rb * subside_ratio:
        return ESCALATED
    if ra <= rb * subside_ratio and not neg_up:
        return SUBSIDED
    return CONTINUING


def evaluate_effect(
    session: Session,
    *,
    ticket_id: str,
    now: datetime,
    window_hours: float = 24,
    actor: perm.Actor | None = None,
    policy: DeadlinePolicy | None = None,
) -> dict[str, Any]:
    """Compare the event before and after the response; store the result; evaluated, or reopened on 升级."""
    actor = actor or svc.system_actor()
    t = svc.load_for_update(session, ticket_id)
    perm.check(actor, "evaluate", t)
    pivot = t.responded_at or t.closed_at
    if pivot is None:
        raise InvalidTransition("尚未回应或办结，无法评估效果 / nothing to evaluate: no response and not closed")
    window = timedelta(hours=window_hours)
    after_end = min(pivot + window, now)
    if after_end <= pivot:
        raise InvalidTransition("回应后尚无可评估的时间窗口 / no time has passed since the response")
    before = window_stats(session, event_id=t.event_id, start=pivot - window, end=pivot)
    after = window_stats(session, event_id=t.event_id, start=pivot, end=after_end)
    outcome = classify(before, after)
    result = {"outcome": outcome, "code": OUTCOME_CODES[outcome], "at": svc.iso(now), "pivot": svc.iso(pivot),
              "window_hours": window_hours, "partial": after_end < pivot + window, "before": before, "after": after,
              "by": actor.username}
    history = [*((t.evaluation or {}).get("history") or []), {k: v for k, v in result.items() if k != "history"}]
    t.evaluation = {**result, "history": history[-20:]}
    if t.state in (wf.CLOSED, wf.EVALUATED):
        if outcome == ESCALATED:
            svc.reopen_locked(session, t, actor=actor, reason="效果评估：舆情升级 / effect evaluation: escalated",
                              now=now, policy=policy or svc.default_policy())
        else:
            svc.transition(session, t, actor=actor, action="evaluate", now=now, detail={"outcome": outcome})
    else:
        svc.audit(session, t, actor=actor.username, action="evaluate", from_state=t.state, to_state=t.state,
                  now=now, detail={"outcome": outcome})
    svc.flush(session)
    return t.evaluation
