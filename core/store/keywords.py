"""Top keywords of a slice of posts (the dashboard's 负面高频词), from the stored pre-segmented tokens."""

from __future__ import annotations

from collections import Counter

from core.store.base import PostQuery, PostStore

# Words every complaint uses; they say nothing about what the complaint is about.
STOP_WORDS = frozenset((
    "处理", "反映", "部门", "尽快", "问题", "希望", "相关", "情况", "现在", "已经", "没有",
    "我们", "什么", "一个", "这个", "政府", "领导", "请问", "谢谢", "你好", "您好", "市民",
    "居民", "群众", "有关", "进行", "解决", "要求", "能够", "可以", "是否", "怎么",
    "为什么", "目前", "一直", "还是", "但是", "因为", "所以", "如果", "这样", "那么",
    "他们", "你们", "自己", "时候", "今天", "昨天", "非常", "真的", "转发", "网友",
))


def top_keywords(store: PostStore, query: PostQuery, *, sample: int = 1000, top: int = 20) -> list[tuple[str, int]]:
    """Most frequent tokens (two characters or more, counted once per post) in the newest ``sample`` matching posts."""
    counts: Counter[str] = Counter()
    offset = 0
    page_size = min(500, sample)
    while offset < sample:
        page = store.search(query.model_copy(update={"limit": page_size, "offset": offset}))
        for post in page.items:
            counts.update({t for t in post.tokens if len(t) >= 2 and not t.isdigit() and t not in STOP_WORDS})
        offset += page_size
        if offset >= page.total:
            break
    return counts.most_common(top)
