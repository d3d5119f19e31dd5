"""Render notifications for people: WeChat Work markdown/text (byte-limited) and e-mail bodies.

Level colours. WeChat Work markdown knows only three font colours, so the level is always also
spelled out in words (colour alone is not enough on a phone in the sun):

=====  ==========  ======================  =========================
level  colour      wording                 ``<font color=...>``
=====  ==========  ======================  =========================
4      红 red      红色预警·特别重大        ``warning`` (orange-red)
3      橙 orange   橙色预警·重大            ``warning`` (orange-red)
2      黄 yellow   黄色预警·较大            ``info`` (green)
1      蓝 blue     蓝色预警·一般            ``comment`` (grey)
=====  ==========  ======================  =========================

Layout. A robot message is read on a phone in a group chat, so it says who (unit *names*, never ids), what
(the event title, one or two masked sample posts), how bad (the level, and ``橙→红`` when it changed) and the one
thing to do next with its time left in words (``请于 30分钟内签收``); the other deadlines follow on one short line
and the 查看工单 link opens the ticket (after the login page when needed).

Safety. Everything that came from a post or an event title is untrusted: it is masked again
(``analyze.privacy.mask_pii``, a second line of defence behind the masking at ingest), flattened
to one line and stripped of the characters that make WeChat markdown active (``<`` ``>`` for
``<font>``/``<@mention>``, ``[`` ``]`` ``(`` ``)`` for links, `````, ``*``, ``#``), so a post
cannot add a link, a colour or an @all. Truncation happens only inside such plain text or between
whole lines, so a cut never splits a character, a link or a tag.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from alerts.notifiers.base import Notification

log = logging.getLogger(__name__)

MARKDOWN_LIMIT = 4096  # bytes, UTF-8 (WeChat Work robot API)
TEXT_LIMIT = 2048  # bytes, UTF-8
TRUNCATED = "…（内容过长已截断）"

# level -> (colour word, severity word, WeChat font colour)
LEVEL_STYLE: dict[int, tuple[str, str, str]] = {
    4: ("红", "特别重大", "warning"),
    3: ("橙", "重大", "warning"),
    2: ("黄", "较大", "info"),
    1: ("蓝", "一般", "comment"),
}

KIND_LABELS: dict[str, str] = {
    "ticket.created": "新预警工单",
    "ticket.level": "预警等级变更",
    "ticket.remind": "催办提醒",
    "ticket.overdue": "工单已超时",
    "ticket.escalated": "工单升级督办",
    "ticket.closed": "工单已办结",
    "ticket.reopened": "工单重开（二次舆情）",
    "ticket.returned": "工单被退回",
    "ticket.task": "协办任务",
    "ticket.extension": "延期申请",
    "ticket.responded": "已发布回应",
    "ticket.review": "回应待审核",
    "source.silent": "数据源异常",
    "digest": "预警通知汇总",
}

STAGE_LABELS: dict[str, str] = {
    "sign": "签收", "ack": "签收", "acknowledge": "签收", "acknowledged": "签收",
    "assess": "研判", "assessing": "研判",
    "respond": "回应", "response": "回应", "responded": "回应", "first_response": "首次回应",
    "handle": "办理", "handling": "办理",
    "close": "办结", "resolve": "办结", "closed": "办结",
    "publish": "发布权威信息", "press": "召开新闻发布会",
    "authoritative_info": "发布权威信息", "press_conference": "召开新闻发布会",
}

# Stages a ticket's state has already passed (so their deadlines no longer call for action).
_MET_BY_STATE: dict[str, frozenset[str]] = {
    "sign": frozenset({"acknowledged", "assessing", "handling", "responded", "closed", "evaluated", "merged"}),
    "first_response": frozenset({"responded", "closed", "evaluated", "merged"}),
    "authoritative_info": frozenset({"responded", "closed", "evaluated", "merged"}),
    "respond": frozenset({"responded", "closed", "evaluated", "merged"}),
    "close": frozenset({"closed", "evaluated", "merged"}),
}

STATE_LABELS: dict[str, str] = {
    "new": "待签收", "acknowledged": "已签收", "assessing": "研判中", "handling": "办理中",
    "responded": "已回应", "closed": "已办结", "evaluated": "已评估", "merged": "已并单",
    "returned": "已退回",
}

MAX_SAMPLES = 2  # one or two posts say what people write; more makes the message scroll on a phone
MAX_MENTIONS = 20
TITLE_CHARS = 120
REASON_CHARS = 200
SAMPLE_CHARS = 160
OTHER_DEADLINES = 2
DIGEST_TITLE_CHARS = 40

# Characters that make WeChat markdown active, mapped to inert full-width look-alikes.
_MD_ESCAPES = str.maketrans({
    "<": "＜", ">": "＞", "[": "［", "]": "］", "(": "（", ")": "）",
    "`": "＇", "*": "＊", "#": "＃", "_": "＿", "~": "～", "|": "｜", "\\": "＼",
})
_TEXT_ESCAPES = str.maketrans({"<": "＜", ">": "＞"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")
_USERID = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")
_MOBILE = re.compile(r"^\+?\d{6,15}$")
# Belt and braces behind mask_pii: mainland mobiles and 18-digit ID numbers.
_RAW_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_RAW_IDCARD = re.compile(r"(?<![0-9A-Za-z])(\d)\d{15}(\d{1}[0-9Xx])(?![0-9A-Za-z])")


def _now() -> datetime:
    """The current time (a function so tests can pin it)."""
    return datetime.now(UTC)


def blen(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes (what the WeChat limits count)."""
    return len(text.encode("utf-8"))


