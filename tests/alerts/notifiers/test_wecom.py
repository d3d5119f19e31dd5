"""WecomRobotNotifier against the local emulator of the documented robot API."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from alerts.messages import render_markdown
from alerts.notifiers.base import Notification
from alerts.notifiers.wecom import RobotBroken, WecomRobotNotifier
from core.errors import PermanentSendError, RetryableSendError
from tests.alerts.notifiers.wecom_emulator import WecomEmulator

KEY_A3 = "a3-secret-693a91f2-7e57-4b7d"
KEY_OFFICE = "office-secret-1d2c3b4a"
DASH = "https://yq.example.gov.cn"


@pytest.fixture()
def emulator() -> Iterator[WecomEmulator]:
    with WecomEmulator({KEY_A3, KEY_OFFICE}) as emu:
        yield emu


def make(emulator: WecomEmulator, **keys: str) -> WecomRobotNotifier:
    mapping = keys or {"gov-a3": KEY_A3, "office": KEY_OFFICE}
    return WecomRobotNotifier(base_url=emulator.base_url, keys={k: SecretStr(v) for k, v in mapping.items()},
                              timeout_s=5, dashboard_url=DASH)


def note(target: str = "gov-a3", **payload: object) -> Notification:
    p: dict[str, object] = {"id": "T1", "title": "某路段积水严重", "level": 4, "state": "new", "lead_unit": target,
                            "deadlines": {"sign": "2026-11-22T02:00:00+00:00"}, "samples": ["积水到膝盖"]}
    p.update(payload)
    return Notification(id="n1", channel="wecom", target=target, kind="ticket.created", subject="s", payload=p)


def test_sends_payload_exact(emulator: WecomEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    monkeypatch.setattr("alerts.messages._now", lambda: datetime(2026, 11, 22, 1, 30, tzinfo=UTC))
    n = note(unit_names={"gov-a3": "A3区人民政府"})
    make(emulator).send(n)
    assert emulator.delivered(KEY_A3) == [
        {"msgtype": "markdown", "markdown": {"content": render_markdown(n, dashboard_url=DASH)}}
    ]
    content = emulator.delivered(KEY_A3)[0]["markdown"]["content"]
    assert content == (
        '### <font color="warning">【红色预警·特别重大】</font>新预警工单\n'
        "**某路段积水严重**\n"
        "> 主办单位：A3区人民政府\n"
        "> 工单：T1　状态：待签收\n"
        '<font color="warning">**请于 30分钟内签收（截至 11月22日 10:00）**</font>\n'
        "**代表性信息**（已脱敏）：\n"
        "> 1. 积水到膝盖\n"
        "\n[查看工单](https://yq.example.gov.cn/#/tickets/T1)"
    )
    assert emulator.delivered(KEY_OFFICE) == []


def test_office_target_uses_office_robot(emulator: WecomEmulator) -> None:
    make(emulator).send(note("office"))
    assert len(emulator.delivered(KEY_OFFICE)) == 1


def test_unknown_target_is_permanent_without_key(emulator: WecomEmulator) -> None:
    with pytest.raises(PermanentSendError) as info:
        make(emulator).send(note("gov-zz"))
    assert "gov-zz" in str(info.value)
    assert emulator.calls == []


def test_removed_robot_93000_is_broken_and_secret_free(emulator: WecomEmulator,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.remove_robot(KEY_A3)
    with pytest.raises(RobotBroken) as info:
        make(emulator).send(note())
    assert info.value.target_broken is True
    assert "robot for unit gov-a3" in str(info.value)
    assert KEY_A3 not in str(info.value) and emulator.base_url not in str(info.value)
    assert KEY_A3 not in caplog.text
    assert emulator.unknown_key_calls == 1


@pytest.mark.parametrize(("code", "error"), [
    (-1, RetryableSendError), (45009, RetryableSendError), (45033, RetryableSendError),
    (40008, PermanentSendError), (44004, PermanentSendError), (45002, PermanentSendError),
])
def test_errcodes_map_to_typed_errors(emulator: WecomEmulator, code: int, error: type[Exception],
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.inject(KEY_A3, code)
    with pytest.raises(error) as info:
        make(emulator).send(note())
    assert f"errcode {code}" in str(info.value)
    assert not isinstance(info.value, RobotBroken)
    assert KEY_A3 not in str(info.value) and KEY_A3 not in caplog.text


def test_emulator_rejects_what_the_api_rejects(emulator: WecomEmulator) -> None:
    url = f"{emulator.base_url}/cgi-bin/webhook/send?key={KEY_A3}"
    json_h = {"Content-Type": "application/json"}
    with httpx.Client(timeout=5) as c:
        bad_json = c.post(url, content=b"{not json", headers=json_h).json()
        assert bad_json["errmsg"].startswith("Warning: wrong json format")
        empty = {"msgtype": "markdown", "markdown": {"content": "  "}}
        assert c.post(url, json=empty).json()["errcode"] == 44004
        too_long = {"msgtype": "markdown", "markdown": {"content": "中" * 1366}}  # 4098 bytes
        assert c.post(url, json=too_long).json()["errcode"] == 45002
        just_fits = {"msgtype": "markdown", "markdown": {"content": "中" * 1365}}  # 4095 bytes
        assert c.post(url, json=just_fits).json()["errcode"] == 0
        text_long = {"msgtype": "text", "text": {"content": "a" * 2049}}
        assert c.post(url, json=text_long).json()["errcode"] == 45002
        assert c.post(url, json={"msgtype": "bogus", "bogus": {}}).json()["errcode"] == 40008
        assert c.post(url, content=json.dumps(empty), headers={"Content-Type": "text/plain"}).json()["errcode"] == 40008
        bad_key = c.post(f"{emulator.base_url}/cgi-bin/webhook/send?key=nope", json=just_fits).json()
        assert bad_key["errcode"] == 93000 and bad_key["errmsg"].startswith("invalid webhook url, hint: [")
        assert c.get(url).status_code == 405


def test_rate_limit_45009_after_20_calls_failed_ones_count(emulator: WecomEmulator) -> None:
    n = make(emulator)
    emulator.inject(KEY_A3, -1, -1)  # two failed calls count toward the 20
    for _ in range(2):
        with pytest.raises(RetryableSendError):
            n.send(note())
    for _ in range(18):
        n.send(note())
    with pytest.raises(RetryableSendError, match="45009"):
        n.send(note())
    n.send(note("office"))  # the limit is per robot
    assert len(emulator.delivered(KEY_A3)) == 18


def test_connection_refused_and_timeout_are_retryable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n = WecomRobotNotifier(base_url=f"http://127.0.0.1:{port}", keys={"gov-a3": SecretStr(KEY_A3)}, timeout_s=1)
    with pytest.raises(RetryableSendError) as info:
        n.send(note())
    assert KEY_A3 not in str(info.value) and str(port) not in str(info.value)
    assert info.value.__suppress_context__  # the httpx error (with the URL) is not chained
    # a server that accepts but never answers: a timeout
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        slow = WecomRobotNotifier(base_url=f"http://127.0.0.1:{srv.getsockname()[1]}",
                                  keys={"gov-a3": SecretStr(KEY_A3)}, timeout_s=0.3)
        with pytest.raises(RetryableSendError, match="timed out"):
            slow.send(note())
    assert KEY_A3 not in caplog.text


def test_httpx_request_log_has_no_key(emulator: WecomEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    make(emulator).send(note())
    assert "HTTP Request" in caplog.text  # httpx did log the request...
    assert KEY_A3 not in caplog.text  # ...with the key blanked out


@pytest.mark.parametrize("base_url", ["http://[::1", "htp://qyapi.example"])
def test_invalid_base_url_is_permanent(base_url: str) -> None:
    n = WecomRobotNotifier(base_url=base_url, keys={"gov-a3": SecretStr(KEY_A3)}, timeout_s=1)
    with pytest.raises(PermanentSendError, match="not a valid") as info:
        n.send(note())
    assert KEY_A3 not in str(info.value)
