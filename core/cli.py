"""The ``yuqing`` command: run the service, feed it, inspect it, train and evaluate its models."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from core.logging import setup_logging
from core.settings import Settings

log = logging.getLogger("yuqing")

app = typer.Typer(help="yuqing 政务舆情监测与回应", no_args_is_help=True, pretty_exceptions_enable=False)
dead_app = typer.Typer(help="Dead letters: records that failed a stage, kept with their reason.", no_args_is_help=True)
train_app = typer.Typer(help="Train the shipped models from ../shared data.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate models; one `name: value` line per figure.", no_args_is_help=True)
app.add_typer(dead_app, name="dead-letters")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")


def _settings(**overrides: Any) -> Settings:
    settings = Settings(**overrides)
    setup_logging(settings.log_level, json_lines=settings.log_json)
    return settings


def _container_and_pipeline(settings: Settings) -> tuple[Any, Any]:
    from core.runtime import Pipeline
    from core.wiring import Container

    container = Container(settings)
    return container, Pipeline(container)


@app.command()
def run(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", help="HTTP port")] = 8000,
    demo: Annotated[bool, typer.Option(help="feed the synthetic demo stream in real time")] = False,
    demo_rate: Annotated[float, typer.Option(help="demo posts per minute")] = 240.0,
    workers: Annotated[str, typer.Option(help="worker kinds to run here")] = "analyze,alerts,scheduler,sender",
) -> None:
    """Start the API and the workers in one process (embedded mode). SIGTERM or Ctrl-C stop it gracefully."""
    import uvicorn

    from api.app import create_app
    from core.shutdown import GracefulShutdown, quiet_uvicorn_server

    settings = _settings()
    container, pipeline = _container_and_pipeline(settings)
    server_box: list[Any] = []
    feeders: list[DemoFeeder] = []

    def stop_server() -> None:
        for server in server_box:
            server.should_exit = True

    def stop_intake() -> None:
        for feeder in feeders:
            feeder.stop()

    # Installed before the slow start-up (models, index) so an early SIGTERM is a clean stop too.
    shutdown = GracefulShutdown(pipeline=pipeline, drain_s=settings.shutdown_drain_s, stop_server=stop_server,
                                stop_intake=stop_intake)
    shutdown.install()
    container.sync_units()
    _bootstrap_users(container, settings)
    kinds = [k.strip() for k in workers.split(",") if k.strip()]
    log.info("starting workers: %s (mode=%s, bus=%s, posts=%s)", ", ".join(kinds), settings.mode,
             settings.bus_kind, settings.post_store_kind)
    try:
        pipeline.start(kinds=kinds)
        if demo and not shutdown.signals:
            feeders.append(DemoFeeder(pipeline, rate_per_min=demo_rate))
            feeders[0].start()
        api = create_app(container, pipeline=pipeline)
        config = uvicorn.Config(api, host=host, port=port, log_level=settings.log_level.lower(), access_log=False)
        server = quiet_uvicorn_server(config)
        server_box.append(server)
        if shutdown.signals:
            server.should_exit = True  # a signal arrived during start-up: stop right after it
        log.info("yuqing is up: http://%s:%d  (API docs at /docs)", host, port)
        server.run()
    finally:
        log.info("stopping…")
        stop_intake()
        shutdown.finish(close=container.close)


def _bootstrap_users(container: Any, settings: Settings) -> None:
    """Create the first admin (and demo users) when the database has no user yet."""
    try:
        from core.auth import service as auth_service
    except ModuleNotFoundError:
        return
    import secrets

    from core.records import utcnow

    configured = settings.api.bootstrap_admin_password
    password = configured.get_secret_value() if configured else secrets.token_urlsafe(12)
    with container.db.transaction() as session:
        created = auth_service.ensure_bootstrap_admin(session, password=password, now=utcnow())
    if created and configured is None:
        _hand_over_admin_password(password, settings.data_dir)


ADMIN_PASSWORD_FILE = "initial-admin-password"  # noqa: S105 - a file name, not a password


def _hand_over_admin_password(password: str, data_dir: Path) -> None:
    """Show the generated first password to the operator, never to a log.

    On a terminal it is printed once. When stderr goes elsewhere (a service manager, a container runtime,
    a log file) it is written to ``<data_dir>/initial-admin-password``, readable by this user only, and only
    that path is printed.
    """
    if sys.stderr.isatty():
        typer.echo(f"created user 'admin' with password: {password}", err=True)
        return
    path = Path(data_dir) / ADMIN_PASSWORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode on O_CREAT: make sure
    typer.echo(f"created user 'admin'; its password is in {path} (readable by this user only; delete it "
               f"after the first login)", err=True)


class DemoFeeder:
    """Feeds the synthetic demo stream into the pipeline in real time."""

    def __init__(self, pipeline: Any, *, rate_per_min: float, seed: int | None = None) -> None:
        self.pipeline = pipeline
        self.rate_per_min = rate_per_min
        self.seed = seed if seed is not None else int(time.time())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo", daemon=True)

    def start(self) -> None:
        """Start feeding."""
        self._thread.start()

    def stop(self) -> None:
        """Stop feeding."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        from ingest.base import RawRecord
        from ingest.demo import DemoStream

        stream = DemoStream(seed=self.seed, rate_per_min=self.rate_per_min)
        t0 = time.time()
        first: float | None = None
        batch: list[RawRecord] = []
        for i, record in enumerate(stream):
            if self._stop.is_set():
                return
            at = datetime.fromisoformat(record["published_at"]).timestamp()
            first = first if first is not None else at
            delay = (at - first) - (time.time() - t0)
            if delay > 0.2 or len(batch) >= 50:
                if batch:
                    self.pipeline.ingest(batch)
                    batch = []
                if delay > 0 and self._stop.wait(delay):
                    return
            batch.append(RawRecord(data=json.dumps(record, ensure_ascii=False).encode(), origin=f"demo:{i}"))


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="write JSONL here (default: stdout)")] = None,
    count: Annotated[int, typer.Option(help="how many records")] = 2000,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same stream)")] = 7,
    rate: Annotated[float, typer.Option(help="posts per minute of simulated time")] = 120.0,
) -> None:
    """Generate the synthetic stream (posts and hotline messages with injected incidents) as JSONL."""
    from ingest.demo import DemoStream

    stream = DemoStream(seed=seed, rate_per_min=rate)
    handle = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        for i, record in enumerate(stream):
            if i >= count:
                break
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out:
            handle.close()
            typer.echo(f"wrote {count} records to {out}", err=True)