def cut_bytes(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that fits in ``max_bytes`` UTF-8 bytes, never splitting a character."""
    if max_bytes <= 0:
        return ""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", errors="ignore")


def mask_text(text: str) -> str:
    """Mask personal data again (second line of defence behind ingest masking)."""
    try:
        from analyze.privacy import mask_pii
    except ImportError:  # privacy module not installed in this build: the regex guard below still runs
        masked = text
    else:
        masked = mask_pii(text).text
    masked = _RAW_MOBILE.sub(r"\1****\2", masked)
    return _RAW_IDCARD.sub(lambda m: m.group(1) + "*" * 15 + m.group(2), masked)


_SCHEME = re.compile(r"(?i)\b(https?|ftp|weixin|tel|mailto):(//)?")


def defang_links(text: str) -> str:
    """Make URLs in untrusted text non-clickable (``http：//``) so a post cannot plant a link in a group chat."""
    return _SCHEME.sub(lambda m: m.group(1) + "：" + (m.group(2) or ""), text)


def clean_untrusted(text: Any, max_chars: int | None = None) -> str:
    """Untrusted text as one masked, inert line for WeChat markdown."""
    s = _CONTROL.sub("", str(text or ""))
    s = _SPACES.sub(" ", s).strip()
    s = defang_links(mask_text(s)).translate(_MD_ESCAPES)
    if max_chars is not None and len(s) > max_chars:
        s = s[: max_chars - 1] + "…"
    return s


def _plain_untrusted(text: Any, max_chars: int | None = None) -> str:
    """Untrusted text as one masked line for plain-text channels (no markdown meaning to defuse)."""
    s = _SPACES.sub(" ", _CONTROL.sub("", str(text or ""))).strip()
    # <@userid> is live in text messages too: defuse the angle brackets.
    s = defang_links(mask_text(s)).translate(_TEXT_ESCAPES)
    if max_chars is not None and len(s) > max_chars:
        s = s[: max_chars - 1] + "…"
    return s


@dataclass(frozen=True)
class _Seg:
    text: str
    splittable: bool = False  # plain escaped text that may be cut anywhere (between characters)


def fit(segments: Sequence[_Seg], tail: str, limit: int) -> str:
    """Join segments and tail within ``limit`` bytes; if too long, cut cleanly and mark the cut."""
    full = "".join(s.text for s in segments) + tail
    if blen(full) <= limit:
        return full
    marker = "\n" + TRUNCATED
    budget = limit - blen(tail) - blen(marker)
    out: list[str] = []
    used = 0
    for seg in segments:
        size = blen(seg.text)
        if used + size <= budget:
            out.append(seg.text)
            used += size
            continue
        if seg.splittable:
            out.append(cut_bytes(seg.text, budget - used))
        break
    body = "".join(out).rstrip("\n ")
    return body + marker + tail


def level_of(payload: dict[str, Any]) -> int:
    """The warning level 1-4 from a payload (unknown values read as 1, the mildest)."""
    try:
        level = int(payload.get("level") or 1)
    except (TypeError, ValueError):
        return 1
    return level if level in LEVEL_STYLE else 1


def level_words(level: int) -> str:
    """E.g. ``红色预警·特别重大``."""
    colour, severity, _ = LEVEL_STYLE[level]
    return f"{colour}色预警·{severity}"


def ticket_url(dashboard_url: str, ticket_id: str) -> str:
    """Dashboard link of one ticket."""
    safe_id = re.sub(r"[^A-Za-z0-9_.:\-]", "", str(ticket_id))
    return f"{dashboard_url.rstrip('/')}/#/tickets/{safe_id}"


def format_time(value: Any, tz: ZoneInfo) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM`` office time; unparsable values are shown escaped."""
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return clean_untrusted(value, 40)
    if dt.tzinfo is None:
        return dt.strftime("%Y-%m-%d %H:%M")
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def format_short(value: Any, tz: ZoneInfo) -> str:
    """An ISO time as ``11月22日 10:00`` office time; unparsable values are shown escaped."""
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return clean_untrusted(value, 40)
    if dt.tzinfo is not None:
        dt = dt.astimezone(tz)
    return f"{dt.month}月{dt.day}日 {dt:%H:%M}"


def duration_words(seconds: float) -> str:
    """A span in words, rounded up to the minute: ``30分钟``, ``4小时30分钟``, ``2天3小时``."""
    minutes = max(1, int(-(-seconds // 60)))
    if minutes < 60:
        return f"{minutes}分钟"
    hours, mins = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}小时" + (f"{mins}分钟" if mins else "")
    days, hours = divmod(hours, 24)
    return f"{days}天" + (f"{hours}小时" if hours else "")


def _open_deadlines(payload: dict[str, Any]) -> list[tuple[str, datetime | None, str]]:
    """(stage, time, raw) of the deadlines the ticket's state has not met yet, soonest first."""
    deadlines = payload.get("deadlines")
    if not isinstance(deadlines, dict):
        return []
    state = str(payload.get("state") or "")
    if state in ("closed", "evaluated", "merged"):
        return []  # nothing is asked of a finished ticket
    out: list[tuple[str, datetime | None, str]] = []
    for stage, when in deadlines.items():
        if state in _MET_BY_STATE.get(str(stage), frozenset()):
            continue
        try:
            at: datetime | None = datetime.fromisoformat(str(when))
            if at is not None and at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
        except ValueError:
            at = None
        out.append((str(stage), at, str(when)))
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(out, key=lambda d: d[1] or far)


def _stage_label(stage: str) -> str:
    return STAGE_LABELS.get(stage, clean_untrusted(stage, 20))


def deadline_lines(payload: dict[str, Any], tz: ZoneInfo, now: datetime) -> tuple[str, str]:
    """(the next deadline as an instruction, the others on one short line); empty strings when none is open."""
    pending = _open_deadlines(payload)
    if not pending:
        return "", ""
    stage, at, raw = pending[0]
    label = _stage_label(stage)
    if at is None:
        first = f"{label}时限：{format_short(raw, tz)}"
    elif at > now:
        first = f"请于 {duration_words((at - now).total_seconds())}内{label}（截至 {format_short(raw, tz)}）"
    else:
        first = f"{label}已超时 {duration_words((now - at).total_seconds())}（时限 {format_short(raw, tz)}）"
    others = [f"{_stage_label(st)} {format_short(r, tz)}" for st, _at, r in pending[1:1 + OTHER_DEADLINES]]
    more = len(pending) - 1 - len(others)
    rest = ("其余时限：" + " · ".join(others) + (f" 等{len(pending) - 1}项" if more > 0 else "")) if others else ""
    return first, rest


def kind_words(notification: Notification) -> str:
    """The message kind in Chinese; a level change also says from which colour to which (``预警升级（橙→红）``)."""
    p = notification.payload
    kind = KIND_LABELS.get(notification.kind, clean_untrusted(notification.kind, 30))
    if notification.kind == "ticket.level":
        try:
            before = int(p.get("level_from") or 0)
        except (TypeError, ValueError):
            before = 0
        after = level_of(p)
        if before in LEVEL_STYLE and before != after:
            verb = "预警升级" if after > before else "预警降级"
            kind = f"{verb}（{LEVEL_STYLE[before][0]}→{LEVEL_STYLE[after][0]}）"
    return kind


def _mentions(notification: Notification) -> tuple[list[str], list[str]]:
    """(user ids, mobiles) from ``notification.mentions``; anything else is dropped."""
    users: list[str] = []
    mobiles: list[str] = []
    for m in notification.mentions:
        m = str(m).strip()
        if m == "@all":
            users.append(m)
        elif _MOBILE.match(m):
            mobiles.append(m)
        elif _USERID.match(m):
            users.append(m)
        else:
            log.warning("dropping malformed mention in notification %s", notification.id)
    # Bounded so the always-kept tail (link + mentions) can never crowd out the message itself.
    return users[:MAX_MENTIONS], mobiles[:MAX_MENTIONS]


def unit_label(payload: dict[str, Any], unit_id: Any) -> str:
    """A unit's Chinese name from the payload's ``unit_names`` (the id only when no name is known)."""
    names = payload.get("unit_names") if isinstance(payload.get("unit_names"), dict) else {}
    return str((names or {}).get(str(unit_id)) or unit_id or "—")


def _units(payload: dict[str, Any], clean: Any = None) -> tuple[str, str]:
    clean = clean or clean_untrusted
    lead = clean(unit_label(payload, payload.get("lead_unit")), 40)
    coop = payload.get("cooperating_units") or []
    coop_s = "、".join(clean(unit_label(payload, u), 40) for u in coop) if isinstance(coop, list) else ""
    return lead, coop_s


def _samples(payload: dict[str, Any]) -> list[str]:
    raw = payload.get("samples") or []
    if not isinstance(raw, list):
        return []
    out = [clean_untrusted(s, SAMPLE_CHARS) for s in raw[:MAX_SAMPLES]]
    return [s for s in out if s]


def render_markdown(
    notification: Notification, *, dashboard_url: str, tz: str = "Asia/Shanghai", limit: int = MARKDOWN_LIMIT,
    now: datetime | None = None,
) -> str:
    """WeChat Work markdown for one ticket notification, at most ``limit`` bytes."""
    zone = ZoneInfo(tz)
    now = now or _now()
    p = notification.payload
    if not p.get("title") and notification.markdown:
        # Caller-rendered (trusted) markdown: cut only between whole lines.
        lines = notification.markdown.splitlines(keepends=True)
        return fit([_Seg(line) for line in lines], "", limit)
    level = level_of(p)
    _colour, _severity, font = LEVEL_STYLE[level]
    kind = kind_words(notification)
    ticket_id = str(p.get("id") or "")
    title = clean_untrusted(p.get("title") or notification.subject, TITLE_CHARS)
    lead, coop = _units(p)
    state = STATE_LABELS.get(str(p.get("state")), clean_untrusted(p.get("state") or "—", 20))
    head = [
        _Seg(f'### <font color="{font}">【{level_words(level)}】</font>{kind}\n'),
        _Seg(f"**{title}**\n", splittable=False),
        _Seg(f"> 主办单位：{lead}" + (f"　协办：{coop}" if coop else "") + "\n"),
    ]
    if p.get("reason"):
        head.append(_Seg(f"> 预警原因：{clean_untrusted(p.get('reason'), REASON_CHARS)}\n", splittable=True))
    head.append(_Seg(f"> 工单：{clean_untrusted(ticket_id, 40)}　状态：{state}\n"))
    first, rest = deadline_lines(p, zone, now)
    if first:
        head.append(_Seg(f'<font color="warning">**{first}**</font>\n'))
    if rest:
        head.append(_Seg(f'<font color="comment">{rest}</font>\n'))
    body: list[_Seg] = []
    samples = _samples(p)
    if samples:
        body.append(_Seg("**代表性信息**（已脱敏）：\n"))
        for i, s in enumerate(samples, 1):
            body.append(_Seg(f"> {i}. {s}\n", splittable=True))
    users, _mobiles = _mentions(notification)
    tail = f"\n[查看工单]({ticket_url(dashboard_url, ticket_id)})"
    if users:
        tail += "\n" + " ".join(f"<@{u}>" for u in users)
    return fit(head + body, tail, limit)


def render_text(
    notification: Notification, *, dashboard_url: str, tz: str = "Asia/Shanghai", limit: int = TEXT_LIMIT,
    now: datetime | None = None,
) -> str:
    """Plain text (``msgtype=text``) for one ticket notification, at most ``limit`` bytes."""
    zone = ZoneInfo(tz)
    now = now or _now()
    p = notification.payload
    if not p.get("title") and notification.text:
        return fit([_Seg(line) for line in notification.text.splitlines(keepends=True)], "", limit)
    level = level_of(p)
    kind = kind_words(notification)
    ticket_id = str(p.get("id") or "")
    lead, coop = _units(p, _plain_untrusted)
    segs = [
        _Seg(f"【{level_words(level)}】{kind}\n"),
        _Seg(_plain_untrusted(p.get("title") or notification.subject, TITLE_CHARS) + "\n", splittable=True),
        _Seg(f"主办单位：{lead}" + (f"　协办：{coop}" if coop else "") + "\n"),
    ]
    if p.get("reason"):
        segs.append(_Seg("预警原因：" + _plain_untrusted(p.get("reason"), REASON_CHARS) + "\n", splittable=True))
    segs.append(_Seg(f"工单：{_plain_untrusted(ticket_id, 40)}\n"))
    first, rest = deadline_lines(p, zone, now)
    for line in (first, rest):
        if line:
            segs.append(_Seg(line + "\n"))
    raw = p.get("samples") if isinstance(p.get("samples"), list) else []
    for i, s in enumerate((raw or [])[:MAX_SAMPLES], 1):
        segs.append(_Seg(f"{i}. {_plain_untrusted(s, SAMPLE_CHARS)}\n", splittable=True))
    tail = f"\n查看工单：{ticket_url(dashboard_url, ticket_id)}"
    return fit(segs, tail, limit)


def render_digest(
    notifications: Sequence[Notification], *, dashboard_url: str, tz: str = "Asia/Shanghai",
    limit: int = MARKDOWN_LIMIT, now: datetime | None = None,
) -> str:
    """Several notifications as one WeChat markdown message (used when a robot's rate limit is hit)."""
    zone = ZoneInfo(tz)
    now = now or _now()
    n = len(notifications)
    header = (
        f"### 预警通知汇总（{n} 条）\n"
        '<font color="comment">短时间内通知较多，已合并为一条发送</font>\n'
    )
    items: list[str] = []
    for i, note in enumerate(notifications, 1):
        p = note.payload
        level = level_of(p)
        _c, _s, font = LEVEL_STYLE[level]
        kind = kind_words(note)
        title = clean_untrusted(p.get("title") or note.subject, DIGEST_TITLE_CHARS)
        line = f'{i}. <font color="{font}">【{level_words(level)}】</font>{kind}：{title}'
        first, _rest = deadline_lines(p, zone, now)
        if first:
            line += f"（{first}）"
        if p.get("id"):
            line += f" [查看]({ticket_url(dashboard_url, str(p.get('id')))})"
        items.append(line + "\n")
    tail = f"\n[全部工单]({dashboard_url.rstrip('/')}/#/tickets)"
    # Everyone the single messages would have @-mentioned (user ids only: markdown cannot @ a mobile).
    users = list(dict.fromkeys(u for note in notifications for u in _mentions(note)[0]))[:20]
    if users:
        tail += "\n" + " ".join(f"<@{u}>" for u in users)
    out = header
    budget = limit - blen(tail)
    for i, item in enumerate(items):
        rest = f"…另有 {n - i} 条未列出，请登录系统查看\n"
        if blen(out + item) + (blen(rest) if i < n - 1 else 0) > budget:
            out += rest
            break
        out += item
    return out + tail


def render_wecom(notification: Notification, *, dashboard_url: str, tz: str = "Asia/Shanghai") -> dict[str, Any]:
    """The JSON body for the robot API: markdown, or text when mobiles are to be @-mentioned."""
    if notification.kind == "digest":
        items = [Notification.model_validate(i) for i in notification.payload.get("items", [])]
        return {"msgtype": "markdown",
                "markdown": {"content": render_digest(items, dashboard_url=dashboard_url, tz=tz)}}
    users, mobiles = _mentions(notification)
    if mobiles:
        text: dict[str, Any] = {"content": render_text(notification, dashboard_url=dashboard_url, tz=tz)}
        if users:
            text["mentioned_list"] = users
        text["mentioned_mobile_list"] = mobiles
        return {"msgtype": "text", "text": text}
    return {"msgtype": "markdown",
            "markdown": {"content": render_markdown(notification, dashboard_url=dashboard_url, tz=tz)}}


def render_email(
    notification: Notification, *, dashboard_url: str, tz: str = "Asia/Shanghai"
) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of a ticket notification e-mail; untrusted text is escaped."""
    p = notification.payload
    level = level_of(p)
    kind = kind_words(notification)
    title = _plain_untrusted(p.get("title") or notification.subject, TITLE_CHARS)
    subject = f"【{level_words(level)}】{kind}：{title}"
    text = render_text(notification, dashboard_url=dashboard_url, tz=tz, limit=1 << 20)
    url = ticket_url(dashboard_url, str(p.get("id") or ""))
    colour = {4: "#c0392b", 3: "#e67e22", 2: "#d4ac0d", 1: "#2e86c1"}[level]
    rows = "".join(
        f"<p>{html.escape(line)}</p>" for line in text.splitlines() if line.strip() and not line.startswith("查看工单")
    )
    body = (
        f'<html><body><h3 style="color:{colour}">{html.escape(subject)}</h3>{rows}'
        f'<p><a href="{html.escape(url)}">查看工单</a></p></body></html>'
    )
    return subject, text, body
