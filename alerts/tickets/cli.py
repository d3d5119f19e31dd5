"""``yuqing tickets ...``: accountability export, deadline preview, calendar coverage check."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

app = typer.Typer(help="Ticket deadlines and accountability reports.", no_args_is_help=True)


def _aware(text: str, tz: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an ISO date/time") from exc
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(tz))


@app.command("deadlines")
def deadlines(
    level: Annotated[str, typer.Argument(help="1-4, blue..red or 蓝..红")],
    start: Annotated[str, typer.Option(help="ISO time the clock starts (local time if no offset)")],
    file: Annotated[Path | None, typer.Option(help="deadlines YAML (default: packaged)")] = None,
) -> None:
    """Show every stage's deadline for a level and start time (check a policy file or a holiday)."""
    from alerts.deadlines import STAGE_ZH, DeadlinePolicy

    try:
        policy = DeadlinePolicy.load(file)
        result = policy.deadlines(level, _aware(start, policy.tz))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    zone = ZoneInfo(policy.tz)
    for stage, when in result.items():
        typer.echo(f"{stage}\t{STAGE_ZH.get(stage, stage)}\t{when.astimezone(zone).isoformat()}")


@app.command("calendar")
def calendar(
    year: int,
    file: Annotated[Path | None, typer.Option(help="deadlines YAML with extra_holidays/extra_workdays")] = None,
) -> None:
    """Say whether the working calendar of ``year`` is known, and list its days off on weekdays and working weekends."""
    import chinese_calendar

    from alerts.deadlines import DeadlinePolicy

    policy = DeadlinePolicy.load(file)
    try:
        chinese_calendar.is_workday(datetime(year, 6, 1).date())
        known = True
    except NotImplementedError:
        known = False
    overrides = [d for d in policy.calendar.extra_holidays | policy.calendar.extra_workdays if d.year == year]
    if not known and not overrides:
        typer.echo(f"{year}: NOT covered by chinesecalendar {getattr(chinese_calendar, '__version__', '')} and no "
                   "overrides: upgrade chinesecalendar or add extra_holidays/extra_workdays to the deadlines YAML",
                   err=True)
        raise typer.Exit(1)
    day = datetime(year, 1, 1).date()
    while day.year == year:
        work = policy.is_workday(day)
        if work != (day.weekday() < 5):
            typer.echo(f"{day.isoformat()}\t{'调休上班 working' if work else '放假 day off'}")
        day += timedelta(days=1)
    typer.echo(f"{year}: {'chinesecalendar' if known else 'overrides only'}"
               f"{' + ' + str(len(overrides)) + ' override(s)' if overrides and known else ''}")


@app.command("accountability")
def accountability_report(
    from_: Annotated[str, typer.Option("--from", help="period start (ISO date/time)")],
    to: Annotated[str, typer.Option(help="period end, exclusive (ISO date/time)")],
    fmt: Annotated[str, typer.Option("--format", help="csv or xlsx")] = "csv",
    out: Annotated[Path | None, typer.Option(help="output file (default: stdout for csv)")] = None,
) -> None:
    """Per-unit accountability figures (问责统计) for tickets created in [from, to)."""
    from alerts.tickets import accountability
    from core.records import utcnow
    from core.settings import Settings
    from core.wiring import Container

    settings = Settings()
    since, until = _aware(from_, settings.alerts.timezone), _aware(to, settings.alerts.timezone)
    with Container(settings).db.transaction() as session:
        rows = accountability.unit_stats(session, since=since, until=until, now=utcnow())
    if fmt == "xlsx":
        if out is None:
            raise typer.BadParameter("--out is required for xlsx")
        try:
            out.write_bytes(accountability.to_xlsx(rows))
        except RuntimeError as exc:
            raise typer.BadParameter(str(exc)) from exc
    elif fmt == "csv":
        text = accountability.to_csv(rows)
        if out is None:
            typer.echo(text, nl=False)
        else:
            out.write_text("\ufeff" + text, encoding="utf-8")
    else:
        raise typer.BadParameter("format must be csv or xlsx")
    if out is not None:
        typer.echo(f"wrote {out}", err=True)
