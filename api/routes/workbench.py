"""What a person has to do now, and whether the office's alerts can reach anyone at all.

- ``GET /api/v1/dashboard/todo``: a handler's tickets (lead first, by the next deadline; 协办 marked with the task
  given to the unit) and, for approvers, the drafted responses waiting for their review (待我审核).
- ``GET /api/v1/dashboard/people``: user name -> display name, so histories show people, not log-in names.
- ``GET /api/v1/dashboard/notify-health``: channels configured, outbox backlog and dead rows, robots marked broken,
  and the warnings the admin page shows in red when notifications cannot go out.
- ``POST /api/v1/dashboard/users`` and ``POST /api/v1/dashboard/users/{username}/active``: create and
  disable/enable accounts (admin only).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, StrictBool
from sqlalchemy import func, select

from alerts.tickets import responses as rsp
from alerts.tickets import schemas
from alerts.tickets import service as tickets
from alerts.tickets import workflow as wf
from api.deps import DbSession
from api.security import CurrentUser, require_roles
from core.auth import service as auth
from core.db.models import OutboxRow, ResponseRow, TargetStatusRow, TicketRow, UnitRow, UserRow
from core.errors import NotFound
from core.records import utcnow

router = APIRouter(prefix="/api/v1/dashboard", tags=["dashboard"])

APPROVER_ROLES = ("admin", "analyst", "leader")
STUCK_AFTER = timedelta(minutes=10)  # a notification pending longer than this is not going out


class TodoTicket(BaseModel):
    """An open ticket on someone's list."""

    ticket: schemas.TicketOut
    relation: str  # lead | cooperating
    task: str | None = None  # what the lead unit asked this cooperating unit to do (交办)
    next_stage: str | None = None
    next_deadline: datetime | None = None
    overdue: bool = False


class ReviewItem(BaseModel):
    """A drafted response waiting for this approver."""

    ticket_id: str
    ticket_title: str
    level: int
    response_id: str
    drafted_by: str
    drafted_at: datetime
    approvals: int
    text_preview: str


class TodoOut(BaseModel):
    """A person's work list."""

    lead: list[TodoTicket]
    cooperating: list[TodoTicket]
    review: list[ReviewItem]


def _next_deadline(t: TicketRow) -> tuple[str | None, datetime | None]:
    pending = [(tickets.parse_iso(when), stage) for stage, when in (t.deadlines or {}).items()
               if not tickets.stage_met(t, stage)]
    if not pending:
        return None, None
    at, stage = min(pending)
    return stage, at


def _todo_ticket(t: TicketRow, names: dict[str, str], relation: str, unit: str | None, now: datetime) -> TodoTicket:
    stage, at = _next_deadline(t)
    task = None
    if relation == "cooperating" and unit:
        given = [x for x in (t.extra or {}).get("tasks") or [] if isinstance(x, dict) and x.get("unit") == unit]
        task = str(given[-1].get("task") or "") or None if given else None
    return TodoTicket(ticket=schemas.ticket_out(t, names), relation=relation, task=task, next_stage=stage,
                      next_deadline=at, overdue=at is not None and at <= now)


@router.get("/todo", response_model=TodoOut)
def todo(user: CurrentUser, session: DbSession) -> TodoOut:
    """我的待办: lead tickets by the next deadline, 协办 tickets with their task, responses awaiting my review."""
    now = utcnow()
    names = {u.id: u.name for u in session.scalars(select(UnitRow))}
    far = datetime.max.replace(tzinfo=now.tzinfo)
    lead: list[TodoTicket] = []
    coop: list[TodoTicket] = []
    if user.unit_id:
        rows, _ = tickets.list_tickets(session, filters={"open": True}, limit=500, visible_to=user)
        for t in rows:
            if t.lead_unit == user.unit_id:
                lead.append(_todo_ticket(t, names, "lead", user.unit_id, now))
            elif user.unit_id in (t.cooperating_units or []):
                coop.append(_todo_ticket(t, names, "cooperating", user.unit_id, now))
    lead.sort(key=lambda x: (x.next_deadline or far, -x.ticket.level))
    coop.sort(key=lambda x: (x.next_deadline or far, -x.ticket.level))
    review: list[ReviewItem] = []
    if user.role in APPROVER_ROLES:
        drafts = session.execute(
            select(ResponseRow, TicketRow).join(TicketRow, TicketRow.id == ResponseRow.ticket_id)
            .where(ResponseRow.state == "draft", TicketRow.state.in_(list(wf.TRANSITIONS["respond"])))
            .order_by(ResponseRow.drafted_at)
        ).all()
        for r, t in drafts:
            approvers = rsp.distinct_approvers(r)
            if r.drafted_by == user.username or user.username in approvers:
                continue
            review.append(ReviewItem(ticket_id=t.id, ticket_title=t.title, level=t.level, response_id=r.id,
                                     drafted_by=r.drafted_by, drafted_at=r.drafted_at, approvals=len(approvers),
                                     text_preview=r.text[:120]))
    return TodoOut(lead=lead, cooperating=coop, review=review)


class PeopleOut(BaseModel):
    """Log-in name -> display name, and unit id -> unit name."""

    names: dict[str, str]
    units: dict[str, str]


