"""Rendering of notifications: exact layout, level colours, escaping of untrusted text, byte limits."""

from __future__ import annotations

import re

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


def note(kind: str = "ticket.created", **payload: object) -> Notification:
    base: dict[str, object] = {
        "id": "T-20261122-0001",
        "title": "城东小区污水外溢",
        "level": 3,
        "state": "new",
        "lead_unit": "gov-a3",
        "cooperating_units": ["env-b"],
        "deadlines": {"sign": "2026-11-22T02:00:00+00:00", "respond": "2026-11-23T00:00:00+00:00"},
        "reason": "24小时内负面信息52条",
        "event_id": "E-77",
        "samples": ["小区门口污水横流，臭味很重", "已经反映三天了没人管"],
    }
    base.update(payload)
    return Notification(id=f"n-{kind}", channel="wecom", target="gov-a3", kind=kind, subject="s",
                        payload=base, mentions=["zhangsan"])


EXPECTED_CREATED = (
    '### <font color="warning">【橙色预警·重大】</font>新预警工单\n'
    "**城东小区污水外溢**\n"
    "> 工单：T-20261122-0001　状态：待签收\n"
    "> 主办单位：gov-a3　协办：env-b\n"
    "> 预警原因：24小时内负面信息52条\n"
    "> 事件：E-77\n"
    '**处置时限**：<font color="warning">签收 2026-11-22 10:00；回应 2026-11-23 08:00</font>\n'
    "**代表性信息**（已脱敏）：\n"
    "> 1. 小区门口污水横流，臭味很重\n"
    "> 2. 已经反映三天了没人管\n"
    "\n[查看工单](https://yq.example.gov.cn/#/tickets/T-20261122-0001)\n"
    "<@zhangsan>"
)


def test_created_markdown_exact() -> None:
    assert render_markdown(note(), dashboard_url=DASH) == EXPECTED_CREATED


@pytest.mark.parametrize(
    ("kind", "label"),
    [("ticket.created", "新预警工单"), ("ticket.level", "预警等级变更"), ("ticket.remind", "催办提醒"),
     ("ticket.overdue", "工单已超时"), ("ticket.escalated", "工单升级督办"), ("ticket.closed", "工单已办结")],
)
def test_each_kind_has_its_heading(kind: str, label: str) -> None:
    text = render_markdown(note(kind), dashboard_url=DASH)
    assert text == EXPECTED_CREATED.replace("新预警工单", label, 1)


@pytest.mark.parametrize(("level", "font", "words"), [
    (4, "warning", "红色预警·特别重大"), (3, "warning", "橙色预警·重大"),
    (2, "info", "黄色预警·较大"), (1, "comment", "蓝色预警·一般"),
])
def test_level_colour_mapping(level: int, font: str, words: str) -> None:
    first = render_markdown(note(level=level), dashboard_url=DASH).splitlines()[0]
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
    assert text.count("<font") == 2
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
    samples = ["测" * 1000 for _ in range(5)]
    text = render_markdown(note(samples=samples, title="题" * 500), dashboard_url=DASH)
    assert blen(text) <= MARKDOWN_LIMIT
    assert TRUNCATED in text


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=800), max_size=4), st.integers(min_value=600, max_value=4096))
def test_any_sample_text_stays_within_limit_and_balanced(samples: list[str], limit: int) -> None:
    text = render_markdown(note(samples=samples), dashboard_url=DASH, limit=limit)
    assert blen(text) <= limit
    assert text.count("<font") == text.count("</font>") == 2
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
    assert blen(content) <= TEXT_LIMIT and TRUNCATED in content


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
