"""Weekly/daily report: figures from a real SQLite store, MIME structure, escaping, masking, SMTP end to end."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from alerts.notifiers.smtp import SmtpNotifier
from alerts.reports.cli import app
from alerts.reports.weekly import (
    build_report,
    collect,
    report_slot,
    report_window,
    scheduled_reports,
    unit_recipients,
    weekly_job,
)
from core.db.models import EventMemberRow, EventRow, TicketRow, UnitRow
from core.db.session import Database
from core.records import AnalyzedPost, Sentiment, SentimentLabel, Source, Topic
from core.store.sqlite_posts import SqlitePostStore
from tests.alerts.notifiers.smtp_server import SmtpServer

CST = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 8, 30, tzinfo=CST).astimezone(UTC)  # Monday 08:30 office time
TUE = datetime(2026, 11, 17, 10, 0, tzinfo=CST).astimezone(UTC)
DASH = "https://yq.example.gov.cn"
EVIL = "<script>alert('x')</script> 联系电话13812345678 <img src=x onerror=alert(1)>"


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'report.db'}")
    database.migrate()
    with database.transaction() as s:
        s.add_all([
            UnitRow(id="office", name="市委网信办", config={"targets": {"email": ["office@gov.example"]}}),
            UnitRow(id="gov-a3", name="A3区人民政府", supervisor="office",
                    config={"targets": {"wecom": True, "email": ["a3@gov.example"]}}),
            UnitRow(id="env-b", name="市生态环境局", supervisor="office", config={"targets": {"wecom": True}}),
        ])
        s.add_all([
            EventRow(id="E1", title="城东小区污水外溢", first_seen=TUE, last_seen=TUE + timedelta(hours=20), size=40,
                     negative_count=30, heat=95.0, topic="城乡建设", representative_ids=["p1"], level=4),
            EventRow(id="E2", title="化工厂异味", first_seen=TUE, last_seen=TUE + timedelta(days=2), size=12,
                     negative_count=9, heat=40.0, topic="生态环境"),
            EventRow(id="E0", title="上月旧事", first_seen=TUE - timedelta(days=40),
                     last_seen=TUE - timedelta(days=30), size=5, heat=99.0),
        ])
        s.flush()
        for i in range(10):
            s.add(EventMemberRow(post_id=f"m{i}", event_id="E1" if i < 6 else "E2",
                                 published_at=TUE + timedelta(days=i % 3, hours=i), negative=i % 2 == 0))
        s.add(EventMemberRow(post_id="old", event_id="E0", published_at=TUE - timedelta(days=35)))
        s.add_all([
            TicketRow(id="T1", event_id="E1", level=4, state="closed", title="城东小区污水外溢", lead_unit="gov-a3",
                      created_at=TUE, signed_at=TUE + timedelta(hours=2), responded_at=TUE + timedelta(hours=10),
                      closed_at=TUE + timedelta(days=2),
                      deadlines={"sign": (TUE + timedelta(hours=4)).isoformat()}, extra={"samples": [EVIL]}),
            TicketRow(id="T2", event_id="E2", level=2, state="new", title="化工厂异味", lead_unit="env-b",
                      cooperating_units=["gov-a3"], created_at=TUE + timedelta(days=1), escalation=2,
                      deadlines={"sign": (TUE + timedelta(days=1, hours=1)).isoformat()}),
            TicketRow(id="T0", event_id="E0", level=1, state="closed", title="旧工单", lead_unit="gov-a3",
                      created_at=TUE - timedelta(days=40), closed_at=TUE - timedelta(days=30)),
        ])
    yield database
    database.close()


def parts(msg: EmailMessage) -> tuple[str, str, dict[str, bytes]]:
    """(plain text, html, {content-id: png bytes}) of a report message."""
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.get_payload()  # type: ignore[misc]
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, *images = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    pngs = {}
    for img in images:
        assert img.get_content_type() == "image/png"
        pngs[img["Content-ID"].strip("<>")] = img.get_payload(decode=True)
    return plain.get_content(), html_part.get_content(), pngs


def test_windows_are_whole_office_days() -> None:
    start, end = report_window("weekly", NOW, "Asia/Shanghai")
    assert start.astimezone(CST) == datetime(2026, 11, 16, tzinfo=CST)
    assert end.astimezone(CST) == datetime(2026, 11, 23, tzinfo=CST)
    start, end = report_window("daily", NOW, "Asia/Shanghai")
    assert (start.astimezone(CST).day, end.astimezone(CST).day) == (22, 23)
    sunday_night = datetime(2026, 11, 22, 23, 59, tzinfo=CST)
    assert report_window("weekly", sunday_night, "Asia/Shanghai")[1].astimezone(CST).day == 16
    with pytest.raises(ValueError, match="weekly or daily"):
        report_window("monthly", NOW, "Asia/Shanghai")  # type: ignore[arg-type]


def test_office_figures(db: Database) -> None:
    with db.transaction() as s:
        data = collect(s, kind="weekly", unit=None, now=NOW, dashboard_url=DASH)
    assert (data.posts, data.negative, data.events) == (10, 5, 2)
    assert (data.opened, data.closed, data.overdue) == (2, 1, 1)
    assert data.topics == {"城乡建设": 6, "生态环境": 4}
    rows = {u.unit: u for u in data.units}
    assert set(rows) == {"gov-a3", "env-b"}
    assert (rows["gov-a3"].avg_sign_h, rows["gov-a3"].avg_respond_h) == ("2.0", "10.0")
    assert (rows["env-b"].overdue, rows["env-b"].overdue_notice, rows["env-b"].open_now) == (1, 1, 1)
    assert [e["title"] for e in data.top_events] == ["城东小区污水外溢", "化工厂异味"]
    assert sum(data.daily_posts) == 10 and len(data.days) == 7


def test_unit_report_counts_lead_and_cooperation(db: Database) -> None:
    with db.transaction() as s:
        data = collect(s, kind="weekly", unit="gov-a3", now=NOW, dashboard_url=DASH)
        assert data.scope_name == "A3区人民政府"
        assert (data.opened, data.closed, data.overdue) == (2, 1, 1)
        assert [u.unit for u in data.units] == ["gov-a3"]
        with pytest.raises(ValueError, match="unknown unit"):
            collect(s, kind="weekly", unit="nope", now=NOW, dashboard_url=DASH)


def test_report_mime_charts_escaping_masking(db: Database) -> None:
    with db.transaction() as s:
        msg = build_report(s, kind="weekly", unit=None, now=NOW, dashboard_url=DASH, to=["office@gov.example"])
    assert msg["Subject"] == "【舆情周报】2026年11月16日至11月22日（全市）"
    text, html, pngs = parts(msg)
    assert len(pngs) == 3 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs.values())
    assert set(re.findall(r'src="cid:([^"]+)"', html)) == set(pngs)
    assert "<script>" not in html and "&lt;script&gt;" in html and "<img src=x" not in html
    assert "13812345678" not in html and "13812345678" not in text and "138****5678" in html
    assert f"{DASH}/#/tickets/T1" in html
    assert "新增工单 2　办结 1　超时 1" in text


def test_report_over_post_store(db: Database, tmp_path: Path) -> None:
    store = SqlitePostStore(tmp_path / "posts.db", tokenize=lambda t: list(t))
    store.ensure_schema()
    posts = []
    for i in range(6):
        text = "排污口一直冒黑水，打13812345678没人接" if i == 0 else f"第{i}条 正常信息"
        posts.append(AnalyzedPost(
            id="p1" if i == 0 else f"p{i + 1}", source=Source.weibo, external_id=str(i), text=text,
            text_masked=text.replace("13812345678", "138****5678"), published_at=TUE + timedelta(hours=i),
            sentiment=Sentiment(label=SentimentLabel.negative if i < 2 else SentimentLabel.neutral, score=0.5),
            topic=Topic(l1="生态环境" if i < 3 else "交通运输"), event_id="E1",
        ))
    store.upsert(posts)
    with db.transaction() as s:
        data = collect(s, kind="weekly", unit=None, now=NOW, dashboard_url=DASH, post_store=store)
        msg = build_report(s, kind="weekly", unit=None, now=NOW, dashboard_url=DASH, post_store=store)
    store.close()
    assert (data.posts, data.negative) == (6, 2)
    assert data.topics == {"生态环境": 3, "交通运输": 3}
    assert data.top_events[0]["samples"] == ["排污口一直冒黑水，打138****5678没人接"]
    _text, html, _pngs = parts(msg)
    assert "排污口一直冒黑水" in html


def test_mailed_through_real_smtp_server(db: Database) -> None:
    with SmtpServer() as srv:
        mailer = SmtpNotifier(host="127.0.0.1", port=srv.port, security="none", username=None, password=None,
                              sender="yuqing@gov.example", timeout_s=5)
        outcome = weekly_job(db.session, now=NOW, send=mailer.send_message, dashboard_url=DASH)
    assert outcome == {"office": "sent", "gov-a3": "sent"}
    assert srv.inbox.rcpt == [["office@gov.example"], ["a3@gov.example"]]
    office, unit = srv.inbox.messages()
    assert office["From"] == "yuqing@gov.example" and office["Date"] is not None
    assert unit["Subject"] == "【舆情周报】2026年11月16日至11月22日（A3区人民政府）"
    for msg in (office, unit):
        reparsed = BytesParser(policy=policy.default).parsebytes(msg.as_bytes())
        text, html, pngs = parts(reparsed)  # type: ignore[arg-type]
        assert pngs and set(re.findall(r'src="cid:([^"]+)"', html)) == set(pngs)
        assert "<script>" not in html and "13812345678" not in html + text


def test_unit_recipients_from_units_table(db: Database) -> None:
    with db.transaction() as s:
        assert unit_recipients(s) == {"office": ["office@gov.example"], "gov-a3": ["a3@gov.example"]}


def test_cli_writes_eml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "weekly.eml"
    result = CliRunner().invoke(app, ["weekly", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    msg = BytesParser(policy=policy.default).parsebytes(out.read_bytes())
    assert msg["Subject"].startswith("【舆情周报】")
    _text, _html, pngs = parts(msg)  # type: ignore[arg-type]
    assert pngs
    bad = CliRunner().invoke(app, ["monthly"])
    assert bad.exit_code != 0


def test_report_slots() -> None:
    monday_early = datetime(2026, 11, 23, 8, 29, tzinfo=CST)
    assert report_slot("weekly", monday_early, "Asia/Shanghai") is None
    assert report_slot("weekly", NOW, "Asia/Shanghai") == "2026-W48"
    assert report_slot("weekly", datetime(2026, 11, 24, 7, 0, tzinfo=CST), "Asia/Shanghai") == "2026-W48"
    assert report_slot("daily", monday_early, "Asia/Shanghai") is None
    assert report_slot("daily", NOW, "Asia/Shanghai") == "2026-11-23"


def test_scheduled_reports_run_once_across_workers(db: Database) -> None:
    with SmtpServer() as srv:
        mailer = SmtpNotifier(host="127.0.0.1", port=srv.port, security="none", username=None, password=None,
                              sender="yuqing@gov.example", timeout_s=5)
        first = scheduled_reports(db.session, now=NOW, worker_id="w1", send=mailer.send_message,
                                  dashboard_url=DASH, daily=False)
        second = scheduled_reports(db.session, now=NOW + timedelta(minutes=1), worker_id="w2",
                                   send=mailer.send_message, dashboard_url=DASH, daily=False)
    assert first == {"weekly": {"office": "sent", "gov-a3": "sent"}}
    assert second == {}
    assert len(srv.inbox.raw) == 2


def test_week_on_week_summary_status_and_ranking(db: Database) -> None:
    """环比 against the week before, a written summary, each key event's handling status, units ranked."""
    with db.transaction() as s:
        s.add(EventRow(id="EP", title="上周事件", first_seen=TUE - timedelta(days=7), last_seen=TUE - timedelta(days=7),
                       size=4, heat=10.0))
        s.flush()
        for i in range(4):
            s.add(EventMemberRow(post_id=f"prev{i}", event_id="EP", published_at=TUE - timedelta(days=7, hours=i),
                                 negative=i < 2))
    with db.transaction() as s:
        data = collect(s, kind="weekly", unit=None, now=NOW, dashboard_url=DASH)
        msg = build_report(s, kind="weekly", unit=None, now=NOW, dashboard_url=DASH)
    assert data.previous is not None and (data.previous.posts, data.previous.negative) == (4, 2)
    assert data.change("posts") == "环比增长150.0%" and data.change("negative") == "环比增长150.0%"
    assert data.previous.previous is None  # one step back only
    assert [e["status"] for e in data.top_events] == ["A3区人民政府已办结", "市生态环境局待签收"]
    assert [u.unit for u in data.ranking] == ["gov-a3", "env-b"]  # no overdue before one overdue
    assert data.summary.startswith("本周全市共监测到网络信息10条（环比增长150.0%），其中负面信息5条，占50.0%；")
    assert "最受关注的是「城东小区污水外溢」（热度95，A3区人民政府已办结）。" in data.summary
    assert "市生态环境局存在超时工单，需加快办理。" in data.summary
    text, html, _pngs = parts(msg)
    assert "综述：本周全市" in text and "办理情况：A3区人民政府已办结" in text
    assert 'id="summary"' in html and "环比增长150.0%" in html and "<td>1</td><td>A3区人民政府</td>" in html
    assert "统计时段：11月16日 00:00 至 11月23日 00:00（北京时间）" in html
    assert re.search(r"生成时间：2026年11月23日 08:30", html)
