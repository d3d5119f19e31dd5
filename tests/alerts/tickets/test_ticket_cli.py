"""``yuqing tickets``: deadline preview across National Day, calendar coverage, accountability CSV."""

from __future__ import annotations

import csv
import io

from typer.testing import CliRunner

from alerts.deadlines import DEFAULT_PATH
from alerts.tickets import service as svc
from alerts.tickets.cli import app
from tests.alerts.tickets.ticket_helpers import T0, make_event, make_match


def test_deadlines_preview() -> None:
    r = CliRunner().invoke(app, ["deadlines", "blue", "--start", "2025-09-30T10:00"])
    assert r.exit_code == 0, r.output
    lines = dict(line.split("\t", 1) for line in r.output.strip().splitlines())
    assert lines["sign"] == "签收\t2025-09-30T11:00:00+08:00"
    assert lines["first_response"].endswith("2025-10-02T10:00:00+08:00")
    assert CliRunner().invoke(app, ["deadlines", "purple", "--start", "2025-09-30"]).exit_code != 0


def test_calendar_coverage(tmp_path) -> None:
    r = CliRunner().invoke(app, ["calendar", "2025"])
    assert r.exit_code == 0 and "2025-09-28\t调休上班 working" in r.output and "2025-10-08\t放假 day off" in r.output
    r = CliRunner().invoke(app, ["calendar", "2099"])
    assert r.exit_code == 1 and "NOT covered" in r.output
    yaml = tmp_path / "d.yaml"
    yaml.write_text(DEFAULT_PATH.read_text(encoding="utf-8").replace("extra_holidays: []",
                                                                    "extra_holidays: ['2099-01-02']"), encoding="utf-8")
    r = CliRunner().invoke(app, ["calendar", "2099", "--file", str(yaml)])
    assert r.exit_code == 0 and "2099-01-02\t放假 day off" in r.output


def test_accountability_csv(db, monkeypatch) -> None:
    monkeypatch.setenv("YUQING_DATABASE_URL", db.url)
    with db.transaction() as s:
        svc.open_or_update(s, event=make_event(), match=make_match(), lead_unit="env", cooperating_units=[],
                           routing={}, now=T0)
    r = CliRunner().invoke(app, ["accountability", "--from", "2025-09-01", "--to", "2025-10-31"])
    assert r.exit_code == 0, r.output
    rows = {row[0]: row for row in csv.reader(io.StringIO(r.output))}
    assert rows["env"][2] == "1" and rows["单位"][2] == "收到工单"
