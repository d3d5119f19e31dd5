"""``yuqing report weekly|daily [--unit U] [--send] [--out FILE]``: build a report, write it or mail it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

app = typer.Typer(help="Weekly summary and daily brief e-mails.", no_args_is_help=True)


@app.command("report")
def report(
    kind: str = typer.Argument("weekly", help="weekly or daily"),
    unit: str | None = typer.Option(None, help="a unit id for its own report; default: the office report"),
    send: bool = typer.Option(False, help="mail it through the configured SMTP server"),
    out: Path | None = typer.Option(None, help="where to write the .eml (default: data_dir/reports/)"),
    to: list[str] = typer.Option([], help="recipient address (repeatable); default: the unit's e-mail"),
) -> None:
    """Build a weekly or daily report; without --send write it as an .eml file and print the path."""
    from alerts.reports.weekly import build_report, unit_recipients
    from core.errors import SendError
    from core.records import utcnow
    from core.settings import Settings
    from core.wiring import Container

    if kind not in ("weekly", "daily"):
        raise typer.BadParameter("kind must be weekly or daily")
    settings = Settings()
    container = Container(settings)
    try:
        now = utcnow()
        with container.db.transaction() as session:
            addresses = list(to) or unit_recipients(session).get(unit or "office", [])
            try:
                msg = build_report(session, kind=kind, unit=unit, now=now,  # type: ignore[arg-type]
                                   post_store=container.post_store, dashboard_url=settings.alerts.dashboard_url,
                                   tz=settings.alerts.timezone, to=addresses)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
        if send:
            mailer = container.notifiers.get("email")
            if mailer is None:
                typer.echo("SMTP is not enabled (set YUQING_SMTP__ENABLED=true and YUQING_SMTP__HOST)", err=True)
                raise typer.Exit(2)
            if not addresses:
                typer.echo(f"no e-mail address for {unit or 'office'}: pass --to or set the unit's email", err=True)
                raise typer.Exit(2)
            try:
                mailer.send_message(msg)  # type: ignore[attr-defined]
            except SendError as exc:
                typer.echo(f"not sent: {exc}", err=True)
                raise typer.Exit(1) from None
            typer.echo(f"sent {msg['Subject']} to {', '.join(addresses)}")
            return
        if out is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            out = settings.data_dir / "reports" / f"{kind}-{unit or 'office'}-{stamp}.eml"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(msg.as_bytes())
        typer.echo(str(out))
    finally:
        container.close()
