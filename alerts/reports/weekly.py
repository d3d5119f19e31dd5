"""The weekly summary (舆情周报) and daily brief (日报) e-mails, for the office and for each unit.

Windows are whole office-time days: a weekly report made on any day of a week covers the previous
Monday 00:00 to this Monday 00:00; a daily one covers yesterday. Figures come from the relational
store (tickets, events, event members); a post store, when given, supplies the overview counts and
the sample texts. Every text from posts is masked again and HTML-escaped by the template.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.messages import LEVEL_STYLE, STATE_LABELS, defang_links, level_words, mask_text, ticket_url
from alerts.reports import charts
from core.db.models import EventMemberRow, EventRow, TicketRow, UnitRow
from core.errors import RetryableSendError, SendError
from core.store.base import PostQuery, PostStore

log = logging.getLogger(__name__)

Kind = Literal["weekly", "daily"]
ESCALATIONS = {1: "remind", 2: "overdue_notice", 3: "bulletin", 4: "supervise"}  # 催办/超时/通报/督办
MILESTONE = {"sign": "signed_at", "ack": "signed_at", "acknowledge": "signed_at", "respond": "responded_at",
             "response": "responded_at", "first_response": "responded_at", "publish": "responded_at"}
LEVEL_COLOURS = {4: "#c0392b", 3: "#e67e22", 2: "#d4ac0d", 1: "#2e86c1"}
TOP_EVENTS = 5
SAMPLES_PER_EVENT = 2
SAMPLE_CHARS = 200

_env = Environment(
    loader=FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def report_window(kind: Kind, now: datetime, tz: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC: last week Monday-to-Monday, or yesterday, in office time."""
    local = now.astimezone(ZoneInfo(tz))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "weekly":
        end = midnight - timedelta(days=local.weekday())
        start = end - timedelta(days=7)
    elif kind == "daily":
        end = midnight
        start = end - timedelta(days=1)
    else:
        raise ValueError(f"report kind must be weekly or daily, not {kind!r}")
    return start.astimezone(UTC), end.astimezone(UTC)


def cn_date(dt: datetime) -> str:
    """``2026年11月16日``."""
    return f"{dt.year}年{dt.month}月{dt.day}日"


def cn_time(dt: datetime) -> str:
    """``11月16日 10:00``."""
    return f"{dt.month}月{dt.day}日 {dt:%H:%M}"


@dataclass
class UnitStats:
    """One row of the per-unit ticket table."""

    unit: str
    name: str
    opened: int = 0
    closed: int = 0
    open_now: int = 0
    overdue: int = 0
    remind: int = 0
    overdue_notice: int = 0
    bulletin: int = 0
    supervise: int = 0
    sign_hours: list[float] = field(default_factory=list)
    respond_hours: list[float] = field(default_factory=list)

    @property
    def avg_sign_h(self) -> str:
        return f"{statistics.fmean(self.sign_hours):.1f}" if self.sign_hours else "—"

    @property
    def avg_respond_h(self) -> str:
        return f"{statistics.fmean(self.respond_hours):.1f}" if self.respond_hours else "—"


