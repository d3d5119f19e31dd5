"""analyze.events_cli: `yuqing eval events FILE` on a small crafted mailbox file."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from analyze.events_cli import eval_events

MIXER = "A2区丽发新城小区旁边新建的混凝土搅拌站每天施工到半夜，噪音巨大，粉尘漫天，请环保部门调查取缔。"
BUS = "A市地铁施工围挡占用枫林路大部分车道，早晚高峰堵车严重，公交车经常晚点半小时以上，请优化围挡。"


def _figures(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)


def test_replay_reports_events_purity_and_duplicate_recall(tmp_path):
    rows = [
        {"id": "1", "subject": "丽发新城搅拌站扰民", "body": MIXER, "time": "2019-12-01T08:00:00+08:00"},
        {"id": "2", "subject": "丽发新城搅拌站扰民", "body": MIXER + "！", "time": "2019-12-01T09:00:00+08:00"},
        {"id": "3", "subject": "地铁围挡堵车", "body": BUS, "time": "2019-12-01T10:00:00+08:00", "user": "A1"},
        {"id": "4", "subject": "丽发新城搅拌站扰民", "body": MIXER + "。。", "time": "2019-12-02T08:00:00+08:00",
         "user": "A2", "likes": 3},
    ]
    data = tmp_path / "messages.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    data.write_text("\n".join([*lines, "{not json", '{"id": "9", "subject": "无时间"}']) + "\n", encoding="utf-8")
    labels = tmp_path / "labelled.jsonl"
    labelled = [{**rows[0], "label": "环境保护"}, {**rows[1], "label": "环境保护"}, {**rows[2], "label": "交通运输"}]
    labels.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in labelled), encoding="utf-8")

    app = typer.Typer()
    app.command()(eval_events)
    result = CliRunner().invoke(app, [str(data), "--top", "2", "--labels", str(labels)])
    assert result.exit_code == 0, result.output
    fig = _figures(result.output)
    assert fig["events.posts"] == "4" and fig["events.skipped_lines"] == "2"
    assert fig["events.events"] == "2"
    assert fig["events.top01.size"] == "3" and fig["events.top01.sample"] == "丽发新城搅拌站扰民"
    assert fig["events.labelled_merged"] == "0" and fig["events.labelled_in_replay"] == "3"
    assert fig["events.labelled_purity_multi"] == "1.000"
    assert fig["events.duplicate_pairs"] == "3" and fig["events.duplicate_recall"] == "1.000"
    assert fig["events.topics"] == "classifier"  # as the analyze stage does

    plain = CliRunner().invoke(app, [str(data), "--top", "2", "--labels", str(labels), "--no-topics"])
    assert plain.exit_code == 0, plain.output
    assert _figures(plain.output)["events.topics"] == "off"
    assert _figures(plain.output)["events.events"] == "2"


def test_missing_file_is_a_clear_error(tmp_path):
    app = typer.Typer()
    app.command()(eval_events)
    result = CliRunner().invoke(app, [str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "not found" in result.output


def test_posts_and_truth_print_bcubed_the_baseline_and_delay(tmp_path):
    def rec(ext, text, minute, repost_of=None):
        return {"source": "weibo", "external_id": ext, "title": "", "text": text, "author": "u",
                "published_at": f"2012-10-01T08:{minute:02d}:00+08:00", "repost_of": repost_of}

    posts = [rec(f"m{n}", MIXER + "！" * n, n) for n in range(6)]
    posts += [rec(f"b{n}", BUS + "。" * n, 10 + n) for n in range(2)]
    posts.append(rec("r1", "转发微博", 20, repost_of="b0"))
    truth = [{"external_id": p["external_id"], "event_id": "mixer" if p["external_id"].startswith("m") else "bus"}
             for p in posts]
    pf, tf = tmp_path / "posts.jsonl", tmp_path / "truth.jsonl"
    pf.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in posts), encoding="utf-8")
    tf.write_text("\n".join(json.dumps(t) for t in truth), encoding="utf-8")
    app = typer.Typer()
    app.command()(eval_events)
    result = CliRunner().invoke(app, ["--posts", str(pf), "--truth", str(tf)])
    assert result.exit_code == 0, result.output
    fig = _figures(result.output)
    assert fig["events.bcubed_f1"] == "1" and fig["events.stories"] == "2"
    assert fig["events.delay5_median_min"] == "4" and "baseline.bcubed_f1" in fig
    bad = CliRunner().invoke(app, ["--posts", str(pf)])
    assert bad.exit_code == 2
