"""A local stand-in for WeChat Work's robot webhook, faithful to /work/shared/reference/wecom-robot.md.

Checks what the real API checks (method, path, key, JSON body, msgtype and required fields, byte
limits, empty content), answers HTTP 200 with the documented ``errcode``/``errmsg`` shapes, limits
each key to 20 messages per sliding minute (failed calls count too) and can be told to answer
``-1`` (system busy) a few times. Every accepted message is recorded for payload-exact assertions.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LIMITS = {"markdown": 4096, "markdown_v2": 4096, "text": 2048}
HINT = "hint: [1732230000_{n}], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e={code}"


@dataclass
class Received:
    """One call that reached the emulator with a known key."""

    key: str
    body: Any
    errcode: int


class WecomEmulator:
    """Threaded HTTP server emulating ``POST /cgi-bin/webhook/send?key=KEY``."""

    def __init__(self, keys: set[str] | None = None, *, per_minute: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys: set[str] = set(keys or ())
        self.per_minute = per_minute
        self.clock = clock
        self.calls: list[Received] = []  # every call with a known key, accepted or not
        self.unknown_key_calls = 0
        self._window: dict[str, deque[float]] = defaultdict(deque)
        self._inject: dict[str, deque[int]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._n = 0
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

            def _answer(self, status: int, payload: dict[str, Any] | None = None) -> None:
                data = json.dumps(payload or {}, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                self._answer(405 if path == "/cgi-bin/webhook/send" else 404, {})

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if parts.path != "/cgi-bin/webhook/send":
                    self._answer(404, {})
                    return
                key = (parse_qs(parts.query).get("key") or [""])[0]
                self._answer(200, emulator._handle(key, self.headers.get("Content-Type", ""), raw))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    # ---- control ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> WecomEmulator:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WecomEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, key: str, *errcodes: int) -> None:
        """Answer the next calls for ``key`` with these errcodes (e.g. -1 busy) before behaving normally."""
        with self._lock:
            self._inject[key].extend(errcodes)

    def remove_robot(self, key: str) -> None:
        """Simulate a robot removed from its group: its key now answers 93000."""
        with self._lock:
            self.keys.discard(key)

    def delivered(self, key: str | None = None) -> list[Any]:
        """Bodies accepted (errcode 0), in order, optionally for one key."""
        with self._lock:
            return [c.body for c in self.calls if c.errcode == 0 and (key is None or c.key == key)]

    # ---- the API ----------------------------------------------------------------------------------

    def _error(self, code: int, msg: str) -> dict[str, Any]:
        self._n += 1
        return {"errcode": code, "errmsg": f"{msg}, {HINT.format(n=self._n, code=code)}"}

    def _handle(self, key: str, content_type: str, raw: bytes) -> dict[str, Any]:
        with self._lock:
            if not key or key not in self.keys:
                self.unknown_key_calls += 1
                return self._error(93000, "invalid webhook url")
            now = self.clock()
            window = self._window[key]
            while window and window[0] <= now - 60.0:
                window.popleft()
            window.append(now)  # every call counts, failed ones too
            body: Any = None
            result = self._check(key, content_type, raw, len(window))
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                body = raw
            self.calls.append(Received(key=key, body=body, errcode=result["errcode"]))
            return result

    def _check(self, key: str, content_type: str, raw: bytes, calls_in_window: int) -> dict[str, Any]:
        if calls_in_window > self.per_minute:
            return self._error(45009, "api freq out of limit")
        if self._inject[key]:
            code = self._inject[key].popleft()
            return self._error(code, "system busy" if code == -1 else "injected error")
        if not content_type.lower().startswith("application/json"):
            return self._error(40008, "Warning: wrong json format. invalid message type")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._error(40008, "Warning: wrong json format. invalid message type")
        if not isinstance(body, dict):
            return self._error(40008, "Warning: wrong json format. invalid message type")
        msgtype = body.get("msgtype")
        if msgtype not in LIMITS or not isinstance(body.get(msgtype), dict):
            return self._error(40008, "invalid message type")
        part = body[msgtype]
        content = part.get("content")
        if not isinstance(content, str) or not content.strip():
            return self._error(44004, "empty content")
        if len(content.encode("utf-8")) > LIMITS[msgtype]:
            return self._error(45002, f"content exceed max length {LIMITS[msgtype]}. invalid content size")
        if msgtype == "text":
            for name in ("mentioned_list", "mentioned_mobile_list"):
                value = part.get(name, [])
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    return self._error(40008, "Warning: wrong json format. invalid message type")
        return {"errcode": 0, "errmsg": "ok"}