@dataclass
class ReportData:
    """Everything a report shows, before rendering."""

    kind: Kind
    unit: str | None
    scope_name: str
    start: datetime
    end: datetime
    tz: str
    generated: datetime
    dashboard_url: str
    posts: int = 0
    negative: int = 0
    events: int = 0
    opened: int = 0
    closed: int = 0
    overdue: int = 0
    days: list[str] = field(default_factory=list)
    daily_posts: list[int] = field(default_factory=list)
    daily_negative: list[int] = field(default_factory=list)
    topics: dict[str, int] = field(default_factory=dict)
    sentiment: dict[str, int] = field(default_factory=dict)
    top_events: list[dict[str, Any]] = field(default_factory=list)
    units: list[UnitStats] = field(default_factory=list)
    overdue_tickets: list[dict[str, Any]] = field(default_factory=list)
    previous: ReportData | None = None  # the window before, for 环比

    @property
    def subject(self) -> str:
        zone = ZoneInfo(self.tz)
        first = self.start.astimezone(zone)
        last = (self.end - timedelta(seconds=1)).astimezone(zone)
        name = "舆情周报" if self.kind == "weekly" else "舆情日报"
        if first.date() == last.date():
            period = cn_date(first)
        elif first.year == last.year:
            period = f"{cn_date(first)}至{last.month}月{last.day}日"
        else:
            period = f"{cn_date(first)}至{cn_date(last)}"
        return f"【{name}】{period}（{self.scope_name}）"

    @property
    def period_word(self) -> str:
        return "本周" if self.kind == "weekly" else "昨日"

    def change(self, name: str) -> str:
        """环比 of one figure against the previous window, in words."""
        if self.previous is None:
            return ""
        now, before = getattr(self, name), getattr(self.previous, name)
        if not before:
            return "上期为0" if now else "与上期持平"
        pct = 100 * (now - before) / before
        if abs(pct) < 0.05:
            return "环比持平"
        return f"环比{'增长' if pct > 0 else '下降'}{abs(pct):.1f}%"

    @property
    def ranking(self) -> list[UnitStats]:
        """Units by how well they handled their tickets: fewest overdue per ticket, then fastest to sign."""
        def key(u: UnitStats) -> tuple[float, float, str]:
            handled = max(1, u.opened + u.open_now)
            sign = statistics.fmean(u.sign_hours) if u.sign_hours else float("inf")
            return (u.overdue / handled, sign, u.unit)

        return sorted((u for u in self.units if u.opened or u.open_now or u.closed), key=key)

    @property
    def summary(self) -> str:
        """A short written summary (综述) of the period."""
        word = self.period_word
        posts_change = self.change("posts")
        parts = [f"{word}{self.scope_name}共监测到网络信息{self.posts}条"
                 + (f"（{posts_change}）" if posts_change else "")
                 + f"，其中负面信息{self.negative}条，占{self.negative_share}；形成舆情事件{self.events}个，"
                 f"新增预警工单{self.opened}件、办结{self.closed}件"
                 + (f"，超时{self.overdue}件" if self.overdue else "，无超时工单") + "。"]
        if self.top_events:
            top = self.top_events[0]
            parts.append(f"最受关注的是「{top['title']}」（热度{top['heat']}，{top['status']}）。")
        late = [u.name for u in self.ranking if u.overdue]
        if late:
            parts.append(f"{'、'.join(late[:3])}{'等' if len(late) > 3 else ''}存在超时工单，需加快办理。")
        elif self.opened:
            parts.append("各责任单位均按时限办理。")
        return "".join(parts)

    @property
    def negative_share(self) -> str:
        return f"{self.negative / self.posts:.1%}" if self.posts else "—"


def _in(t: datetime | None, start: datetime, end: datetime) -> bool:
    return t is not None and start <= t < end


def _parse(value: Any) -> datetime | None:
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def missed_deadlines(ticket: TicketRow, at: datetime) -> list[tuple[str, datetime]]:
    """Stages whose deadline passed before ``at`` without (or after) their milestone."""
    missed = []
    for stage, value in (ticket.deadlines or {}).items():
        due = _parse(value)
        if due is None or due >= at:
            continue
        done = getattr(ticket, MILESTONE.get(str(stage), "closed_at"))
        if done is None or done > due:
            missed.append((str(stage), due))
    return missed


def _concerns(ticket: TicketRow, unit: str | None) -> bool:
    return unit is None or ticket.lead_unit == unit or unit in (ticket.cooperating_units or [])


