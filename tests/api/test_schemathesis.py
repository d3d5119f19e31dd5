"""Schema-driven fuzzing (schemathesis) of every operation, with every check, against a real HTTP server.

An embedded app (no workers) on a temporary data dir, served by uvicorn on a free loopback port, fuzzed by
the ``st`` command line exactly as an operator would run it: all checks (``--checks all``: no 5xx, status
codes, content types, headers and bodies as documented, schema-violating requests refused, schema-valid
ones accepted, Allow headers, auth really enforced...), all phases (examples, coverage, fuzzing,
stateful), as an admin with an API token. Bounded: ``YUQING_FUZZ_EXAMPLES`` cases per operation (default
20; the whole run takes well under a minute), a fixed seed so a failure reproduces.

Two things are configured rather than generated, each for a stated reason:
- ``DELETE /api/v1/auth/tokens/{token_id}`` runs in a second pass with a token of its own: in one stateful
  pass the fuzzer would list the tokens, delete its own and fail every later request with 401.
- A watch-list expression has a grammar (``(A3区 | A4区) & 爆炸``) that JSON Schema cannot state, so a
  string the schema allows may still be a bad expression: 422 counts as a correct answer there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("schemathesis", minversion="4.0", reason="needs schemathesis 4: pip install 'schemathesis>=4,<5'")
uvicorn = pytest.importorskip("uvicorn")

from api.app import create_app  # noqa: E402
from api.observability import TokenBucket  # noqa: E402
from tests.support import embedded  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("YUQING_FUZZ_EXAMPLES", "20"))
SEED = 20261205
CONFIG = """
[[operations]]
include-path-regex = "^/api/v1/watchlists"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""
TOKEN_DELETE = "/api/v1/auth/tokens/{token_id}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    from core.auth import passwords
    from core.auth.service import create_token, create_user

    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)  # fast hashing for tests only
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    # Workers are not started: generated posts stay on the bus, and no model load slows the run.
    with embedded(tmp, start=False) as (container, pipeline):
        container.sync_units()
        tokens: dict[str, str] = {}
        with container.db.transaction() as s:
            for name in ("fuzz-admin", "fuzz-token-owner"):
                user = create_user(s, username=name, password=f"{name}-password", role="admin")
                tokens[name] = create_token(s, user_id=user.id, name="fuzz")
        app = create_app(container, pipeline=pipeline)
        for key in list(app.state.rate_limits):  # fuzzing is not an attack: let every request through
            app.state.rate_limits[key] = TokenBucket(per_minute=1e6, burst=1_000_000)
        port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, name="fuzz-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not srv.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the fuzzed server did not start"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}", tokens
        finally:
            srv.should_exit = True
            thread.join(30)
    passwords.configure()


def _st(base: str, token: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip(f"the schemathesis command line is not installed next to {sys.executable}")
    command = [str(st), "--config-file", str(config), "run", f"{base}/openapi.json", "--checks", "all",
               "-H", f"Authorization: Bearer {token}", "--max-examples", str(EXAMPLES), "--seed", str(SEED),
               "--workers", "1", "--request-timeout", "30", "--exclude-path", "/api/v1/stream/tickets",
               "--suppress-health-check", "all", *args]
    env = dict(os.environ, NO_COLOR="1", SCHEMATHESIS_TELEMETRY="false")
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=False,
                          cwd=config.parent)


def test_every_operation_passes_every_check(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, tokens = server
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    main = _st(base, tokens["fuzz-admin"], config, "--exclude-path", TOKEN_DELETE)
    assert main.returncode == 0, main.stdout[-20_000:] + main.stderr[-2000:]
    assert "Tested: " in main.stdout, main.stdout[-2000:]
    revoke = _st(base, tokens["fuzz-token-owner"], config, "--include-path", TOKEN_DELETE,
                 "--phases", "examples,coverage,fuzzing")
    assert revoke.returncode == 0, revoke.stdout[-20_000:] + revoke.stderr[-2000:]


def test_the_ticket_state_names_of_the_api_are_the_workflow_states() -> None:
    from typing import get_args

    from alerts.tickets.workflow import STATES
    from api.routes.tickets import StateName

    assert set(get_args(StateName)) == set(STATES)
