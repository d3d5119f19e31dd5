"""问责统计 per unit and period: on-time signing and responding, overdue, rejected, reopened, outcomes.

The three accountability counts follow the 2018 政务公开工作要点 (对处置不得力、回应不妥当、报告不及时的
涉事责任单位予以通报批评或约谈整改):
- 处置不得力 (poor handling): tickets reopened, or whose effect evaluation says 升级;
- 回应不妥当 (improper response): a published response followed by an 升级 evaluation;
- 报告不及时 (late reporting): signing or first response after its deadline (or still missing past it).
Tickets count for the unit that leads them now and were created in ``[since, until)``.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.tickets import service as svc
from core.db.models import TicketAuditRow, TicketRow, UnitRow

COLUMNS: list[tuple[str, str]] = [
    ("unit", "单位"),
    ("unit_name", "单位名称"),
    ("received", "收到工单"),
    ("signed_on_time", "按时签收"),
    ("responded_on_time", "按时回应"),
    ("overdue", "超时工单"),
    ("rejected", "退回次数"),
    ("reopened", "重开工单"),
    ("avg_sign_hours", "平均签收用时(小时)"),
    ("avg_response_hours", "平均回应用时(小时)"),
    ("outcome_subsided", "评估-平息"),
    ("outcome_continuing", "评估-持续"),
    ("outcome_escalated", "评估-升级"),
    ("poor_handling", "处置不得力"),
    ("improper_response", "回应不妥当"),
    ("late_report", "报告不及时"),
]


def _response_deadline(t: TicketRow) -> datetime | None:
    d = t.deadlines or {}
    stages = [svc.parse_iso(d[s]) for s in ("authoritative_info", "first_response") if s in d]
    return min(stages) if stages else None


def _late(done: datetime | None, deadline: datetime | None, now: datetime) -> bool:
    if deadline is None:
        return False
    return done > deadline if done is not None else now > deadline


def unit_stats(
    session: Session, *, since: datetime, until: datetime, now: datetime, units: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row of figures per unit (units with no tickets in the period included when known)."""
    tickets = session.scalars(
        select(TicketRow).where(TicketRow.created_at >= since, TicketRow.created_at < until)
    ).all()
    names = {u.id: u.name for u in session.scalars(select(UnitRow))}
    rejects: Counter[str] = Counter()
    for a in session.scalars(select(TicketAuditRow).where(
            TicketAuditRow.action == "reject", TicketAuditRow.at >= since, TicketAuditRow.at < until)):
        rejects[str((a.detail or {}).get("unit") or "")] += 1
    by_unit: dict[str, list[TicketRow]] = defaultdict(list)
    for t in tickets:
        by_unit[t.lead_unit].append(t)
    wanted = units if units is not None else sorted(set(by_unit) | set(names) | {u for u in rejects if u})
    out: list[dict[str, Any]] = []
    for unit in wanted:
        rows = by_unit.get(unit, [])
        sign_hours, resp_hours = [], []
        signed_on_time = responded_on_time = overdue = reopened = poor = improper = late_report = 0
        outcomes: Counter[str] = Counter()
        for t in rows:
            sign_deadline = svc.parse_iso(t.deadlines["sign"]) if (t.deadlines or {}).get("sign") else None
            resp_deadline = _response_deadline(t)
            if t.signed_at is not None:
                sign_hours.append((t.signed_at - t.created_at).total_seconds() / 3600)
                signed_on_time += int(sign_deadline is None or t.signed_at <= sign_deadline)
            if t.responded_at is not None:
                resp_hours.append((t.responded_at - t.created_at).total_seconds() / 3600)
                responded_on_time += int(resp_deadline is None or t.responded_at <= resp_deadline)
            late = _late(t.signed_at, sign_deadline, now) or (
                _late(t.responded_at, resp_deadline, now) and t.state != "merged")
            overdue += int(late)
            late_report += int(late)
            outcome = (t.evaluation or {}).get("outcome")
            if outcome:
                outcomes[outcome] += 1
            reopened += int((t.reopened or 0) > 0)
            poor += int((t.reopened or 0) > 0 or outcome == "升级")
            improper += int(outcome == "升级" and t.responded_at is not None)
        out.append({
            "unit": unit,
            "unit_name": names.get(unit, unit),
            "received": len(rows),
            "signed_on_time": signed_on_time,
            "responded_on_time": responded_on_time,
            "overdue": overdue,
            "rejected": rejects.get(unit, 0),
            "reopened": reopened,
            "avg_sign_hours": round(sum(sign_hours) / len(sign_hours), 2) if sign_hours else None,
            "avg_response_hours": round(sum(resp_hours) / len(resp_hours), 2) if resp_hours else None,
            "outcome_subsided": outcomes.get("平息", 0),
            "outcome_continuing": outcomes.get("持续", 0),
            "outcome_escalated": outcomes.get("升级", 0),
            "poor_handling": poor,
            "improper_response": improper,
            "late_report": late_report,
        })
    return out


def _cell(value: Any) -> Any:
    # Spreadsheet formula injection: text starting with = + - @ would run as a formula when opened.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV with Chinese column headers (UTF-8; prefix a BOM when serving to Excel)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([label for _key, label in COLUMNS])
    for r in rows:
        writer.writerow([_cell(r.get(key)) for key, _label in COLUMNS])
    return buf.getvalue()


def to_xlsx(rows: list[dict[str, Any]]) -> bytes:
    """An .xlsx workbook of the same table (needs openpyxl: ``pip install openpyxl``)."""
    try:
        from openpyxl import Workbook
    except ImportError as exc:  # optional dependency
        raise RuntimeError("xlsx export needs openpyxl: pip install openpyxl (or use format=csv)") from exc
    wb = Workbook()
    ws = wb.active
    ws.title = "问责统计"
    ws.append([label for _key, label in COLUMNS])
    for r in rows:
        ws.append([_cell(r.get(key)) for key, _label in COLUMNS])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