def _samples(event: EventRow, tickets: Sequence[TicketRow], post_store: PostStore | None) -> list[str]:
    texts: list[str] = []
    if post_store is not None:
        wanted = [str(pid) for pid in list(event.representative_ids or [])[:SAMPLES_PER_EVENT]]
        try:
            found = post_store.get_many(wanted) if wanted else {}
        except Exception:  # a report must not fail because the post store is down
            log.warning("post store unavailable for report samples", exc_info=True)
            found = {}
        texts.extend(found[pid].text_masked or found[pid].title_masked or "" for pid in wanted if pid in found)
    if not texts:
        for t in tickets:
            extra = t.extra.get("samples") if isinstance(t.extra, dict) else None
            if isinstance(extra, list):
                texts.extend(str(s) for s in extra[:SAMPLES_PER_EVENT])
                break
    out = []
    for text in texts[:SAMPLES_PER_EVENT]:
        clean = " ".join(defang_links(mask_text(text)).split())
        if clean:
            out.append(clean if len(clean) <= SAMPLE_CHARS else clean[: SAMPLE_CHARS - 1] + "…")
    return out


def collect(
    session: Session, *, kind: Kind, unit: str | None, now: datetime, post_store: PostStore | None = None,
    dashboard_url: str, tz: str = "Asia/Shanghai", compare: bool = True,
) -> ReportData:
    """Read the figures of one report from the database (and the post store when given), with the window before."""
    start, end = report_window(kind, now, tz)
    names = {u.id: u.name for u in session.scalars(select(UnitRow))}
    if unit is not None and unit not in names:
        raise ValueError(f"unknown unit {unit!r}")
    data = ReportData(kind=kind, unit=unit, scope_name=names.get(unit, unit) if unit else "全市", start=start,
                      end=end, tz=tz, generated=now, dashboard_url=dashboard_url.rstrip("/"))

    # Tickets alive during the window.
    tickets = [t for t in session.scalars(
        select(TicketRow).where(TicketRow.created_at < end)
        .where((TicketRow.closed_at.is_(None)) | (TicketRow.closed_at >= start))
    ) if _concerns(t, unit)]
    stats: dict[str, UnitStats] = {}
    zone = ZoneInfo(tz)
    for t in tickets:
        key = unit or t.lead_unit
        s = stats.setdefault(key, UnitStats(unit=key, name=names.get(key, key)))
        if _in(t.created_at, start, end):
            s.opened += 1
            if t.signed_at:
                s.sign_hours.append((t.signed_at - t.created_at).total_seconds() / 3600)
            if t.responded_at:
                s.respond_hours.append((t.responded_at - t.created_at).total_seconds() / 3600)
        if _in(t.closed_at, start, end):
            s.closed += 1
        if t.closed_at is None or t.closed_at >= end:
            s.open_now += 1
        missed = missed_deadlines(t, min(end, t.closed_at or end))
        if missed or t.escalation >= 2:
            s.overdue += 1
            first = min((d for _s, d in missed), default=None)
            data.overdue_tickets.append({
                "title": " ".join(mask_text(t.title or t.id).split())[:80], "url": ticket_url(dashboard_url, t.id),
                "unit": names.get(t.lead_unit, t.lead_unit), "state": STATE_LABELS.get(t.state, t.state),
                "deadline": cn_time(first.astimezone(zone)) if first else "—",
            })
        if t.escalation in ESCALATIONS:
            setattr(s, ESCALATIONS[t.escalation], getattr(s, ESCALATIONS[t.escalation]) + 1)
    data.units = sorted(stats.values(), key=lambda s: (-s.overdue, -s.opened, s.unit))
    data.opened = sum(s.opened for s in data.units)
    data.closed = sum(s.closed for s in data.units)
    data.overdue = sum(s.overdue for s in data.units)

    # Events: all active ones for the office, the unit's ticketed ones for a unit.
    by_event: dict[str, list[TicketRow]] = defaultdict(list)
    for t in tickets:
        by_event[t.event_id].append(t)
    query = select(EventRow).where(EventRow.last_seen >= start, EventRow.first_seen < end)
    if unit is not None:
        query = query.where(EventRow.id.in_(list(by_event) or [""]))
    events = list(session.scalars(query))
    data.events = len(events)
    for e in sorted(events, key=lambda e: e.heat, reverse=True)[:TOP_EVENTS]:
        linked = by_event.get(e.id, [])
        level = max([t.level for t in linked] + ([e.level] if e.level else []), default=0)
        level = level if level in LEVEL_STYLE else 0
        latest = max(linked, key=lambda t: t.created_at) if linked else None
        status = (f"{names.get(latest.lead_unit, latest.lead_unit)}{STATE_LABELS.get(latest.state, latest.state)}"
                  if latest is not None else "未生成工单")
        data.top_events.append({
            "status": status,
            "title": " ".join(mask_text(e.title or e.id).split())[:80], "heat": f"{e.heat:.0f}", "size": e.size,
            "negative": e.negative_count, "topic": e.topic or "", "level": level,
            "level_words": level_words(level) if level else "", "colour": LEVEL_COLOURS.get(level, "#222"),
            "samples": _samples(e, linked, post_store),
            "url": ticket_url(dashboard_url, linked[0].id) if linked else "",
        })

    # Post counts: the post store's overview for the office, event members otherwise.
    day_starts = [start + timedelta(days=i) for i in range((end - start).days)]
    data.days = [f"{d.astimezone(zone).month}月{d.astimezone(zone).day}日" for d in day_starts]
    posts_by_day = [0] * len(day_starts)
    neg_by_day = [0] * len(day_starts)
    overview = None
    if post_store is not None and unit is None:
        try:
            overview = post_store.overview(PostQuery(since=start, until=end, limit=1), interval="day")
        except Exception:
            log.warning("post store unavailable for report overview; using event members", exc_info=True)
    if overview is not None:
        data.posts = overview.total
        data.sentiment = dict(overview.by_sentiment)
        data.negative = overview.by_sentiment.get("负面", 0)
        data.topics = dict(overview.by_topic)
        for bucket in overview.series:
            i = int((bucket.start - start).total_seconds() // 86400)
            if 0 <= i < len(day_starts):
                posts_by_day[i] += sum(bucket.counts.values())
                neg_by_day[i] += bucket.counts.get("负面", 0)
    else:
        member_q = select(EventMemberRow.published_at, EventMemberRow.negative, EventRow.topic).join(
            EventRow, EventRow.id == EventMemberRow.event_id
        ).where(EventMemberRow.published_at >= start, EventMemberRow.published_at < end)
        if unit is not None:
            member_q = member_q.where(EventMemberRow.event_id.in_(list(by_event) or [""]))
        topics: Counter[str] = Counter()
        for published_at, negative, topic in session.execute(member_q):
            data.posts += 1
            data.negative += int(bool(negative))
            topics[topic or "未分类"] += 1
            i = int((published_at - start).total_seconds() // 86400)
            if 0 <= i < len(day_starts):
                posts_by_day[i] += 1
                neg_by_day[i] += int(bool(negative))
        data.topics = dict(topics)
        if data.posts:
            data.sentiment = {"负面": data.negative, "非负面": data.posts - data.negative}
    data.daily_posts, data.daily_negative = posts_by_day, neg_by_day
    if compare:  # the window just before this one (its "now" is this window's start)
        data.previous = collect(session, kind=kind, unit=unit, now=start, post_store=post_store,
                                dashboard_url=dashboard_url, tz=tz, compare=False)
    return data


def render_text(data: ReportData) -> str:
    """The plain-text alternative."""
    lines = [data.subject, "", "综述：" + data.summary, "",
             f"信息总量 {data.posts}（{data.change('posts') or '—'}）"
             f"　负面 {data.negative}（{data.change('negative') or '—'}）"
             f"　负面占比 {data.negative_share}　事件 {data.events}　"
             f"新增工单 {data.opened}　办结 {data.closed}　超时 {data.overdue}", "", "重点事件："]
    for i, e in enumerate(data.top_events, 1):
        lines.append(f"{i}. {e['title']}（热度 {e['heat']}，信息 {e['size']} 条；办理情况：{e['status']}）{e['url']}")
        lines.extend(f"   > {s}" for s in e["samples"])
    if not data.top_events:
        lines.append("本期无重点事件。")
    lines += ["", "单位排名（新增/办结/在办/超时/平均签收h/平均回应h）："]
    for rank, u in enumerate(data.ranking, 1):
        lines.append(f"{rank}. {u.name}：{u.opened}/{u.closed}/{u.open_now}/{u.overdue}/{u.avg_sign_h}/"
                     f"{u.avg_respond_h}"
                     f"　催办 {u.remind} 超时 {u.overdue_notice} 通报 {u.bulletin} 督办 {u.supervise}")
    lines += ["", f"详情：{data.dashboard_url}", "本报告由系统自动生成，样本信息已做去标识化处理。"]
    return "\n".join(lines) + "\n"


def build_report(
    session: Session, *, kind: Kind, unit: str | None, now: datetime, post_store: PostStore | None = None,
    dashboard_url: str, tz: str = "Asia/Shanghai", to: Sequence[str] = (),
) -> EmailMessage:
    """The report as a MIME message: text, and HTML with charts inline (``multipart/related``)."""
    data = collect(session, kind=kind, unit=unit, now=now, post_store=post_store, dashboard_url=dashboard_url,
                   tz=tz)
    scope = data.scope_name
    images = [("trend", "信息量趋势", charts.trend_chart(
        data.days, {"全部信息": data.daily_posts, "负面信息": data.daily_negative}, f"信息量趋势（{scope}）"))]
    if data.topics:
        images.append(("topics", "话题分布", charts.bar_chart(data.topics, "话题分布")))
    if data.sentiment:
        images.append(("sentiment", "情感分布", charts.sentiment_chart(data.sentiment, "情感分布")))
    cids = {name: make_msgid(idstring=name, domain="yuqing.report") for name, _alt, _png in images}
    zone = ZoneInfo(tz)
    view = {
        "subject": data.subject, "tz": tz, "dashboard_url": data.dashboard_url,
        "generated": f"{cn_date(now.astimezone(zone))} {now.astimezone(zone):%H:%M}",
        "period": f"{cn_time(data.start.astimezone(zone))} 至 {cn_time(data.end.astimezone(zone))}",
        "summary": data.summary,
        "totals": {"posts": data.posts, "negative_share": data.negative_share, "events": data.events,
                   "opened": data.opened, "closed": data.closed, "overdue": data.overdue},
        "changes": {k: data.change(k) for k in ("posts", "negative", "events", "opened", "closed", "overdue")},
        "previous_share": data.previous.negative_share if data.previous else "—",
        "top_events": data.top_events, "units": data.ranking, "overdue_tickets": data.overdue_tickets[:20],
    }
    html = _env.get_template("report.html.j2").render(
        r=view, charts=[{"cid": cids[name][1:-1], "alt": alt} for name, alt, _png in images]
    )
    msg = EmailMessage()
    msg["Subject"] = data.subject
    if to:
        msg["To"] = ", ".join(to)
    msg.set_content(render_text(data))
    msg.add_alternative(html, subtype="html")
    html_part = cast(EmailMessage, msg.get_payload()[1])  # type: ignore[index]  # add_alternative made it
    for name, _alt, png in images:
        html_part.add_related(png, maintype="image", subtype="png", cid=cids[name], filename=f"{name}.png")
    return msg


def unit_recipients(session: Session) -> dict[str, list[str]]:
    """Report addresses per unit from the units table (``config.targets.email``)."""
    out: dict[str, list[str]] = {}
    for u in session.scalars(select(UnitRow)):
        targets = (u.config or {}).get("targets") or {}
        emails = targets.get("email") if isinstance(targets, dict) else None
        if isinstance(emails, str):
            emails = [emails]
        if emails:
            out[u.id] = [str(e) for e in emails]
    return out


def weekly_job(
    session_factory: Callable[[], Session], *, now: datetime, send: Callable[[EmailMessage], None],
    kind: Kind = "weekly", post_store: PostStore | None = None, dashboard_url: str,
    tz: str = "Asia/Shanghai", recipients: dict[str, list[str]] | None = None, office: str = "office",
    attempts: int = 3, retry_wait_s: float = 2.0,
) -> dict[str, str]:
    """Build and send the office report and one per unit with an address; returns scope -> outcome.

    Meant to run once per slot under the scheduler's run-once guard (Mondays 08:30 for weekly).
    """
    outcome: dict[str, str] = {}
    session = session_factory()
    try:
        addresses = unit_recipients(session)
        addresses.update(recipients or {})
        for target, to in sorted(addresses.items(), key=lambda kv: (kv[0] != office, kv[0])):
            unit = None if target == office else target
            try:
                msg = build_report(session, kind=kind, unit=unit, now=now, post_store=post_store,
                                   dashboard_url=dashboard_url, tz=tz, to=to)
            except ValueError as exc:
                outcome[target] = f"skipped: {exc}"
                continue
            for attempt in range(1, attempts + 1):
                try:
                    send(msg)
                    outcome[target] = "sent"
                    break
                except RetryableSendError as exc:
                    outcome[target] = f"failed: {exc}"
                    if attempt < attempts:
                        time.sleep(retry_wait_s * attempt)
                except SendError as exc:
                    outcome[target] = f"failed: {exc}"
                    break
            if outcome[target] != "sent":
                log.error("%s report for %s not sent: %s", kind, target, outcome[target])
    finally:
        session.close()
    log.info("%s reports: %s", kind, outcome)
    return outcome


def report_slot(kind: Kind, now: datetime, tz: str, *, at: tuple[int, int] = (8, 30)) -> str | None:
    """The run-once slot due at ``now`` (ISO week for weekly from Monday ``at``, date for daily), else None.

    A weekly report not sent on Monday (service down) is still due later that week: late beats never.
    """
    local = now.astimezone(ZoneInfo(tz))
    if (local.hour, local.minute) < at and (kind == "daily" or local.weekday() == 0):
        return None
    if kind == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return local.strftime("%Y-%m-%d")


def scheduled_reports(
    session_factory: Callable[[], Session], *, now: datetime, worker_id: str, send: Callable[[EmailMessage], None],
    post_store: PostStore | None = None, dashboard_url: str, tz: str = "Asia/Shanghai", daily: bool = True,
    at: tuple[int, int] = (8, 30),
) -> dict[str, dict[str, str]]:
    """Send the reports that are due (weekly Mondays 08:30, daily 08:30 office time), once across workers.

    The slot is claimed and committed before sending (``alerts.scheduler.claim``): building a report
    takes seconds and must not hold a write lock, and a report mailed twice is worse than one mailed
    late by hand (``yuqing report weekly --send``) after a failure, which is logged.
    """
    from alerts.scheduler import claim

    done: dict[str, dict[str, str]] = {}
    kinds: list[Kind] = ["weekly", "daily"] if daily else ["weekly"]
    for kind in kinds:
        slot = report_slot(kind, now, tz, at=at)
        if slot is None:
            continue
        session = session_factory()
        try:
            won = claim(session, job=f"report.{kind}", slot=slot, worker_id=worker_id, now=now)
            session.commit()
        finally:
            session.close()
        if won:
            done[kind] = weekly_job(session_factory, now=now, send=send, kind=kind, post_store=post_store,
                                    dashboard_url=dashboard_url, tz=tz)
    return done
