"""The Kafka soak's diagnostics: windowed counts and the test-server ping."""

from __future__ import annotations

import http.server
import threading
import time

from bench.soak_kafka import _ServerPing, per_window


def test_per_window_groups_times_by_window_and_drops_those_outside() -> None:
    windows = per_window([100.0, 150.0, 399.0, 400.0, 750.0, 99.0, 801.0], start=100.0, end=800.0, at=float)
    assert [len(w) for w in windows] == [3, 1, 1]  # [100, 400), [400, 700), [700, 800]
    assert windows[0] == [100.0, 150.0, 399.0]
    # A window that ends exactly on the last time keeps it in the last window, never a new empty one.
    assert [len(w) for w in per_window([700.0], start=100.0, end=700.0, at=float)] == [0, 1]
    assert per_window([], start=0.0, end=10.0, at=float) == [[]]
    # Items keep what they carry; only their time decides the window.
    samples = [(120.0, 0.3), (450.0, 2.5), (460.0, 1.0)]
    assert per_window(samples, start=100.0, end=700.0, at=lambda s: s[0]) == [[(120.0, 0.3)],
                                                                             [(450.0, 2.5), (460.0, 1.0)]]


class _SlowRoot(http.server.BaseHTTPRequestHandler):
    delay_s = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_server_ping_times_a_trivial_request_and_stops_when_told() -> None:
    _SlowRoot.delay_s = 0.2
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowRoot)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ping = _ServerPing(f"http://127.0.0.1:{server.server_address[1]}", every_s=0.05)
        ping.start()
        time.sleep(1.0)
        ping.stop_event.set()
        ping.join(5)
        assert not ping.is_alive()
        took = [t for _, t in ping.samples]
        assert 2 <= len(took) <= 6
        assert all(0.19 <= t < 5.0 for t in took)  # the server's delay is what is measured
    finally:
        server.shutdown()
        server.server_close()


def test_server_ping_records_an_unreachable_server_as_no_answer() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowRoot)
    port = server.server_address[1]
    server.server_close()  # nothing listens there now
    ping = _ServerPing(f"http://127.0.0.1:{port}", every_s=0.05)
    ping.start()
    time.sleep(0.3)
    ping.stop_event.set()
    ping.join(5)
    assert ping.samples and all(t == 30.0 for _, t in ping.samples)
