"""alerts.events.service: an event's title is a representative post of its majority matter."""

from __future__ import annotations

from typing import Any

from alerts.events import service
from tests.alerts.events.posts import make_post


def _title(posts: list) -> str | None:
    matters: dict[str, list[Any]] = {}
    for p in posts:
        p.text_masked = p.text
        service._vote(matters, p)
    best = service._representative(matters)
    return None if best is None else best[3]


def test_the_title_comes_from_the_original_most_posts_repost_not_the_first_aside():
    aside = make_post("x", "路过，随便说一句今天天气不错", minutes=0)
    original = make_post("o", "湾仔码头水饺吃出饰品珠子，厂家至今没有回应", minutes=5)
    reposts = [make_post(f"r{n}", "转发微博", minutes=10 + n, repost_of="o") for n in range(3)]
    assert _title([aside, *reposts, original]) == _title([original, aside, *reposts]) == original.text


def test_copies_vote_together_and_ties_go_to_the_earliest():
    a = make_post("a", "丽发新城搅拌站半夜施工噪音扰民请处理", minutes=0)
    b = make_post("b", "丽发新城搅拌站半夜施工噪音扰民请处理！！", minutes=3)
    c = make_post("c", "另一件事：地铁围挡占道", minutes=1)
    assert _title([c, b, a]) == a.text
    assert _title([make_post("d", "甲事", minutes=2), make_post("e", "乙事", minutes=1)]) == "乙事"