def _progress_printer(label: str) -> Any:
    last = [0.0]

    def progress(stats: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= 2.0:
            last[0] = now
            typer.echo(f"{label}: read {stats.read}, accepted {stats.accepted}, "
                       f"dead-lettered {stats.dead_lettered}", err=True)

    return progress


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="a JSONL file or a directory of *.jsonl")],
    source: Annotated[str | None, typer.Option(help="source to assume when a record does not say")] = None,
    follow: Annotated[bool, typer.Option(help="keep reading as the file grows (Ctrl-C stops)")] = False,
    wait: Annotated[bool, typer.Option(help="embedded mode: wait until every record is analyzed")] = True,
) -> None:
    """Ingest a file: valid records enter the pipeline, invalid ones become dead letters."""
    from ingest.jsonl import JsonlSource

    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist")
    settings = _settings()
    container, pipeline = _container_and_pipeline(settings)
    embedded = settings.bus_kind != "kafka"
    if embedded:
        pipeline.start(kinds=["analyze", "alerts"])
    src = JsonlSource(path, follow=follow, source_hint=source)
    _stop_on_signal(src)
    try:
        # A followed file may wait long for its next line: publish each post at once rather than batch it.
        stats = pipeline.ingest(src, progress=_progress_printer("ingest"), publish_batch=1 if follow else 500)
        if embedded and wait:
            typer.echo("waiting for analysis to finish…", err=True)
            pipeline.wait_idle(timeout_s=3600)
    finally:
        pipeline.stop()
        container.close()
    typer.echo(f"ingest.read: {stats.read}\ningest.accepted: {stats.accepted}\n"
               f"ingest.dead_lettered: {stats.dead_lettered}")


def _stop_on_signal(src: Any) -> None:
    def handler(_sig: int, _frame: Any) -> None:
        src.stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@app.command()
def replay(
    path: Annotated[Path, typer.Argument(help="mailbox-shaped or post-shaped JSONL")],
    speed: Annotated[float, typer.Option(help="acceleration; 0 = as fast as possible")] = 0.0,
    source: Annotated[str | None, typer.Option(help="source to assume (mailbox shape: 'mailbox')")] = None,
) -> None:
    """Replay a file by its timestamps, accelerated ``--speed`` times."""
    from ingest.base import RawRecord
    from ingest.jsonl import JsonlSource
    from ingest.replay import paced
    from ingest.validate import parse_record

    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist")
    settings = _settings()
    container, pipeline = _container_and_pipeline(settings)
    embedded = settings.bus_kind != "kafka"
    salt = settings.author_salt.get_secret_value()
    posts = []
    dead = 0
    for record in JsonlSource(path, source_hint=source):
        try:
            posts.append(parse_record(record.data, source_hint=record.source_hint, salt=salt,
                                      max_text_chars=settings.max_text_chars))
        except Exception as exc:
            dead += 1
            pipeline.dead_letter(stage="ingest", source=record.source_hint or "unknown", origin=record.origin,
                                 reason=getattr(exc, "reason", str(exc)), raw=record.data)
    posts.sort(key=lambda p: p.published_at)
    typer.echo(f"replaying {len(posts)} posts ({dead} dead-lettered) at speed {speed or 'max'}", err=True)
    if embedded:
        pipeline.start(kinds=["analyze", "alerts"])
    try:
        if speed <= 0:  # as fast as possible: one bus transaction per 500 posts instead of one per post
            for start in range(0, len(posts), 500):
                pipeline.publish_posts(posts[start: start + 500])
                typer.echo(f"replay: {min(start + 500, len(posts))}/{len(posts)}", err=True)
        for i, post in enumerate(paced(posts, speed=speed) if speed > 0 else []):
            pipeline.publish_post(post)
            if i % 1000 == 999:
                typer.echo(f"replay: {i + 1}/{len(posts)}", err=True)
        container.bus.flush()
        if embedded:
            pipeline.wait_idle(timeout_s=3600)
    finally:
        pipeline.stop()
        container.close()
    _ = RawRecord
    typer.echo(f"replay.posts: {len(posts)}\nreplay.dead_lettered: {dead}")


