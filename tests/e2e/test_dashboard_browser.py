"""The dashboard in a real browser (Debian's Chromium via Playwright) over a real uvicorn server and embedded yuqing.

One analyst watches the alert wall while the test ingests an incident; the ticket appears live, the unit user of
the routed unit (gov-a7) signs it and drafts a response, an analyst and a leader approve it, the unit publishes it.
Untrusted post text (<script>, <img onerror>) must show as text and run nothing; a unit user of another unit gets
404 for the ticket and the page says so. Every page load is checked for JavaScript errors and CSP violations.
Screenshots of the overview and an event page go to ``test-artifacts/`` (git-ignored) for a human to look at.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.auth import passwords
from core.auth.service import create_token, create_user
from core.db.models import TargetStatusRow, TicketRow, UserRow
from ingest.base import RawRecord
from tests.support import BACKGROUND, embedded, incident_stream, post_record

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1366, "height": 768}
USERS = {  # username: (role, unit)
    "office": ("analyst", None), "leader": ("leader", None), "a7": ("handler", "gov-a7"), "a3": ("handler", "gov-a3"),
}
XSS_TEXT = ("A5区菜市场有人发帖<script>window.__xss = 1</script>称"
            "<img src=x onerror=\"window.__xss = 2\">摊位乱收费，另附<b>粗体</b>")
# Runs before any page script (and outside the page's CSP): records CSP violations the page cannot hide.
CSP_PROBE = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


def _password(name: str) -> str:
    return f"{name}-pass-2026"


@dataclass
class Server:
    """The running app: base URL, container, pipeline, and what the browser pages reported."""

    url: str
    container: Any
    pipeline: Any
    app: Any
    ingest_token: str = ""

    def ticket_of_incident(self) -> TicketRow | None:
        with self.container.db.transaction() as s:
            row = s.scalars(select(TicketRow).where(TicketRow.lead_unit == "gov-a7")).first()
            if row is not None:
                s.expunge(row)
            return row


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _shifted(records: list[dict[str, Any]], *, end: datetime) -> list[dict[str, Any]]:
    """The same records moved so the newest is at ``end`` (so the overview's last 24 h shows them)."""
    times = [datetime.fromisoformat(r["published_at"]) for r in records]
    delta = end - max(times)
    for r, t in zip(records, times, strict=True):
        r["published_at"] = (t + delta).isoformat()
    return records


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn on a free loopback port in a thread, over an embedded app with four users."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser itself is Debian's)")
    import uvicorn

    from api.app import create_app

    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)
    with embedded(tmp_path_factory.mktemp("dash") / "data") as (container, pipeline):
        container.sync_units()
        with container.db.transaction() as s:
            for name, (role, unit) in USERS.items():
                user = create_user(s, username=name, password=_password(name), role=role, unit_id=unit,
                                   display_name={"office": "舆情办张三", "leader": "王局长"}.get(name, ""))
                if role == "analyst":
                    token = create_token(s, user_id=user.id, name="ingest")  # machines feed with a token
        # One post now makes the workers load their models while the browser starts (not after the live ingest).
        pipeline.ingest([RawRecord(data=json.dumps(post_record("warm-up", BACKGROUND[0], base=datetime.now(UTC)),
                                                   ensure_ascii=False).encode(), origin="warm-up")])
        app = create_app(container, pipeline=pipeline)
        port = _free_port()
        uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
        thread = threading.Thread(target=uv.run, name="uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not uv.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        try:
            yield Server(url=f"http://127.0.0.1:{port}", container=container, pipeline=pipeline, app=app,
                         ingest_token=token)
        finally:
            uv.should_exit = True
            thread.join(timeout=10)
            passwords.configure()


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    """Debian's Chromium, headless (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def pool(browser: Any, server: Server) -> Iterator[dict[str, Session]]:
    """One browser context per user for the whole module (logging in once each keeps the tests fast)."""
    opened: dict[str, Session] = {}
    yield opened
    for s in opened.values():
        s.context.close()


@pytest.fixture
def sessions(browser: Any, server: Server, pool: dict[str, Session], request: pytest.FixtureRequest) -> Iterator[Any]:
    """Sessions of this test; on failure each page is saved to test-artifacts/failed-<test>-<user>.png."""
    used: list[Session] = []

    def open_session(username: str, *, expected: tuple[str, ...] = ()) -> Session:
        s = pool.get(username)
        if s is None:
            s = pool[username] = Session(browser, server, username)
        s.errors.clear()
        s.expected = expected
        used.append(s)
        return s

    yield open_session
    failed = getattr(getattr(request.node, "rep_call", None), "failed", False)
    for s in used:
        if failed:
            ARTIFACTS.mkdir(exist_ok=True)
            s.page.screenshot(path=str(ARTIFACTS / f"failed-{request.node.name}-{s.username}.png"), full_page=True)


class Session:
    """One user's browser context and page, with its console errors and CSP violations collected."""

    def __init__(self, browser: Any, server: Server, username: str, *, expected: tuple[str, ...] = ()) -> None:
        self.server = server
        self.context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")
        self.context.add_init_script(CSP_PROBE)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.expected = expected  # console errors this session provokes on purpose (e.g. a 404)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("dialog", lambda d: (self.errors.append(f"unexpected dialog: {d.message}"), d.dismiss()))
        self.username = username
        self.logged_in = False

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and not any(e in msg.text for e in self.expected):
            self.errors.append(f"console: {msg.text}")

    def login(self) -> None:
        """Log in through the form (once per module; later calls just open the overview)."""
        page = self.page
        if self.logged_in:
            self.go("#/overview", "#kpi-total")
            return
        page.goto(self.server.url + "/")
        page.wait_for_selector("#username")
        page.fill("#username", self.username)
        page.fill("#password", _password(self.username))
        page.click("form.login button[type=submit]")
        page.wait_for_selector("#who:not(:empty)")
        page.wait_for_function("location.hash === '#/overview'")
        self.logged_in = True

    def go(self, hash_: str, ready: str) -> None:
        self.page.evaluate("h => { location.hash = h; }", hash_)
        self.page.wait_for_selector(ready)

    def check(self) -> None:
        """No JS error, no CSP violation so far."""
        csp = self.page.evaluate("window.__csp || []")
        assert not csp, f"CSP violations for {self.username}: {csp}"
        assert not self.errors, f"browser errors for {self.username}: {self.errors}"

    def close(self) -> None:
        """Check for errors at the end of a test; the ``pool`` fixture closes the context."""
        self.check()


def _ingest(server: Server, records: list[dict[str, Any]]) -> None:
    r = httpx.post(f"{server.url}/api/v1/ingest", content=json.dumps(records, ensure_ascii=False).encode(),
                   headers={"Content-Type": "application/json", "Authorization": f"Bearer {server.ingest_token}"},
                   timeout=30)
    assert r.status_code == 202, r.text
    assert r.json()["dead_lettered"] == 0, r.text


def _state(session: Session) -> str:
    return session.page.inner_text("#ticket-state")


def _click_action(session: Session, selector: str, expect_state: str | None = None) -> None:
    page = session.page
    page.click(selector)
    if expect_state is not None:
        page.wait_for_function("s => document.querySelector('#ticket-state')?.textContent === s", arg=expect_state)


def test_live_wall_event_and_ticket_workflow(server: Server, sessions: Any) -> None:
    office = sessions("office")
    office.login()
    office.page.wait_for_selector("#kpi-total")
    office.go("#/alerts", "#wall")
    assert office.page.locator("#wall [data-ticket]").count() == 0

    _ingest(server, _shifted(incident_stream(20), end=datetime.now(UTC) - timedelta(minutes=5)))

    # The new ticket arrives over SSE: no reload, no navigation.
    card = office.page.wait_for_selector("#wall [data-ticket]", timeout=60_000)
    ticket_id = card.get_attribute("data-ticket")
    assert ticket_id and ticket_id.startswith("T")
    assert "A7县人民政府" in card.inner_text()
    level = int(card.get_attribute("data-level") or 0)
    assert level >= 2 and f"level-{level}" in (card.get_attribute("class") or "")
    # The per-unit count agrees with the API (computed in the browser from the open tickets).
    api_open = office.page.request.get(f"{server.url}/api/v1/tickets?open=true&unit=gov-a7&limit=500").json()["total"]
    assert api_open >= 1
    office.page.wait_for_function(
        "n => document.querySelector(\"#unit-counts tr[data-unit='gov-a7'] td.open\")?.textContent === String(n)",
        arg=api_open)

    # The event page: charts drawn, representative posts, the ticket with its history.
    office.page.click(f"#wall [data-ticket='{ticket_id}']")  # the wall redraws: never keep element handles
    office.page.wait_for_selector("#ticket-state")
    office.page.click("a#ticket-event")
    office.page.wait_for_selector("#chart-event canvas")
    office.page.wait_for_selector("#event-posts .post")
    assert "化工" in office.page.inner_text("#event-posts")
    assert office.page.locator("#event-ticket .history li").count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    office.page.wait_for_timeout(300)  # charts finish their first paint
    office.page.screenshot(path=str(ARTIFACTS / "dashboard-event.png"), full_page=True)

    # The overview with the incident in the last 24 hours.
    office.go("#/overview?range=24h", "#chart-trend canvas")
    office.page.wait_for_selector("#hot-events tr .spark canvas")
    day = {"from": (datetime.now(UTC) - timedelta(days=1)).isoformat(), "to": datetime.now(UTC).isoformat()}
    expected = office.page.request.get(f"{server.url}/api/v1/stats/overview", params=day).json()["total"]
    assert expected >= 26
    assert int(office.page.inner_text("#kpi-total .value")) == expected
    office.page.wait_for_timeout(300)
    office.page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

    # The unit user signs and drafts a response.
    unit = sessions("a7")
    unit.login()
    unit.go(f"#/tickets/{ticket_id}", "#ticket-state")
    assert _state(unit) == "预警"
    unit.page.click("button[data-action=acknowledge]")  # 签收 asks for confirmation first
    assert "确认由本单位签收" in unit.page.inner_text("form[data-form=acknowledge]")
    assert _state(unit) == "预警"
    _click_action(unit, "form[data-form=acknowledge] button[type=submit]", "已签收")
    unit.page.fill("textarea#response-text", "A7县已组织应急、环保部门赶赴现场处置，伤员均已送医，空气监测正在进行。")
    unit.page.click("button[data-action=draft_response]")
    unit.page.wait_for_selector(".response[data-state=draft]")
    # The drafter cannot approve their own text.
    assert unit.page.locator(".response button[data-action=approve]").count() == 0
    # The unit asks for more time on a deadline (an inline form, no prompt()); the office decides below.
    unit.page.click("button[data-action=request_extension]")
    form = "form[data-form=request_extension]"
    unit.page.select_option(f"{form} select[name=stage]", "close")
    unit.page.fill(f"{form} input[name=hours]", "12")
    unit.page.fill(f"{form} input[name=reason]", "伤员信息仍在核实")
    unit.page.click(f"{form} button[type=submit]")
    unit.page.wait_for_selector("#ticket-extension:has-text('待审批')")

    # Two distinct approvers: the analyst and the leader.
    office.go(f"#/tickets/{ticket_id}", ".response button[data-action=approve]")
    office.page.click("button[data-action=approve_extension]")
    office.page.wait_for_selector("#ticket-extension:has-text('已批准')")
    office.page.click(".response button[data-action=approve]")
    office.page.wait_for_selector(".response .approvers:has-text('office')")
    assert office.page.locator(".response button[data-action=publish]").count() == 0  # one approval is not enough
    leader = sessions("leader")
    leader.login()
    leader.go(f"#/tickets/{ticket_id}", ".response button[data-action=approve]")
    leader.page.click(".response button[data-action=approve]")
    leader.page.wait_for_selector(".response[data-state=approved]")

    # The unit publishes: the ticket moves to 已回应 and the history says so.
    unit.go("#/tickets", ".board")
    unit.go(f"#/tickets/{ticket_id}", ".response button[data-action=publish]")
    _click_action(unit, ".response button[data-action=publish]", "已回应")
    assert unit.page.locator(".response[data-state=published]").count() == 1
    assert "发布回应" in unit.page.inner_text("#ticket-history")
    unit.page.screenshot(path=str(ARTIFACTS / "dashboard-ticket.png"), full_page=True)

    # The board puts it in the 回应 column for the analyst.
    office.go("#/tickets", f".column[data-state=responded] [data-ticket='{ticket_id}']")
    office.page.screenshot(path=str(ARTIFACTS / "dashboard-board.png"))
    for s in (office, unit, leader):
        s.close()


def test_untrusted_post_text_is_shown_as_text_and_runs_nothing(server: Server, sessions: Any) -> None:
    now = datetime.now(UTC)
    _ingest(server, [post_record("xss-1", XSS_TEXT, source="forum", base=now - timedelta(minutes=2),
                                 url="https://bbs.example.cn/t/1?a=<b>", title="<i>标题</i>")])
    assert server.pipeline.wait_idle(timeout_s=60)
    server.container.post_store.refresh()
    office = sessions("office")
    office.login()
    office.go("#/search?q=摊位", "#search-results .post")
    post = office.page.locator("#search-results .post").first
    text = post.inner_text()
    assert "<script>window.__xss = 1</script>" in text
    assert '<img src=x onerror="window.__xss = 2">' in text and "<b>粗体</b>" in text and "<i>标题</i>" in text
    assert post.locator("img, script, b, i").count() == 0
    # The original link is kept, and only http(s) links are ever made clickable.
    hrefs = post.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert all(not (h or "").startswith("javascript:") for h in hrefs)
    office.page.wait_for_timeout(200)  # give an injected handler the chance to run
    assert office.page.evaluate("window.__xss") is None
    office.close()


def test_unit_user_of_another_unit_cannot_open_the_ticket(server: Server, sessions: Any) -> None:
    ticket = server.ticket_of_incident()
    if ticket is None:  # run on its own: make the incident first
        _ingest(server, _shifted(incident_stream(20), end=datetime.now(UTC)))
        assert server.pipeline.wait_idle(timeout_s=90)
        ticket = server.ticket_of_incident()
    assert ticket is not None
    assert "gov-a3" not in (ticket.cooperating_units or [])
    other = sessions("a3", expected=("404",))
    other.login()
    response = other.page.request.get(f"{server.url}/api/v1/tickets/{ticket.id}")
    assert response.status == 404
    other.go(f"#/tickets/{ticket.id}", "#main .error")
    assert "不存在" in other.page.inner_text("#main .error")
    assert other.page.locator("#ticket-state").count() == 0
    # Nor is it on the other unit's wall or board.
    other.go("#/tickets", ".board")
    assert other.page.locator(f"[data-ticket='{ticket.id}']").count() == 0
    other.close()


def test_watch_lists_and_admin_pages_by_role(server: Server, sessions: Any) -> None:
    office = sessions("office", expected=("422",))  # the bad expression below is answered 422
    office.login()
    office.go("#/watchlists", "#main h1")
    office.page.fill("input[aria-label=方案名称]", "A7化工")
    office.page.fill("textarea[aria-label=表达式]", "(A7县 | 化工园区) & (爆炸 | 起火) & !演习")
    office.page.click("text=预览近7天命中")
    office.page.wait_for_selector("#watch-preview p:has-text('命中')")
    preview = office.page.request.post(
        f"{server.url}/api/v1/watchlists/preview", data={"expression": "(A7县 | 化工园区) & (爆炸 | 起火) & !演习"},
        headers={"X-CSRF-Token": next(c["value"] for c in office.context.cookies() if c["name"] == "yuqing_csrf")},
    ).json()
    assert f"命中 {preview['total']} 条" in office.page.inner_text("#watch-preview")
    assert office.page.locator("#watch-preview .post").count() == len(preview["items"])
    office.page.click("button:text-is('保存')")
    office.page.wait_for_selector("tr[data-watchlist='A7化工']")
    # A bad expression is refused with the server's reason, shown in the page.
    office.page.fill("textarea[aria-label=表达式]", "(A7县 &")
    office.page.click("text=预览近7天命中")
    office.page.wait_for_selector("#watch-preview .error")

    with server.container.db.transaction() as s:  # what the sender records after WeChat Work answers 93000
        s.merge(TargetStatusRow(channel="wecom", target="gov-a7", broken=True, reason="errcode 93000 机器人已失效",
                                since=datetime.now(UTC)))
    office.go("#/admin", "tr[data-rule='负面热度']")
    assert "errcode 93000" in office.page.inner_text("#broken-targets")
    for name in USERS:
        assert office.page.locator(f"tr[data-user='{name}']").count() == 1
    assert "A7县人民政府" in office.page.inner_text("tr[data-user='a7']")
    assert "argon2" not in office.page.content()  # never a password hash
    office.page.screenshot(path=str(ARTIFACTS / "dashboard-admin.png"), full_page=True)

    leader = sessions("leader")
    leader.login()
    leader.go("#/watchlists", "tr[data-watchlist='A7化工']")
    assert leader.page.locator("textarea[aria-label=表达式]").count() == 0  # leaders read, analysts edit

    unit = sessions("a7")
    unit.login()
    assert unit.page.locator("nav a[data-route=admin]").is_hidden()
    assert unit.page.request.get(f"{server.url}/api/v1/dashboard/users").status == 403
    users = office.page.request.get(f"{server.url}/api/v1/dashboard/users").json()["items"]
    assert {u["username"] for u in users} >= set(USERS) and all("password_hash" not in u for u in users)
    for s in (office, leader, unit):
        s.close()


def test_escalation_reaches_the_wall_live(server: Server, sessions: Any) -> None:
    """A yellow warning shows up, then the same ticket turns red: the card changes colour and the alarm sounds."""
    from alerts.rules.base import Match
    from alerts.tickets import service as ticket_service
    from core.records import Event, WarningLevel

    office = sessions("office")
    office.login()
    office.go("#/alerts", "#wall-units")
    now = datetime.now(UTC)
    event = Event(id="ev-escalation-test", title="A7县某小区供水中断", first_seen=now, last_seen=now)

    def fire(level: WarningLevel) -> str:
        # What the event stage does for a rule match, and the announcement it makes (see alerts/worker.py).
        with server.container.db.transaction() as s:
            t, created = ticket_service.open_or_update(
                s, event=event, match=Match(rule="test", event_id=event.id, level=level, reason="停水投诉增多", at=now),
                lead_unit="gov-a7", cooperating_units=[], routing={"summary": "属地管理"}, now=now)
            change = {"ticket_id": t.id, "event_id": event.id, "level": t.level, "state": t.state,
                      "created": created, "at": now.isoformat()}
        server.app.state.broadcaster.publish(change)
        return str(change["ticket_id"])

    ticket_id = fire(WarningLevel.yellow)
    card = f"#wall [data-ticket='{ticket_id}']"
    office.page.wait_for_selector(f"{card}.level-2.fresh")
    assert "新预警" in office.page.inner_text("#toast")
    assert "alarm" not in (office.page.get_attribute("body", "class") or "")  # yellow: no alarm

    fire(WarningLevel.red)
    office.page.wait_for_selector(f"{card}.level-4.fresh")
    assert "预警升级" in office.page.inner_text("#toast")
    assert "alarm" in (office.page.get_attribute("#toast", "class") or "")
    assert "alarm" in (office.page.get_attribute("body", "class") or "")
    office.close()


def _new_context_page(browser: Any, server: Server, **kw: Any) -> tuple[Any, Any, list[str]]:
    """A fresh context (not logged in) whose page errors are collected."""
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", **kw)
    context.add_init_script(CSP_PROBE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" and "401" not in m.text
            else None)
    return context, page, errors


def _open_incident_ticket(server: Server) -> TicketRow:
    ticket = server.ticket_of_incident()
    if ticket is None:  # run on its own: make the incident first
        _ingest(server, _shifted(incident_stream(20), end=datetime.now(UTC)))
        assert server.pipeline.wait_idle(timeout_s=90)
        ticket = server.ticket_of_incident()
    assert ticket is not None
    return ticket


def test_robot_link_survives_the_login(server: Server, browser: Any) -> None:
    """A 查看工单 link opened without a session lands on the login page and, after login, on that ticket."""
    ticket = _open_incident_ticket(server)
    context, page, errors = _new_context_page(browser, server, viewport=VIEWPORT)
    try:
        page.goto(f"{server.url}/#/tickets/{ticket.id}")
        page.wait_for_selector("#username")
        assert "next=" in page.evaluate("location.hash")
        assert page.locator("#login-next").count() == 1
        page.fill("#username", "a7")
        page.fill("#password", _password("a7"))
        page.click("form.login button[type=submit]")
        page.wait_for_function("h => location.hash === h", arg=f"#/tickets/{ticket.id}")
        page.wait_for_selector("#ticket-state")
        # History shows people's names and Chinese actions, never raw keys or routing JSON.
        history = page.inner_text("#ticket-history")
        assert "系统" in history and "raise_level" not in history and "system" not in history
        routing = page.inner_text("#routing")
        assert "strategy" not in routing and "dept-" not in routing and "派单方式" in routing
        # A foreign hash in next= is ignored (no open redirect through the login page).
        page.evaluate("() => { location.hash = '#/login?next=' + encodeURIComponent('https://evil.example/'); }")
        assert page.evaluate("loginTarget()") == "#/overview"
        assert not errors, errors
    finally:
        context.close()


def test_handler_todo_confirmation_and_assignment(server: Server, sessions: Any) -> None:
    """A handler's 待办: lead tickets first; 开始处置 asks first and gives a task to the cooperating unit (交办)."""
    from alerts.rules.base import Match
    from alerts.tickets import service as ticket_service
    from core.records import Event, WarningLevel

    now = datetime.now(UTC)
    event = Event(id="ev-todo-test", title="A7县某镇自来水发黄", first_seen=now, last_seen=now)
    with server.container.db.transaction() as s:
        t, _ = ticket_service.open_or_update(
            s, event=event, match=Match(rule="test", event_id=event.id, level=WarningLevel.yellow, reason="投诉增多",
                                        at=now),
            lead_unit="gov-a7", cooperating_units=["gov-a3"], routing={"summary": "属地管理"}, now=now)
        tid = t.id
    a7 = sessions("a7")
    a7.login()
    a7.go("#/todo", "#todo-lead tr[data-ticket]")
    assert a7.page.locator(f"#todo-lead tr[data-ticket='{tid}']").count() == 1
    a7.go(f"#/tickets/{tid}", "#ticket-state")
    a7.page.click("button[data-action=acknowledge]")
    _click_action(a7, "form[data-form=acknowledge] button[type=submit]", "已签收")
    a7.page.click("button[data-action=assess]")
    form = "form[data-form=assess]"
    assert a7.page.locator(f"{form} label.field").count() == 3  # every field has a visible label
    a7.page.fill(f"{form} textarea[name=facts]", "水厂管网冲洗导致，已停止冲洗")
    a7.page.fill(f"{form} input[name=risk]", "低")
    _click_action(a7, f"{form} button[type=submit]", "研判中")
    a7.page.click("button[data-action=start_handling]")
    form = "form[data-form=start_handling]"
    assert "确认开始处置" in a7.page.inner_text(form)
    a7.page.click(f"{form} button[data-cancel=start_handling]")  # cancel changes nothing
    assert _state(a7) == "研判中" and a7.page.locator(form).is_hidden()
    a7.page.click("button[data-action=start_handling]")
    assert "A3区人民政府" in a7.page.inner_text(form)  # the task box names the unit, not gov-a3
    a7.page.fill(f"{form} textarea", "请A3区水务站协助检测末梢水质")
    _click_action(a7, f"{form} button[type=submit]", "处置中")
    assert "交办 A3区人民政府：请A3区水务站协助检测末梢水质" in a7.page.inner_text("#ticket-history")

    a3 = sessions("a3")
    a3.login()
    a3.go("#/todo", f"#todo-coop tr[data-ticket='{tid}']")
    row = a3.page.inner_text(f"#todo-coop tr[data-ticket='{tid}']")
    assert "协办" in row and "请A3区水务站协助检测末梢水质" in row
    ARTIFACTS.mkdir(exist_ok=True)
    a3.page.screenshot(path=str(ARTIFACTS / "dashboard-todo-handler.png"), full_page=True)
    for s in (a7, a3):
        s.close()


def test_approver_is_told_a_draft_waits_and_the_open_ticket_refreshes(server: Server, sessions: Any) -> None:
    from alerts.rules.base import Match
    from alerts.tickets import service as ticket_service
    from core.records import Event, WarningLevel

    now = datetime.now(UTC)
    event = Event(id="ev-review-test", title="A7县某校食堂投诉", first_seen=now, last_seen=now)
    with server.container.db.transaction() as s:
        t, _ = ticket_service.open_or_update(
            s, event=event, match=Match(rule="test", event_id=event.id, level=WarningLevel.yellow, reason="投诉",
                                        at=now),
            lead_unit="gov-a7", cooperating_units=[], routing={"summary": "属地管理"}, now=now)
        tid = t.id
    leader = sessions("leader")
    leader.login()
    leader.go(f"#/tickets/{tid}", "#ticket-state")
    assert _state(leader) == "预警"
    a7 = sessions("a7")
    a7.login()
    a7.go(f"#/tickets/{tid}", "#ticket-state")
    a7.page.click("button[data-action=acknowledge]")
    _click_action(a7, "form[data-form=acknowledge] button[type=submit]", "已签收")
    # The leader's open page follows without a reload.
    leader.page.wait_for_function("() => document.querySelector('#ticket-state')?.textContent === '已签收'")
    a7.page.fill("textarea#response-text", "已责成教育部门进校核查，结果将于今日公布。")
    a7.page.click("button[data-action=draft_response]")
    a7.page.wait_for_selector(".response[data-state=draft]")
    leader.page.wait_for_selector("#toast:has-text('待您审核')")
    leader.page.wait_for_selector("#todo-badge:not(.hidden)")
    leader.go("#/todo", f"#todo-review [data-ticket='{tid}']")
    assert "a7 起草" in leader.page.inner_text(f"#todo-review [data-ticket='{tid}']")
    leader.page.screenshot(path=str(ARTIFACTS / "dashboard-todo-approver.png"), full_page=True)
    for s in (leader, a7):
        s.close()


def test_wall_screen_fits_1920_by_1080_and_refreshes(server: Server, browser: Any) -> None:
    """大屏: everything on one 1920×1080 screen (nothing scrolls), map and word cloud drawn, the wall pages."""
    from alerts.rules.base import Match
    from alerts.tickets import service as ticket_service
    from core.records import Event, WarningLevel

    _open_incident_ticket(server)
    now = datetime.now(UTC)
    with server.container.db.transaction() as s:  # enough open tickets that the wall must page
        for i in range(9):
            event = Event(id=f"ev-screen-{i}", title=f"A{i % 9 + 1}区测试事件{i}", first_seen=now, last_seen=now)
            ticket_service.open_or_update(
                s, event=event, match=Match(rule="test", event_id=event.id, level=WarningLevel.blue, reason="测试",
                                            at=now),
                lead_unit="gov-a5", cooperating_units=[], routing={}, now=now)
    context, page, errors = _new_context_page(browser, server, viewport={"width": 1920, "height": 1080})
    try:
        page.goto(server.url + "/#/screen")
        page.wait_for_selector("#username")
        page.fill("#username", "office")
        page.fill("#password", _password("office"))
        page.click("form.login button[type=submit]")
        page.wait_for_selector("#screen-kpis .screen-kpi")
        page.wait_for_selector("#screen-map svg .district")
        assert page.locator("#screen-map .district").count() == 9
        assert int(page.inner_text("#screen-total .value")) >= 1
        assert page.locator("#screen-cloud .word").count() >= 5
        assert 1 <= page.locator("#screen-wall [data-ticket]").count() <= 5
        assert "页" in page.inner_text("#screen-wall-page")
        size = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        assert size[0] <= 1920 and size[1] <= 1080, size
        # Every panel's content stays inside the screen.
        bottom = page.evaluate("() => Math.max(...[...document.querySelectorAll('.screen-panel')].map("
                               "e => e.getBoundingClientRect().bottom))")
        assert bottom <= 1080
        # KPIs refresh live: new posts raise today's total without a reload.
        before = int(page.inner_text("#screen-total .value"))
        _ingest(server, [post_record(f"screen-{i}", f"A5区星港街道路灯坏了第{i}天", base=datetime.now(UTC))
                         for i in range(3)])
        assert server.pipeline.wait_idle(timeout_s=60)
        server.container.post_store.refresh()
        page.wait_for_timeout(11_000)  # the shared overview is cached for 10 s
        page.evaluate("refreshScreen()")
        page.wait_for_function("n => Number(document.querySelector('#screen-total .value').textContent) > n",
                               arg=before, timeout=20_000)
        page.wait_for_timeout(300)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-screen-1920x1080.png"))
        assert not page.evaluate("window.__csp || []")
        assert not errors, errors
    finally:
        context.close()


def test_alert_wall_pages_instead_of_growing(server: Server, sessions: Any) -> None:
    office = sessions("office")
    office.login()
    office.go("#/alerts", "#wall [data-ticket]")
    total = office.page.request.get(f"{server.url}/api/v1/tickets?open=true&limit=500").json()["total"]
    shown = office.page.locator("#wall [data-ticket]").count()
    assert shown == min(total, 12)
    if total > 12:
        office.page.click("#wall-pager button[data-page=next]")
        office.page.wait_for_selector("#wall-page:has-text('第 2')")
    height = office.page.evaluate("document.documentElement.scrollHeight")
    assert height < 2000, height
    office.page.screenshot(path=str(ARTIFACTS / "dashboard-wall.png"))
    office.close()


def test_admin_sees_loud_warnings_reports_dead_letters_and_manages_users(server: Server, browser: Any) -> None:
    from core.auth.service import create_user

    with server.container.db.transaction() as s:
        if s.scalar(select(UserRow.id).where(UserRow.username == "root")) is None:
            create_user(s, username="root", password=_password("root"), role="admin", display_name="管理员")
    _ingest_bad = httpx.post(f"{server.url}/api/v1/ingest", content=b'[{"source": "weibo", "external_id": "bad"}]',
                             headers={"Content-Type": "application/json",
                                      "Authorization": f"Bearer {server.ingest_token}"}, timeout=30)
    assert _ingest_bad.json()["dead_lettered"] == 1
    context, page, errors = _new_context_page(browser, server, viewport=VIEWPORT, accept_downloads=True)
    try:
        page.goto(server.url + "/#/admin")
        page.wait_for_selector("#username")
        page.fill("#username", "root")
        page.fill("#password", _password("root"))
        page.click("form.login button[type=submit]")
        page.wait_for_selector("#notify-warnings")
        assert "未配置任何通知渠道" in page.inner_text("#notify-warnings")
        assert "未启用" in page.inner_text("#channels")
        assert "text" in page.inner_text("#dead-letters")  # the reason names the missing field
        assert "A7县人民政府" in page.inner_text("#accountability")
        with page.expect_download() as dl:
            page.click("#report-csv")
        path = dl.value.path()
        assert path is not None and "单位名称" in Path(path).read_text(encoding="utf-8-sig")
        # Create a handler, then disable them.
        page.fill("#user-form input[name=username]", "a9")
        page.fill("#user-form input[name=display_name]", "钱科员")
        page.select_option("#user-form select[name=role]", "handler")
        page.select_option("#user-form select[name=unit_id]", "gov-a9")
        page.fill("#user-form input[name=password]", _password("a9"))
        page.click("#user-form button[type=submit]")
        page.wait_for_selector("tr[data-user='a9']")
        assert "A9市人民政府" in page.inner_text("tr[data-user='a9']")
        page.click("button[data-toggle='a9']")
        page.wait_for_selector("tr[data-user='a9'] td.overdue:has-text('停用')")
        login = httpx.post(f"{server.url}/api/v1/auth/login", json={"username": "a9", "password": _password("a9")},
                           timeout=10)
        assert login.status_code == 401
        page.screenshot(path=str(ARTIFACTS / "dashboard-admin-root.png"), full_page=True)
        assert not errors, errors
    finally:
        context.close()


def test_phone_top_bar_and_board_fit_390px(server: Server, browser: Any) -> None:
    context, page, errors = _new_context_page(browser, server, viewport={"width": 390, "height": 844},
                                              is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        page.goto(server.url + "/")
        page.wait_for_selector("#username")
        page.fill("#username", "a7")
        page.fill("#password", _password("a7"))
        page.click("form.login button[type=submit]")
        page.wait_for_selector("#kpi-total")
        screens = (("#/tickets", ".board", "phone-board"), ("#/overview", "#kpi-total", "phone-overview"),
                   ("#/todo", "#todo-lead", "phone-todo"))
        for hash_, ready, shot in screens:
            page.evaluate("h => { location.hash = h; }", hash_)
            page.wait_for_selector(ready)
            page.wait_for_timeout(200)
            width = page.evaluate("document.documentElement.scrollWidth")
            wide = page.evaluate("() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect()"
                                 ".right > 392 && e.getBoundingClientRect().width > 0 && !e.closest('.board, nav'))"
                                 ".slice(0, 8).map(e => e.tagName + '.' + e.className + '#' + e.id)")
            assert width <= 390, (hash_, width, wide)  # nothing pushes the page sideways
            bar = page.evaluate("() => document.querySelector('.topbar').getBoundingClientRect().toJSON()")
            assert bar["width"] <= 390 and bar["height"] <= 110, bar
            assert page.locator("#logout").is_visible()
            page.screenshot(path=str(ARTIFACTS / f"dashboard-{shot}-390.png"))
        # The board scrolls sideways inside itself, one column per swipe.
        page.evaluate("() => { location.hash = '#/tickets'; }")
        page.wait_for_selector(".board .column")
        col = page.evaluate("() => document.querySelector('.board .column').getBoundingClientRect().width")
        assert 250 <= col <= 390
        assert not errors, errors
    finally:
        context.close()


def test_api_docs_load_offline(server: Server, browser: Any) -> None:
    """/docs and /redoc with every request outside the server refused: both still render the API."""
    context, page, _errors = _new_context_page(browser, server, viewport=VIEWPORT)
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        context.route("**/*", only_local)
        page.goto(server.url + "/docs")
        page.wait_for_selector(".swagger-ui .opblock-tag", timeout=30_000)
        assert page.locator(".swagger-ui .authorize").count() == 1  # the security scheme is declared
        page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
        page.goto(server.url + "/redoc")
        page.wait_for_selector("redoc [role=menuitem], .menu-content", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "api-redoc.png"))
        assert outside == [], outside
    finally:
        context.close()
