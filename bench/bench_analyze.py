"""Throughput of the analyze stage and its building blocks (normalize, tokenize, mask, entities, topic), posts/s.

``analyze.stage.*`` is the stage as wired by default (sentiment, topic, entities, masking, signature) on demo
posts in the configured batch size, beside a naive loop measured in the same run on the same posts: per post
one snownlp sentiment, one topic and one pattern-entity call, no batching (``analyze.stage.speedup_vs_naive``).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

N_POSTS = 5000
MAILBOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "mailbox" / "messages.jsonl"

_SYNTH = [
    "{d}{t}的{p}小区停水三天了，物业电话13{n}一直打不通，本人张三，请相关部门尽快处理！",
    "#{d}热点# {d}某学校乱收补课费，家长敢怒不敢言 http://t.cn/A6x{n} @{d}教育局",
    "{d}{t}夜间施工噪音扰民，已经持续一个月，环保部门不作为。身份证11010119900307{n4}",
    "建议增开{d}到火车站的公交线路，早晚高峰太挤了，{p}站点设置不合理",
    "公司拖欠工资半年，劳动监察大队推诿，联系人：李四 座机0731-8{n7}",
]


def _texts(n: int) -> list[str]:
    """Mailbox messages when ../shared is present, else synthetic posts (same seed, same texts)."""
    if MAILBOX.exists():
        rows = [json.loads(line) for line in MAILBOX.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts = [f"{r['subject']}\n{r['body']}" for r in rows]
        return (texts * (n // len(texts) + 1))[:n]
    rng = random.Random(0)
    out = []
    for _ in range(n):
        out.append(
            rng.choice(_SYNTH).format(
                d=rng.choice(["A1区", "A3区", "A7县", "A9市"]),
                t=rng.choice(["含浦街道", "星沙街道", "洞井街道"]),
                p=rng.choice(["杜鹃文苑", "万科城", "阳光丽城"]),
                n=rng.randrange(10**9),
                n4=rng.randrange(1000, 9999),
                n7=rng.randrange(10**6, 10**7),
            )
        )
    return out


def _rate(fn: Callable[[str], object], texts: list[str]) -> float:
    start = time.perf_counter()
    for text in texts:
        fn(text)
    return len(texts) / (time.perf_counter() - start)


STAGE_POSTS = 3000
# analyze.processes values measured besides the default (0 = in-thread, N = N child processes).
STAGE_PROCESSES = (0, 1, 2)


def _demo_posts(n: int) -> list:
    from ingest.demo import DemoStream
    from ingest.validate import parse_record

    posts = []
    for i, record in enumerate(DemoStream(seed=7, rate_per_min=600.0)):
        if i >= n:
            break
        posts.append(parse_record(json.dumps(record, ensure_ascii=False).encode(), source_hint=None, salt="bench",
                                  max_text_chars=20_000))
    return posts


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by this process and the given children (Linux /proc)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _stage_rate(posts: list, processes: int | None) -> tuple[float, dict[str, object]]:
    """posts/s of the wired analyze stage (``Container.analyzer``) with ``analyze.processes`` (None: default)."""
    import tempfile

    from core.settings import AnalyzeSettings, Settings
    from core.wiring import Container

    analyze = AnalyzeSettings() if processes is None else AnalyzeSettings(processes=processes)
    with tempfile.TemporaryDirectory(prefix="yuqing-bench-") as tmp:
        container = Container(Settings(mode="embedded", data_dir=Path(tmp), database_url="", analyze=analyze))
        try:
            analyzer, batch = container.analyzer, container.settings.analyze.batch_size  # children started
            analyzer.analyze(posts[-batch:])  # models loaded and warm before the clock starts
            analyzer._cache.clear()
            analyzer.cache_hits = 0
            pids = analyzer.pool.pids() if analyzer.pool is not None else []
            cpu, started = _cpu_s(pids), time.perf_counter()
            for i in range(0, len(posts), batch):
                analyzer.analyze(posts[i:i + batch])
            rate = len(posts) / (time.perf_counter() - started)
            cpu = _cpu_s(pids) - cpu
            info: dict[str, object] = {"batch_size": batch, "processes": container.settings.analyze.processes,
                                       "sentiment_model": container.settings.analyze.sentiment_model,
                                       "cache_hits": analyzer.cache_hits,
                                       "cpu_ms_per_post": 1000.0 * cpu / len(posts)}
        finally:
            container.close()
    return rate, info


def _stage(report: Callable[[str, float | str], None]) -> None:
    """The wired analyze stage against a naive per-post loop, both on the same demo posts.

    ``analyze.stage.posts_per_s`` is the stage with the default settings; ``analyze.stage.processes_N`` the
    same with ``analyze.processes: N`` (0 = in the worker thread, N >= 1 = N child processes), one after
    the other in this run.
    """
    from snownlp import SnowNLP

    from analyze.entities import EntityExtractor
    from analyze.topics import TopicClassifier

    posts = _demo_posts(STAGE_POSTS)
    rate, info = _stage_rate(posts, None)
    report("analyze.stage.sentiment_model", str(info["sentiment_model"]))
    report("analyze.stage.batch_size", int(info["batch_size"]))  # type: ignore[call-overload]
    report("analyze.stage.processes", int(info["processes"]))  # type: ignore[call-overload]
    report("analyze.stage.cache_hits", int(info["cache_hits"]))  # type: ignore[call-overload]
    per_count: dict[int, tuple[float, dict[str, object]]] = {int(info["processes"]): (rate, info)}  # type: ignore[call-overload]
    for n in STAGE_PROCESSES:
        if n not in per_count:
            per_count[n] = _stage_rate(posts, n)
    topics, entities = TopicClassifier.load(), EntityExtractor.load(use_lac=False)
    sample = posts[: STAGE_POSTS // 3]

    def naive(post: object) -> None:
        text = post.full_text  # type: ignore[attr-defined]
        _ = SnowNLP(text[:2000]).sentiments
        topics.classify(text)
        entities.extract(text)

    naive_rate = _rate(naive, sample)  # type: ignore[arg-type]
    report("analyze.stage.posts", len(posts))
    report("analyze.stage.posts_per_s", round(rate, 1))
    report("analyze.stage.naive_loop_posts_per_s", round(naive_rate, 1))
    report("analyze.stage.speedup_vs_naive", round(rate / naive_rate, 2) if naive_rate else 0.0)
    for n in sorted(per_count):
        n_rate, n_info = per_count[n]
        report(f"analyze.stage.processes_{n}.posts_per_s", round(n_rate, 1))
        report(f"analyze.stage.processes_{n}.speedup_vs_naive", round(n_rate / naive_rate, 2) if naive_rate else 0.0)
        # CPU time (this process and the pool's children) per post: what the work costs, whatever else runs.
        report(f"analyze.stage.processes_{n}.cpu_ms_per_post", round(float(n_info["cpu_ms_per_post"]), 3))  # type: ignore[arg-type]
    report("analyze.stage.cpu_cores", os.cpu_count() or 0)
    report("analyze.stage.target_posts_per_s", 800)


def run(report: Callable[[str, float | str], None]) -> None:
    """Report the stage's posts/s against a naive loop, then posts/s per step and chain on ~5,000 texts."""
    _stage(report)
    from analyze.entities import EntityExtractor
    from analyze.normalize import normalize
    from analyze.privacy import mask_pii
    from analyze.segment import get_segmenter, tokenize
    from analyze.topics import TopicClassifier

    texts = _texts(N_POSTS)
    report("analyze.texts", "mailbox" if MAILBOX.exists() else "synthetic")
    report("analyze.avg_chars", round(sum(map(len, texts)) / len(texts), 1))
    get_segmenter()
    plain = EntityExtractor.load(use_lac=False)
    lac = EntityExtractor.load(use_lac=True)
    topics = TopicClassifier.load()
    report("analyze.topics.backend", topics.backend)
    report("analyze.entities.backend", lac.backend)
    report("analyze.normalize.posts_per_s", round(_rate(normalize, texts), 1))
    report("analyze.tokenize.posts_per_s", round(_rate(tokenize, texts), 1))
    report("analyze.mask_pii.posts_per_s", round(_rate(mask_pii, texts), 1))
    report("analyze.entities_patterns.posts_per_s", round(_rate(plain.extract, texts), 1))
    # LAC is the slow step: measure it on a tenth of the texts.
    report("analyze.entities_lac.posts_per_s", round(_rate(lac.extract, texts[: N_POSTS // 10]), 1))
    report("analyze.topic.posts_per_s", round(_rate(topics.classify, texts), 1))

    def chain(text: str, entities: EntityExtractor) -> None:
        norm = normalize(text)
        tokenize(norm)
        _, people = entities.extract_with_people(norm)
        mask_pii(text, names=people)
        topics.classify(norm)

    report("analyze.chain_patterns.posts_per_s", round(_rate(lambda t: chain(t, plain), texts), 1))
    report("analyze.chain_lac.posts_per_s", round(_rate(lambda t: chain(t, lac), texts[: N_POSTS // 10]), 1))


if __name__ == "__main__":
    run(lambda name, value: print(f"{name}: {value}"))