@app.command()
def worker(kind: Annotated[str, typer.Argument(help="analyze | alerts | scheduler | sender")]) -> None:
    """Run one worker kind (scale mode: several processes share the work through consumer groups)."""
    if kind not in {"analyze", "alerts", "scheduler", "sender"}:
        raise typer.BadParameter("kind must be analyze, alerts, scheduler or sender")
    settings = _settings()
    container, pipeline = _container_and_pipeline(settings)
    pipeline.start(kinds=[kind])
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info("worker %s running", kind)
    failed = False
    while not stop.wait(1.0):
        if any(not w.alive for w in pipeline.workers):
            # A dead stage thread must not leave a live-looking process: exit so a supervisor restarts it.
            log.error("a %s stage thread stopped; exiting for a restart", kind)
            failed = True
            break
    pipeline.stop()
    container.close()
    if failed:
        raise typer.Exit(code=1)


@dead_app.command("list")
def dead_list(
    stage: Annotated[str | None, typer.Option(help="ingest | analyze | alerts")] = None,
    limit: int = 50,
    all_: Annotated[bool, typer.Option("--all", help="include replayed ones")] = False,
) -> None:
    """List dead letters, newest first."""
    from ingest import deadletters

    settings = _settings()
    container, _ = _container_and_pipeline(settings)
    with container.db.transaction() as session:
        total, rows = deadletters.list_dead_letters(session, stage=stage, limit=limit, include_replayed=all_)
        typer.echo(f"dead_letters.total: {total}")
        for row in rows:
            typer.echo(f"#{row.id}\t{row.stage}\t{row.origin}\t{row.received_at:%Y-%m-%d %H:%M}\t{row.reason}")
    container.close()


@dead_app.command("replay")
def dead_replay(ids: Annotated[list[int] | None, typer.Argument(help="ids (default: all not yet replayed)")] = None
                ) -> None:
    """Validate dead letters again; those that pass enter the pipeline."""
    from ingest import deadletters

    settings = _settings()
    container, pipeline = _container_and_pipeline(settings)
    embedded = settings.bus_kind != "kafka"
    if embedded:
        pipeline.start(kinds=["analyze", "alerts"])
    with container.db.transaction() as session:
        result = deadletters.replay(session, ids=ids or None, publish=pipeline.publish_post,
                                    salt=settings.author_salt.get_secret_value(),
                                    max_text_chars=settings.max_text_chars)
    container.bus.flush()
    if embedded:
        pipeline.wait_idle(timeout_s=600)
    pipeline.stop()
    container.close()
    typer.echo(f"dead_letters.replayed: {len(result.replayed)}\ndead_letters.still_failing: {len(result.failed)}")
    for dead_id, reason in result.failed.items():
        typer.echo(f"#{dead_id}\t{reason}")


def _mount_optional() -> None:
    """Mount the areas' commands (each lives next to its code)."""
    mounts = [
        (train_app, "sentiment", "analyze.sentiment.cli", "train_sentiment"),
        (train_app, "sentiment-ngram", "analyze.sentiment.cli", "train_sentiment_ngram"),
        (train_app, "topics", "analyze.cli", "train_topics"),
        (eval_app, "sentiment", "analyze.sentiment.cli", "eval_sentiment"),
        (eval_app, "topics", "analyze.cli", "eval_topics"),
        (eval_app, "events", "analyze.events_cli", "eval_events"),
        (app, "report", "alerts.reports.cli", "report"),
        (app, "bench", "bench.harness", "bench"),
        (app, "backup", "core.ops_cli", "backup"),
        (app, "restore", "core.ops_cli", "restore"),
        (app, "retention", "core.ops_cli", "retention"),
    ]
    groups = [("users", "core.auth.cli"), ("tickets", "alerts.tickets.cli")]
    for name, module_name in groups:
        app.add_typer(__import__(module_name, fromlist=["app"]).app, name=name)
    for target, name, module_name, attr in mounts:
        try:
            module = __import__(module_name, fromlist=[attr])
        except ModuleNotFoundError as exc:
            # Only a missing optional third-party package (an extra not installed) hides a command;
            # a missing module of our own is a bug and must fail loudly.
            if (exc.name or "").split(".")[0] in {"core", "ingest", "analyze", "alerts", "api", "bench"}:
                raise
            log.debug("command %s unavailable (pip extra missing): %s", name, exc)
            continue
        target.command(name)(getattr(module, attr))


_mount_optional()


def main() -> None:
    """Entry point of the ``yuqing`` script."""
    from core.bus.sqlite import BusInUse

    try:
        app()
    except BusInUse as exc:  # an operator's mistake, not a crash: say what to do, no traceback
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