@router.get("/people", response_model=PeopleOut)
def people(_user: CurrentUser, session: DbSession) -> PeopleOut:
    """Display names of every account (no roles or contact data) and the units' names (public facts)."""
    names = {u.username: u.display_name or u.username for u in session.scalars(select(UserRow))}
    names.setdefault("system", "系统")
    return PeopleOut(names=names, units={u.id: u.name for u in session.scalars(select(UnitRow))})


class ChannelState(BaseModel):
    """One notification channel as configured."""

    channel: str
    enabled: bool
    detail: str


class NotifyHealthOut(BaseModel):
    """Whether notifications can go out."""

    channels: list[ChannelState]
    pending: int
    stuck: int
    oldest_pending_at: datetime | None
    dead: int
    broken_targets: int
    warnings: list[str]


@router.get("/notify-health", response_model=NotifyHealthOut,
            dependencies=[Depends(require_roles(*APPROVER_ROLES))])
def notify_health(request: Request, session: DbSession) -> NotifyHealthOut:
    """Channels, outbox backlog and broken robots; ``warnings`` is what must be fixed for alerts to reach people."""
    settings = request.app.state.settings
    now = utcnow()
    wecom = settings.wecom
    channels = [
        ChannelState(channel="wecom", enabled=bool(wecom.enabled),
                     detail=(f"办公室机器人{'已' if wecom.office_key else '未'}配置，单位机器人 {len(wecom.robots)} 个"
                             if wecom.enabled else "未启用（YUQING_WECOM__ENABLED）")),
        ChannelState(channel="email", enabled=bool(settings.smtp.enabled),
                     detail=str(settings.smtp.host) if settings.smtp.enabled else "未启用（YUQING_SMTP__ENABLED）"),
        ChannelState(channel="webhook", enabled=bool(settings.webhook.enabled),
                     detail="已启用" if settings.webhook.enabled else "未启用（YUQING_WEBHOOK__ENABLED）"),
    ]
    counts = dict(session.execute(select(OutboxRow.state, func.count()).group_by(OutboxRow.state)).all())
    pending = int(counts.get("pending", 0))
    # Oldest first and bounded: enough to count what is stuck without reading a huge backlog.
    queued = [c if c.tzinfo else c.replace(tzinfo=now.tzinfo) for c in session.scalars(
        select(OutboxRow.created_at).where(OutboxRow.state == "pending").order_by(OutboxRow.created_at).limit(10_000))]
    oldest = queued[0] if queued else None
    stuck = sum(1 for c in queued if c < now - STUCK_AFTER)
    broken = int(session.scalar(select(func.count()).select_from(TargetStatusRow)
                                .where(TargetStatusRow.broken.is_(True))) or 0)
    warnings = []
    if not any(c.enabled for c in channels):
        warnings.append("未配置任何通知渠道：预警只在本系统内可见，不会推送到企业微信、邮件或其他系统。")
    if stuck:
        warnings.append(f"有 {stuck} 条通知排队超过 {int(STUCK_AFTER.total_seconds() // 60)} 分钟仍未发出"
                        "（发送进程未运行，或渠道未配置）。")
    if broken:
        warnings.append(f"有 {broken} 个通知对象故障（如机器人被移除），发往它们的预警不会送达。")
    if counts.get("dead"):
        warnings.append(f"有 {int(counts['dead'])} 条通知多次发送失败已放弃。")
    return NotifyHealthOut(channels=channels, pending=pending, stuck=stuck, oldest_pending_at=oldest,
                           dead=int(counts.get("dead", 0)), broken_targets=broken, warnings=warnings)


class UserCreateIn(BaseModel):
    """A new account."""

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@\-]+$")
    display_name: str = Field(default="", max_length=64)
    role: str = Field(pattern=r"^(admin|analyst|handler|leader)$")
    unit_id: str | None = Field(default=None, max_length=64)
    password: str = Field(min_length=10, max_length=256)


class UserActiveIn(BaseModel):
    """Enable or disable an account."""

    active: StrictBool


class UserChangedOut(BaseModel):
    """The account after the change."""

    username: str
    active: bool


@router.post("/users", response_model=UserChangedOut, status_code=201,
             dependencies=[Depends(require_roles("admin"))])
def create_user(body: UserCreateIn, session: DbSession) -> UserChangedOut:
    """Create an account (admin only); the password is hashed, never stored or returned."""
    try:
        user = auth.create_user(session, username=body.username, password=body.password, role=body.role,
                                unit_id=body.unit_id or None, display_name=body.display_name)
    except (NotFound, ValueError) as exc:
        # The body is well-formed; it conflicts with what exists (a taken name, an unknown unit, a handler
        # with no unit).
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    session.commit()
    return UserChangedOut(username=user.username, active=True)


@router.post("/users/{username}/active", response_model=UserChangedOut)
def set_active(username: str, body: UserActiveIn, session: DbSession,
               admin: Any = Depends(require_roles("admin"))) -> UserChangedOut:
    """停用/启用 an account (admin only); a disabled account's sessions and tokens stop working at once."""
    row = session.scalar(select(UserRow).where(UserRow.username == username))
    if row is None:
        raise HTTPException(status_code=404, detail="用户不存在 / no such user")
    if row.username == admin.username and not body.active:
        raise HTTPException(status_code=409, detail="不能停用自己的账号 / you cannot disable your own account")
    row.active = body.active
    session.commit()
    return UserChangedOut(username=row.username, active=row.active)
