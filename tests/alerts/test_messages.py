"""Rendering of notifications: exact layout, level colours, escaping of untrusted text, byte limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.messages import (
    MARKDOWN_LIMIT,
    TEXT_LIMIT,
    TRUNCATED,
    blen,
    cut_bytes,
    render_digest,
    render_email,
    render_markdown,
    render_text,
    render_wecom,
)
from alerts.notifiers.base import Notification

DASH = "https://yq.example.gov.cn"
NOW = datetime(2026, 11, 22, 1, 30, tzinfo=UTC)  # 09:30 office time, 30 minutes before the sign deadline


def note(kind: str = "ticket.created", **payload: object) -> Notification:
    base: dict[str, object] = {
        "id": "T-20261122-0001",
        "title": "城东小区污水外溢",
        "level": 3,
        "state": "new",
        "lead_unit": "gov-a3",
        "cooperating_units": ["env-b"],
        "unit_names": {"gov-a3": "A3区人民政府", "env-b": "市生态环境局"},
        "deadlines": {"sign": "2026-11-22T02:00:00+00:00", "authoritative_info": "2026-11-22T06:30:00+00:00",
                      "press_conference": "2026-11-23T01:30:00+00:00", "close": "2026-11-29T01:30:00+00:00",
                      "first_response": "2026-11-22T05:30:00+00:00"},
        "reason": "24小时内负面信息52条",
        "event_id": "E-77",
        "samples": ["小区门口污水横流，臭味很重", "已经反映三天了没人管", "第三条不该出现"],
    }
    base.update(payload)
    return Notification(id=f"n-{kind}", channel="wecom", target="gov-a3", kind=kind, subject="s",
                        payload=base, mentions=["zhangsan"])


def md(n: Notification, **kw: object) -> str:
    return render_markdown(n, dashboard_url=DASH, now=NOW, **kw)  # type: ignore[arg-type]


EXPECTED_CREATED = (
    '### <font color="warning">【橙色预警·重大】</font>新预警工单\n'
    "**城东小区污水外溢**\n"
    "> 主办单位：A3区人民政府　协办：市生态环境局\n"
    "> 预警原因：24小时内负面信息52条\n"
    "> 工单：T-20261122-0001　状态：待签收\n"
    '<font color="warning">**请于 30分钟内签收（截至 11月22日 10:00）**</font>\n'
    '<font color="comment">其余时限：首次回应 11月22日 13:30 · 发布权威信息 11月22日 14:30 等4项</font>\n'
    "**代表性信息**（已脱敏）：\n"
    "> 1. 小区门口污水横流，臭味很重\n"
    "> 2. 已经反映三天了没人管\n"
    "\n[查看工单](https://yq.example.gov.cn/#/tickets/T-20261122-0001)\n"
    "<@zhangsan>"
)


def test_created_markdown_exact() -> None:
    """Names not ids, no event id, two samples, the next deadline in words, the others on one short line."""
    text = md(note())
    assert text == EXPECTED_CREATED
    assert "gov-a3" not in text and "env-b" not in text and "E-77" not in text


def test_unknown_unit_falls_back_to_its_id() -> None:
    assert "> 主办单位：gov-x9\n" in md(note(lead_unit="gov-x9", cooperating_units=[]))


def test_level_change_says_from_which_colour_to_which() -> None:
    raised = md(note("ticket.level", level=4, level_from=3))
    assert raised.splitlines()[0] == '### <font color="warning">【红色预警·特别重大】</font>预警升级（橙→红）'
    lowered = render_text(note("ticket.level", level=2, level_from=4), dashboard_url=DASH, now=NOW)
    assert lowered.startswith("【黄色预警·较大】预警降级（红→黄）\n")
    assert md(note("ticket.level")).splitlines()[0].endswith("预警等级变更")  # no level_from: no arrow


@pytest.mark.parametrize(("state", "now", "line"), [
    ("new", NOW, "请于 30分钟内签收"),
    ("new", NOW + timedelta(hours=2, minutes=5), "签收已超时 1小时35分钟（时限 11月22日 10:00）"),
    ("acknowledged", NOW, "请于 4小时内首次回应（截至 11月22日 13:30）"),
    ("responded", NOW, "请于 24小时内召开新闻发布会（截至 11月23日 09:30）"),
    ("closed", NOW, None),
])
def test_next_deadline_follows_the_state(state: str, now: datetime, line: str | None) -> None:
    text = render_markdown(note(state=state), dashboard_url=DASH, now=now)
    if line is None:
        assert "请于" not in text and "其余时限" not in text
    else:
        assert line in text
    assert text.count("请于") <= 1


@pytest.mark.parametrize(
    ("kind", "label"),
    [("ticket.created", "新预警工单"), ("ticket.level", "预警等级变更"), ("ticket.remind", "催办提醒"),
     ("ticket.overdue", "工单已超时"), ("ticket.escalated", "工单升级督办"), ("ticket.closed", "工单已办结")],
)
def test_each_kind_has_its_heading(kind: str, label: str) -> None:
    assert md(note(kind)) == EXPECTED_CREATED.replace("新预警工单", label, 1)


@pytest.mark.parametrize(("level", "font", "words"), [
    (4, "warning", "红色预警·特别重大"), (3, "warning", "橙色预警·重大"),
    (2, "info", "黄色预警·较大"), (1, "comment", "蓝色预警·一般"),
])
def test_level_colour_mapping(level: int, font: str, words: str) -> None:
    first = md(note(level=level)).splitlines()[0]
    assert first == f'### <font color="{font}">【{words}】</font>新预警工单'


def test_untrusted_samples_cannot_inject_markdown() -> None:
    evil = [
        '[点我领补贴](http://phish.example) <font color="info">假消息</font> <@all>',
        "`code` **bold** # heading\n> fake quote",
    ]
    text = render_markdown(note(samples=evil, title="标题[x](http://e)<@all>"), dashboard_url=DASH)
    # the only link is ours, the only mention is the configured one, fonts are only ours
    assert re.findall(r"\[[^\]]*\]\([^)]*\)", text) == [f"[查看工单]({DASH}/#/tickets/T-20261122-0001)"]
    assert re.findall(r"<@[^>]*>", text) == ["<@zhangsan>"]
    assert text.count("<font") == 3  # the level heading and the two deadline lines
    assert "phish.example" in text  # the text is kept, only defused
    assert "http://phish" not in text and "http：//phish.example" in text  # not even a bare link
    assert "\n> fake quote" not in text  # sample newlines are flattened


def test_phone_and_id_in_sample_are_masked() -> None:
    text = render_markdown(note(samples=["联系我13812345678，身份证110101199003071234"]), dashboard_url=DASH)
    assert "13812345678" not in text
    assert "110101199003071234" not in text
    assert "5678" in text  # the last four digits stay, as the masking convention says


def test_truncation_at_byte_limit_with_multibyte_text() -> None:
    long_samples = ["很" * 399 + "长", "长" * 399 + "文", "😀" * 400]
    text = render_markdown(note(samples=long_samples, reason="原因" * 100), dashboard_url=DASH, limit=1200)
    assert blen(text) <= 1200
    assert TRUNCATED in text
    text.encode("utf-8").decode("utf-8")  # valid UTF-8 all the way
    # the link and mention survive the cut intact
    assert text.endswith(f"\n[查看工单]({DASH}/#/tickets/T-20261122-0001)\n<@zhangsan>")
    assert text.count("<font") == text.count("</font>")


def test_full_size_message_fits_4096() -> None:
    """The longest title, reason and samples still fit whole: each is shortened on its own, the message never cut."""
    samples = ["测" * 1000 for _ in range(5)]
    text = md(note(samples=samples, title="题" * 500, reason="因" * 500))
    assert blen(text) <= MARKDOWN_LIMIT
    assert TRUNCATED not in text
    assert "> 2. 测" in text and "> 3." not in text and "测…\n" in text
    assert text.endswith(f"\n[查看工单]({DASH}/#/tickets/T-20261122-0001)\n<@zhangsan>")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=800), max_size=4), st.integers(min_value=600, max_value=4096))
def test_any_sample_text_stays_within_limit_and_balanced(samples: list[str], limit: int) -> None:
    text = render_markdown(note(samples=samples), dashboard_url=DASH, limit=limit)
    assert blen(text) <= limit
    assert text.count("<font") == text.count("</font>") <= 3
    assert len(re.findall(r"<@", text)) == 1


def test_cut_bytes_never_splits_a_character() -> None:
    assert cut_bytes("中文字", 7) == "中文"
    assert cut_bytes("中文字", 9) == "中文字"
    assert cut_bytes("a😀", 4) == "a"


def test_text_message_with_mobiles() -> None:
    n = note().model_copy(update={"mentions": ["13900001111", "lisi"]})
    body = render_wecom(n, dashboard_url=DASH)
    assert body["msgtype"] == "text"
    assert body["text"]["mentioned_mobile_list"] == ["13900001111"]
    assert body["text"]["mentioned_list"] == ["lisi"]
    content = body["text"]["content"]
    assert content.startswith("【橙色预警·重大】新预警工单\n城东小区污水外溢\n")
    assert content.endswith(f"查看工单：{DASH}/#/tickets/T-20261122-0001")
    long = note(samples=["字" * 1000, "字" * 1000]).model_copy(update={"mentions": ["13900001111"]})
    content = render_wecom(long, dashboard_url=DASH)["text"]["content"]
    assert blen(content) <= TEXT_LIMIT
    cut = render_text(long, dashboard_url=DASH, now=NOW, limit=600)
    assert blen(cut) <= 600 and TRUNCATED in cut and cut.endswith(f"查看工单：{DASH}/#/tickets/T-20261122-0001")


def test_text_defuses_mentions_in_samples() -> None:
    text = render_text(note(samples=["<@all> 大家快来"]), dashboard_url=DASH)
    assert "<@all>" not in text


def test_digest_lists_every_item_within_limit() -> None:
    items = [note(kind, title=f"事件{i}[x](http://e)", id=f"T{i}", level=1 + i % 4)
             for i, kind in enumerate(["ticket.created", "ticket.remind", "ticket.overdue"] * 3)]
    text = render_digest(items, dashboard_url=DASH)
    assert blen(text) <= MARKDOWN_LIMIT
    assert text.startswith("### 预警通知汇总（9 条）\n")
    for i in range(9):
        assert f"[查看]({DASH}/#/tickets/T{i})" in text
    assert "http：//e" in text and "[x]" not in text and "http://e" not in text
    assert text.endswith(f"\n[全部工单]({DASH}/#/tickets)\n<@zhangsan>")  # mentions merged, once


def test_digest_overflow_says_how_many_are_left() -> None:
    items = [note(title="很长的标题" * 20, id=f"T{i}") for i in range(60)]
    text = render_digest(items, dashboard_url=DASH)
    assert blen(text) <= MARKDOWN_LIMIT
    assert re.search(r"…另有 \d+ 条未列出", text)


def test_email_body_escapes_html() -> None:
    subject, text, body = render_email(note(samples=["<script>alert(1)</script> 13812345678"]), dashboard_url=DASH)
    assert subject == "【橙色预警·重大】新预警工单：城东小区污水外溢"
    assert "<script>" not in body and "13812345678" not in body and "13812345678" not in text


def test_robot_messages_from_real_tickets_name_units_and_the_level_change(tmp_path, monkeypatch) -> None:
    """A ticket opened yellow then raised to red, sent through the outbox to the robot emulator: names, not ids."""
    from pydantic import SecretStr

    from alerts.notifiers.wecom import WecomRobotNotifier
    from alerts.ratelimit import RateLimiter
    from alerts.rules.base import Match
    from alerts.sender import OutboxSender
    from alerts.tickets import service
    from core.db.models import UnitRow
    from core.db.session import Database
    from core.records import Event, WarningLevel
    from tests.alerts.notifiers.wecom_emulator import WecomEmulator

    start = datetime.now(UTC).replace(microsecond=0)
    monkeypatch.setattr("alerts.messages._now", lambda: start)
    db = Database(f"sqlite:///{tmp_path / 'y.sqlite'}")
    db.migrate()
    with db.transaction() as s:
        s.add_all([UnitRow(id="gov-a7", name="A7县人民政府"), UnitRow(id="dept-environment", name="市生态环境局")])
    event = Event(id="ev-plant", title="A7县鑫源化工厂爆炸", first_seen=start, last_seen=start, size=40)
    with db.transaction() as s:
        for level in (WarningLevel.yellow, WarningLevel.red):
            service.open_or_update(
                s, event=event, now=start, lead_unit="gov-a7", cooperating_units=["dept-environment"],
                routing={"summary": "属地管理"},
                match=Match(rule="heat", event_id=event.id, level=level, reason="负面信息激增", at=start,
                            details={"samples": ["厂区传来巨响，联系人13812345678", "黑烟很大", "第三条"]}))
    keys = {"gov-a7": "a7-key-1", "office": "office-key-1", "dept-environment": "env-key-1"}
    with WecomEmulator(set(keys.values())) as emu:
        notifier = WecomRobotNotifier(base_url=emu.base_url, timeout_s=5, dashboard_url=DASH,
                                      keys={k: SecretStr(v) for k, v in keys.items()})
        sender = OutboxSender(db, {"wecom": notifier}, limiter=RateLimiter(per_minute=20), worker_id="t")
        sender.run_once(datetime.now(UTC) + timedelta(seconds=5))  # rows are due from when they were queued
        sent = [b["markdown"]["content"] for b in emu.delivered("a7-key-1")]
    db.close()
    assert len(sent) == 2, sent
    created, raised = sent if "新预警工单" in sent[0] else sent[::-1]
    for text in (created, raised):
        assert blen(text) <= MARKDOWN_LIMIT
        assert "> 主办单位：A7县人民政府　协办：市生态环境局\n" in text
        assert "gov-a7" not in text.replace("/#/tickets/", "") and "dept-environment" not in text
        assert "ev-plant" not in text and "**A7县鑫源化工厂爆炸**" in text
        assert "13812345678" not in text and "> 2. 黑烟很大" in text and "第三条" not in text
        assert re.search(r"\[查看工单\]\(https://yq\.example\.gov\.cn/#/tickets/T[\w-]+\)", text)
    assert "预警升级（黄→红）" in raised.splitlines()[0]
    # The sign deadline of the level in force, from the message time (deadlines.yaml: 黄 1 hour, 红 30 minutes).
    assert re.search(r"请于 1小时内签收（截至 \d+月\d+日 \d\d:\d\d）", created), created
    assert "请于 30分钟内签收" in raised, raised
