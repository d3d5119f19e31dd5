"""Per-unit accountability figures and the CSV/XLSX export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from alerts.tickets import accountability as acc
from alerts.tickets import service as svc
from tests.alerts.tickets.ticket_helpers import ENV, HOUSING, T0, make_event, make_match


def _open(s, eid, unit):
    t, _ = svc.open_or_update(s, event=make_event(eid), match=make_match(eid), lead_unit=unit,
                              cooperating_units=[], routing={}, now=T0)
    return t


def test_unit_figures(db) -> None:
    with db.transaction() as s:
        a = _open(s, "e1", "env")  # signed on time, responded on time, outcome 升级 -> poor handling + improper
        svc.acknowledge(s, ticket_id=a.id, actor=ENV, now=T0 + timedelta(minutes=30))
        a.responded_at = T0 + timedelta(hours=10)
        a.evaluation = {"outcome": "升级"}
        b = _open(s, "e2", "env")  # signed late (sign limit 1 h for yellow), reopened once
        svc.acknowledge(s, ticket_id=b.id, actor=ENV, now=T0 + timedelta(hours=3))
        b.reopened = 1
        c = _open(s, "e3", "housing")  # rejected by housing, never signed -> overdue
        svc.reject(s, ticket_id=c.id, actor=HOUSING, reason="非本单位职责", now=T0 + timedelta(minutes=5))
    now = T0 + timedelta(days=3)
    with db.transaction() as s:
        rows = {r["unit"]: r for r in acc.unit_stats(s, since=T0 - timedelta(days=1), until=now, now=now)}
    env, housing = rows["env"], rows["housing"]
    assert (env["received"], env["signed_on_time"], env["responded_on_time"]) == (2, 1, 1)
    # b was signed late and never responded within 48 h: overdue; a was on time.
    assert (env["overdue"], env["late_report"], env["reopened"]) == (1, 1, 1)
    assert (env["poor_handling"], env["improper_response"], env["outcome_escalated"]) == (2, 1, 1)
    assert env["avg_sign_hours"] == pytest.approx((0.5 + 3) / 2)
    assert env["avg_response_hours"] == pytest.approx(10)
    assert (housing["received"], housing["rejected"], housing["overdue"], housing["signed_on_time"]) == (1, 1, 1, 0)
    assert rows["police"]["received"] == 0 and rows["police"]["unit_name"] == "公安局"
    with db.transaction() as s:
        assert acc.unit_stats(s, since=now, until=now + timedelta(days=1), now=now, units=["env"])[0]["received"] == 0


def test_csv_export_headers_and_formula_guard(db) -> None:
    rows = [{"unit": "=cmd|' /C calc'!A0", "unit_name": "测试单位", "received": 3, "avg_sign_hours": None}]
    text = acc.to_csv(rows)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0][:3] == ["单位", "单位名称", "收到工单"] and "处置不得力" in parsed[0]
    assert parsed[1][0].startswith("'=") and parsed[1][2] == "3" and parsed[1][8] == ""


def test_xlsx_export_when_openpyxl_present() -> None:
    pytest.importorskip("openpyxl", reason="openpyxl not installed: xlsx export is optional")
    import openpyxl

    data = acc.to_xlsx([{"unit": "env", "unit_name": "生态环境局", "received": 2}])
    ws = openpyxl.load_workbook(io.BytesIO(data)).active
    assert ws.cell(1, 1).value == "单位" and ws.cell(2, 2).value == "生态环境局" and ws.cell(2, 3).value == 2


def test_period_excludes_older_tickets(db) -> None:
    with db.transaction() as s:
        t = _open(s, "e9", "env")
        t.created_at = T0 - timedelta(days=40)
    with db.transaction() as s:
        rows = acc.unit_stats(s, since=T0 - timedelta(days=7), until=T0 + timedelta(days=1), now=T0, units=["env"])
        assert rows[0]["received"] == 0
        rows = acc.unit_stats(s, since=T0 - timedelta(days=41), until=T0, now=T0, units=["env"])
        assert rows[0]["received"] == 1
