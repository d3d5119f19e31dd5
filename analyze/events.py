"""Near-duplicate and same-matter clustering of posts into events (the event stage's in-memory index).

The ways a post joins an existing event, tried in this order:

1. **repost** — ``repost_of`` names an original on the same source: join the original's event;
2. **near-duplicate** — MinHash/LSH: a recent post (within ``window_hours``) whose estimated Jaccard
   similarity of character shingles is at least ``threshold``: join its event (copy-paste, light edits);
   and a **resubmission** — practically the same text again within ``anchor_window_days`` (a citizen
   re-sending an unanswered message), found on a few long LSH bands without keeping old signatures;
3. **anchor** — citizens who write about one residential compound's or one company's problem rarely
   copy each other, so a post that names a *specific* anchor (a 小区/村/company from its entities, never a
   bare district or a government body) joins a recent event (``anchor_window_days``) with the same anchor
   whose members share enough **matter words** (Dice ≥ ``anchor_similarity``);
4. **same town, same hours** — a post naming a town/street (镇/乡/街道) joins an event with the same town
   within ``hot_window_hours`` if their matter words overlap (Dice ≥ ``town_similarity``). The short window
   keeps a town's unrelated matters of other days apart;
5. **place only, while it is breaking** — a breaking matter is told in many different words ("闷响",
   "冒黑烟", "要不要疏散") that share nothing but the place. A post that shares only a specific anchor or a
   town with an event joins it when that event is *breaking* there: named at the place at least
   ``PLACE_BURST_POSTS`` times within ``place_join_minutes`` and by at least ``place_focus`` of its posts, and
   moving (``VELOCITY_POSTS`` posts within ``VELOCITY_SECONDS``).
   The signal is time, not text. While a place has a breaking matter it wins over a word match (3, 4) to
   another of the place's events unless the words tie the post clearly (``STRONG_MATTER_OVERLAP``). On the town
   alone, a post naming a specific anchor never joins an event whose members name only other anchors: a busy
   town is named dozens of times a minute, so an everyday complaint template can look "breaking" there;
6. **the district's breaking matter** — a follow-up that names only the district ("A3区要彻查"), perhaps
   filed under another topic, joins an event breaking in the district when most of its matter words are
   already the event's (``DISTRICT_CONTAINMENT``);
7. **same district and topic, same hours** — as rule 4 with ``district/topic`` as the key.

**Matter words** are the content words minus the words of the post's own place and organisation names
(districts, towns, anchors, entities of at most ``MAX_NAME_CHARS``), hotline formulas and numbers: the key
already says "same place", so sharing "星港", "街道" and "A5区" again says nothing about sharing a matter.
Without that, a breaking matter at a school or street slid into the everyday event about the same place
(school-district complaints, job fairs) and every follow-up chained in after it. Word joins also need
``MIN_SHARED_WORDS`` in common, and never join two posts that name different specific anchors (wage arrears
at two companies are two matters). A positive social post never joins a mostly negative matter on place
alone. An eyewitness post that arrives before its matter is breaking at the place opens an *orphan* event;
while the orphan is young and small its copies go to the place's breaking matter (``_rehome``), so one
incident does not become two events and two tickets.

Otherwise the post opens a new event whose id is derived from its own post id, so replaying the same
input in the same order yields the same event ids. Memory is bounded by time: ``garbage_collect`` drops
LSH entries older than the near-dup window and anchor entries older than the anchor window.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import logging
import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np

from core.records import AnalyzedPost, Entities, SentimentLabel, post_id
from core.store.base import SignatureRow

log = logging.getLogger(__name__)

_MAX32 = np.uint64(0xFFFFFFFF)
_SEED = 0x59_51_49_4E  # "YQIN": fixed so signatures agree across processes and releases
# Text beyond this many characters adds little to "is this the same text" and costs time.
MAX_SIGNATURE_CHARS = 20_000
EMPTY_SIGNATURE_VALUE = 0xFFFFFFFF
_WS = re.compile(r"\s+")
MAX_BUCKET = 64  # posts kept per LSH bucket
FOCUS_CHARS = 120
TOWN_EVENTS = 24  # most recently active events kept per town (or district/topic) for the hot-window rule
LONG_ROWS = 16  # rows per band of the resubmission index: a band match means ~identical text (J ≥ ~0.9)


@lru_cache(maxsize=8)
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of the hashes h(x) = ((a·x + b) mod 2^64) >> 32, from a fixed seed.

    Multiply-add-shift (Dietzfelbinger) is strongly universal for 32-bit keys with 64-bit a, b, and
    numpy's uint64 arithmetic wraps exactly mod 2^64, so it is both fast and the same everywhere.
    """
    rng = np.random.Generator(np.random.PCG64(_SEED))
    a = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64, endpoint=True)
    return a, b


def _shingle_hashes(text: str, shingle: int) -> np.ndarray:
    """32-bit hashes of the distinct character k-shingles (code points mixed with splitmix64)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    k = min(shingle, len(codes))
    n = len(codes) - k + 1
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(k):
            h = (h ^ codes[i : i + n]) * np.uint64(0x100000001B3)  # FNV-style combine, wraps mod 2^64
        # splitmix64 finaliser: spreads bits so the low 32 are well mixed.
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return np.unique(h & _MAX32)


def minhash_signature(text: str, *, num_perm: int = 64, shingle: int = 3) -> list[int]:
    """MinHash signature (``num_perm`` 32-bit ints) of the text's character shingles; whitespace ignored."""
    if num_perm <= 0 or shingle <= 0:
        raise ValueError("num_perm and shingle must be positive")
    text = _WS.sub("", text or "")[:MAX_SIGNATURE_CHARS]
    if not text:
        return [EMPTY_SIGNATURE_VALUE] * num_perm
    x = _shingle_hashes(text, shingle)
    a, b = _permutations(num_perm)
    with np.errstate(over="ignore"):
        values = (np.outer(a, x) + b[:, None]) >> np.uint64(32)
    return values.min(axis=1).astype(np.int64).tolist()


def estimated_jaccard(sig_a: Iterable[int], sig_b: Iterable[int]) -> float:
    """Share of equal MinHash slots: an unbiased estimate of the shingle sets' Jaccard similarity."""
    a, b = np.asarray(list(sig_a)), np.asarray(list(sig_b))
    if a.shape != b.shape or a.size == 0:
        return 0.0
    return float(np.mean(a == b))


# ---------------------------------------------------------------------------------------------------
# Anchors: specific named things (a compound, a village, a company, a school) that tie posts together.

# A name must end like a specific place or organisation to be an anchor; administrative areas and
# government bodies are deliberately absent (thousands of unrelated messages name "A3区" or "市教育局").
_ANCHOR_SUFFIXES = (
    "小区", "社区", "花园", "家园", "新城", "之城", "新村", "村", "苑", "园", "城", "府", "湾", "庭", "邸", "居",
    "公馆", "山庄", "公寓", "大厦", "广场", "中心", "市场", "商城", "大楼", "楼盘", "项目",
    "公司", "集团", "厂", "矿", "酒店", "宾馆", "医院", "诊所", "学校", "学院", "大学", "中学", "小学",
    "幼儿园", "附中", "搅拌站", "加油站", "车站", "站", "场", "化工", "工业园", "产业园", "园区", "开发区", "物业",
)  # fmt: skip
# Organisations share long generic tails ("投资有限公司", "配套幼儿园", "经济学院"): for them only equal or
# contained names are the same thing, never a merely common ending.
_ORG_ENDINGS = (
    "公司", "集团", "厂", "矿", "酒店", "宾馆", "医院", "诊所", "学校", "学院", "大学", "中学", "小学",
    "幼儿园", "附中", "中心", "项目", "站", "场", "化工", "物业",
)  # fmt: skip
_GENERIC_PREFIXES = (
    "我们", "我", "本", "该", "此", "这个", "那个", "这", "那", "整个", "周边", "附近", "所在", "各", "全",
    "其他", "这些", "相关", "一个", "某", "新", "老", "旧", "农", "城中", "市", "县", "区", "镇", "乡",
)  # fmt: skip
_GENERIC_NAMES = frozenset(
    {
        "物业公司", "自来水公司", "燃气公司", "电力公司", "供电公司", "有限公司", "分公司", "开发商",
        "房地产公司", "开发公司", "建筑公司", "物业服务有限公司", "公交公司", "出租车公司", "保险公司",
        "银行", "农村", "城市", "城区", "小区", "社区", "村", "学校", "医院", "幼儿园", "小学", "中学",
        "大学", "公司", "集团", "工厂", "市场", "广场", "车站", "加油站", "中心", "项目", "公园", "乡村",
        "新城", "老城", "家园", "花园", "安置小区", "还建小区", "商品房", "政府", "派出所", "卫生院",
        "工业园", "产业园", "园区", "开发区", "工业区", "化工", "化工厂", "物业", "小区物业", "交物业", "欠物业",
    }
)  # fmt: skip
# Administrative prefix (province, city, district/county, street/town) stripped so "A市A3区丽发新城小区"
# and "丽发新城" meet under one key.
_ADMIN_PREFIX = re.compile(
    r"^(?:[\u4e00-\u9fffA-Za-z]{2,4}省)?(?:[\u4e00-\u9fffA-Za-z0-9]{1,4}市)?(?:[\u4e00-\u9fffA-Za-z0-9]{1,4}[区县])?"
    r"(?:[\u4e00-\u9fff]{2,4}(?:街道|镇|乡))?"
)
_STRIP_SUFFIXES = ("小区", "社区")


# Names ending like a government body are never anchors: residents address them about everything.
_GOV_ENDINGS = (
    "政府", "委员会", "党委", "管委会", "居委会", "村委会", "业委会", "委", "局", "厅", "办公室", "办", "法院",
    "检察院", "派出所", "大队", "支队", "中队", "所", "部门", "单位", "国际旅游公司",
)  # fmt: skip
# Extraction slips: a verb or filler glued in front of a name ("导致小区", "加快学校", "地处时代倾城").
_JUNK_PREFIXES = (
    "我们", "我", "本", "该", "此", "这", "那", "整个", "周边", "附近", "导致", "造成", "影响", "严重", "占有",
    "占用", "加快", "地处", "位于", "属于", "进出", "通往", "紧挨", "来自", "包括", "经过", "感谢", "要求",
    "拒绝", "强制", "平息", "门", "宅", "话", "过", "和", "与", "在", "到", "从", "对", "把", "被", "给",
    "让", "使", "请", "是", "有", "为", "由", "因", "但", "而", "且", "及", "等", "中午", "目前", "现在",
    "如果", "但是", "而且", "并且", "不准", "各", "全", "其他", "相关", "一个", "某",
)  # fmt: skip


def anchor_key(name: str) -> str | None:
    """The canonical anchor key of an entity name, or None when the name is too generic to tie posts."""
    name = _WS.sub("", name or "")
    if len(name) < 3 or len(name) > 24:
        return None
    stripped = _ADMIN_PREFIX.sub("", name, count=1)
    # Keep the full name when stripping would eat it (e.g. "金麓小区" looks like "金麓小" + "区").
    if len(stripped) >= 3 and stripped.endswith(_ANCHOR_SUFFIXES) and stripped not in _GENERIC_NAMES:
        name = stripped
    if not name.endswith(_ANCHOR_SUFFIXES) or name.endswith(_GOV_ENDINGS) or name in _GENERIC_NAMES:
        return None
    if name.startswith(_JUNK_PREFIXES):
        return None
    for prefix in _GENERIC_PREFIXES:
        if name.startswith(prefix) and name[len(prefix) :] in _GENERIC_NAMES:
            return None
    for suffix in _STRIP_SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            name = name[: -len(suffix)]
            break
    return name


_ABOVE_TOWN = re.compile(
    r"^(?:[\u4e00-\u9fffA-Za-z]{2,4}省)?(?:[\u4e00-\u9fffA-Za-z0-9]{1,4}市)?(?:[\u4e00-\u9fffA-Za-z0-9]{1,4}[区县])?"
)
_TOWN_FIRST = re.compile(r"^([\u4e00-\u9fff]{2,4}?(?:街道|镇|乡))")


def town_keys(entities: Entities, topic: str | None = None) -> list[str]:
    """Locality keys of a post for the hot-window rule: its towns (…镇/…乡/…街道, also inside a longer name
    such as "青石镇工业园", without any district or city prefix) and, when the topic is known,
    ``district/topic`` for each of its districts."""
    out: list[str] = []
    for name in entities.places:
        m = _TOWN_FIRST.match(_ABOVE_TOWN.sub("", _WS.sub("", name), count=1))
        if m and m.group(1) not in out:
            out.append(m.group(1))
    if topic:
        out.extend(f"{district}/{topic}" for district in entities.districts if f"{district}/{topic}" not in out)
    return out


def district_keys(entities: Entities) -> list[str]:
    """``district/*`` keys of a post (any topic), for joining a breaking matter in its district on words."""
    return [f"{district}/*" for district in dict.fromkeys(entities.districts)]


# Work orders are requests for help whatever their wording: a "positive" score on one says nothing.
_REQUEST_SOURCES = frozenset({"hotline", "mailbox"})


def _mood(post: object) -> SentimentLabel | None:
    """The post's sentiment label where it means something (social posts); a work order counts as negative."""
    if str(getattr(getattr(post, "source", None), "value", getattr(post, "source", ""))) in _REQUEST_SOURCES:
        return SentimentLabel.negative
    sentiment = getattr(post, "sentiment", None)
    label = sentiment if isinstance(sentiment, str) else getattr(sentiment, "label", None)  # a stored row: a str
    try:
        return SentimentLabel(label) if label else None
    except ValueError:
        return None


def _topic_of(post: object) -> str | None:
    topic = getattr(post, "topic", None)
    if isinstance(topic, str):  # a stored row carries the level-1 topic itself
        return topic or None
    return getattr(topic, "l1", None) if topic is not None else None


def anchor_keys(entities: Entities, focus: str | None = None) -> list[str]:
    """Distinct anchor keys among the entities' places and organisations, in first-seen order.

    With ``focus`` (a title, or the opening of the text) only names that appear in it count: a message
    names what it is about up front, while names deep in the body are context (and extraction slips).
    """
    out: list[str] = []
    for name in [*entities.places, *entities.orgs]:
        key = anchor_key(name)
        if key and key not in out and (focus is None or key in focus):
            out.append(key)
    return out


def focus_text(post: AnalyzedPost) -> str:
    """Where a post names its subject: the title, or the first ``FOCUS_CHARS`` characters of the text."""
    if post.title:
        return _WS.sub("", post.title)
    return _WS.sub("", post.text_norm or post.text)[:FOCUS_CHARS]


_CJK_OR_WORD = re.compile(r"[0-9A-Za-z\u3400-\u9fff]")


# Words in nearly every complaint: sharing them says nothing about sharing a problem.
_COMMON_WORDS = frozenset(
    {
        "小区", "业主", "居民", "我们", "问题", "反映", "投诉", "举报", "领导", "部门", "相关", "政府",
        "严重", "希望", "请求", "要求", "生活", "影响", "情况", "解决", "处理", "目前", "现在", "已经", "没有",
        "进行", "工作", "你好", "您好", "尊敬", "谢谢", "请问", "市民", "群众", "有关", "时间", "一直", "至今",
        # The hotline's and the mailbox's own formulas: every work order has them.
        "来电", "来电人", "市民来电", "热线", "诉求", "尽快", "出现", "联系", "电话", "联系电话", "联系人", "告知",
        "各位", "恳请", "给予", "答复", "望", "盼复", "本人",
        # What a work order asks of a department ("请应急管理部门立即核查"): the same in every matter.
        "立即", "管理", "核查", "调查", "依法", "查处", "督促", "整改", "监管", "加强", "协调", "部门介入",
    }
)  # fmt: skip
# A number (a phone, an amount, a count) says nothing about which matter a post is about.
_NUMBER = re.compile(r"^[0-9０-９.,:%-]+$")


def content_words(tokens: Iterable[str]) -> frozenset[str]:
    """Tokens of 2+ characters minus complaint boilerplate and bare numbers."""
    return frozenset(t for t in tokens if len(t) >= 2 and t not in _COMMON_WORDS and not _NUMBER.match(t))


def content_tokens(post: AnalyzedPost) -> frozenset[str]:
    """Content words for the anchor similarity: tokens of 2+ characters minus complaint boilerplate.

    Without tokens (an analyze stage without a segmenter) character bigrams of the text stand in.
    """
    # The segmenter already dropped punctuation-only tokens and lower-cased ASCII.
    tokens = content_words(post.tokens)
    if tokens:
        return tokens
    text = "".join(ch for ch in (post.text_norm or post.full_text) if _CJK_OR_WORD.match(ch))
    return frozenset(text[i : i + 2] for i in range(len(text) - 1))


MAX_NAME_CHARS = 8


def place_names(entities: Entities, anchors: Sequence[str] = (), towns: Sequence[str] = ()) -> list[str]:
    """Every place and organisation name of a post: entities, districts, anchor keys and towns (not the
    ``district/topic`` keys, whose topic part is not a name)."""
    names = [*entities.places, *entities.orgs, *entities.districts, *anchors]
    names.extend(t for t in towns if "/" not in t)
    # Longer "names" are extraction slips that swallowed a clause ("好多孩子中午吃完学校"): their words are
    # what happened, not where.
    return [n for n in (_WS.sub("", n) for n in names) if 0 < len(n) <= MAX_NAME_CHARS]


def matter_tokens(tokens: frozenset[str], names: Sequence[str]) -> frozenset[str]:
    """The content words that are not part of a place or organisation name: what a post says happened."""
    if not names:
        return tokens
    return frozenset(t for t in tokens if not any(t in name for name in names))


def dice(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice similarity of two sets, 2|A∩B| / (|A| + |B|) (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))


DISTRICT_CONTAINMENT = 0.4  # share of a post's matter words a district's breaking matter must already use
PLACE_BURST_POSTS = 2  # posts naming a place within place_join_minutes that make an event "breaking" there
# ... and the event itself must be moving: this many posts (any wording, any place) within VELOCITY_SECONDS, or
# opened within VELOCITY_SECONDS. A place named all day (a big compound, a school) always has a few small everyday
# events that name it twice; a breaking matter draws reposts and copies by the minute, and a decaying one must
# not take the place's everyday posts in its tail.
VELOCITY_POSTS = 3
VELOCITY_SECONDS = 300.0
REPLAY_MEMORY = 10_000  # assignments remembered for retried batches (far more than one batch)
ORPHAN_MAX_POSTS = 3  # an event this small, opened by a place-naming post, may hand its copies to the place's matter
STRONG_MATTER_OVERLAP = 0.5  # word overlap that ties a post to an event even while its place has another
MIN_SHARED_WORDS = 2  # one shared word ("门口", "物业费") is chance in short posts, not a shared matter


def matter_overlap(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice of two posts' matter words, or 0 when they share fewer than ``MIN_SHARED_WORDS``."""
    if len(a & b) < MIN_SHARED_WORDS:
        return 0.0
    return dice(a, b)


def event_id_for(first_post_id: str) -> str:
    """The id of the event a post opens: derived from its id so replays agree."""
    return "ev-" + first_post_id[:16]


@dataclass(frozen=True)
class Assignment:
    """Where the clusterer put a post and why (``reason``: repost, near_dup, resubmission, anchor, town,
    place, district or new)."""

    event_id: str
    near_dup_of: str | None
    is_new_event: bool
    similarity: float
    reason: str = "new"
    anchor: str | None = None


@dataclass(slots=True)
class _Member:
    post_id: str
    ts: float
    tokens: frozenset[str]
    anchors: tuple[str, ...] = ()


@dataclass(slots=True)
class _PlaceStat:
    """One event at one place key: when it was last named there, how often, and its latest few times."""

    last: float
    count: int = 0
    recent: tuple[float, ...] = ()

    def add(self, ts: float) -> None:
        self.last = max(self.last, ts)
        self.count += 1
        self.recent = tuple(sorted((*self.recent, ts))[-PLACE_BURST_POSTS:])

    def breaking(self, ts: float, window: float) -> bool:
        """Named at the place ``PLACE_BURST_POSTS`` times within ``window`` seconds before ``ts`` (or after)."""
        return len(self.recent) >= PLACE_BURST_POSTS and abs(ts - self.recent[0]) <= window


def _place_assignment(best: tuple[int, float, str, str] | None, reason: str) -> Assignment | None:
    """The assignment for a place rule's best (posts at the place, similarity, event, key) candidate."""
    if best is None:
        return None
    _, similarity, event_id, key = best
    return Assignment(event_id=event_id, near_dup_of=None, is_new_event=False, similarity=round(similarity, 4),
                      reason=reason, anchor=key)


def _same_thing(a: str, b: str) -> bool:
    """Do two anchor keys name one thing (equal, one inside the other, or a 4+ char common ending)?"""
    if a in b or b in a:
        return True
    if a.endswith(_ORG_ENDINGS) or b.endswith(_ORG_ENDINGS):
        return False
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n >= 4


def _compatible(anchors: Sequence[str], other: Sequence[str]) -> bool:
    """False when both name specific anchors and none is the same thing: two compounds' or two companies'
    problems of one kind ("拖欠工资" at 城兴花园 and at 博远科技) are two matters, however alike the words."""
    return not anchors or not other or any(_same_thing(a, b) for a in anchors for b in other)


def _substrings(key: str) -> set[str]:
    return {key[i:j] for i in range(len(key)) for j in range(i + 2, len(key) + 1)}


def _ts(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


class EventClusterer:
    """LSH index over MinHash signatures plus an anchor index, both bounded by time windows.

    Not thread-safe: one instance per event-stage worker, used under the worker's lock.
    """

    def __init__(
        self,
        *,
        num_perm: int = 64,
        bands: int = 16,
        threshold: float = 0.5,
        window_hours: float = 72.0,
        anchor_window_days: float = 45.0,
        anchor_similarity: float = 0.15,
        members_per_event: int = 30,
        repost_window_days: float = 7.0,
        hot_window_hours: float = 12.0,
        town_similarity: float = 0.2,
        place_focus: float = 0.5,
        place_join_minutes: float = 15.0,
        max_posts: int = 100_000,
        gc_every: int = 2000,
    ) -> None:
        if num_perm % bands:
            raise ValueError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
        self.num_perm = num_perm
        self.bands = bands
        self.rows = num_perm // bands
        self.threshold = threshold
        self.window = timedelta(hours=window_hours).total_seconds()
        self.anchor_window = timedelta(days=anchor_window_days).total_seconds()
        self.anchor_similarity = anchor_similarity
        self.members_per_event = members_per_event
        self.repost_window = timedelta(days=repost_window_days).total_seconds()
        self.hot_window = timedelta(hours=hot_window_hours).total_seconds()
        self.town_similarity = town_similarity
        self.place_focus = place_focus
        self.place_join = place_join_minutes * 60.0
        # A ceiling on what the windows keep (a province's day can exceed any window): beyond it the oldest
        # entries go first, so memory stays bounded at any input rate (~5 KiB per indexed post).
        self.max_posts = max_posts
        self.gc_every = gc_every
        # band key -> the post in it, or a list of posts once two share it (most buckets hold one post: a bare
        # string saves a list object per band, a third of the index's memory).
        self._buckets: dict[int, str | list[str]] = {}
        self._sigs: dict[str, tuple[np.ndarray, str, float]] = {}  # post -> (signature, event, ts)
        self._sig_heap: list[tuple[float, str]] = []
        self._post_event: dict[str, tuple[str, float]] = {}  # post -> (event, ts), for reposts
        self._anchored: set[str] = set()  # events with an anchor or a town: only their members' words are kept
        self._with_anchor: set[str] = set()  # events with a specific anchor (words kept for the anchor window)
        self._post_heap: list[tuple[float, str]] = []
        # Resubmissions: the same text sent again days or weeks later (no answer yet) is matched on a few
        # long bands over the anchor window; only event ids are kept, not signatures, so it stays small.
        self._long: dict[int, tuple[str, float, str]] = {}  # band -> (event, ts, post)
        self._long_heap: list[tuple[float, int]] = []
        self._members: dict[str, deque[_Member]] = {}  # event -> its most recent members
        self._event_last: dict[str, float] = {}
        self._event_posts: dict[str, int] = {}  # event -> posts indexed into it (the share naming a place)
        self._event_negative: dict[str, int] = {}  # event -> its negative posts (a breaking matter's mood)
        self._event_recent: dict[str, tuple[float, ...]] = {}  # event -> its latest VELOCITY_POSTS times
        self._event_opened: dict[str, float] = {}  # event -> its first post's time
        self._anchors: dict[str, dict[str, _PlaceStat]] = {}  # anchor key -> event -> its use of the anchor
        self._sub_index: dict[str, set[str]] = {}  # substring (2+ chars) -> anchor keys containing it
        self._towns: dict[str, dict[str, _PlaceStat]] = {}  # town (or district key) -> event -> stats in window
        # Young events opened by a post naming a place: opened (or last re-homed) at, anchors, towns.
        self._orphans: dict[str, tuple[float, tuple[str, ...], tuple[str, ...]]] = {}
        self._since_gc = 0
        # The latest assignments by post id: a batch that failed after assignment (its database write was cut)
        # is retried with the same posts, which must get the same answer and not be counted twice.
        self._assigned: OrderedDict[str, Assignment] = OrderedDict()
        self._latest = float("-inf")

    # ---- public API -------------------------------------------------------------------------------

    def assign(self, post: AnalyzedPost) -> Assignment:
        """Choose the post's event (repost > near-duplicate > resubmission > specific place (anchor, town, or
        the place's breaking matter) > district's breaking matter > district and topic > new); index the post."""
        replayed = self._assigned.get(post.id)
        if replayed is not None:
            return replayed
        ts = _ts(post.published_at)
        sig = self._signature(post)
        anchors = anchor_keys(post.entities, focus_text(post))
        towns = town_keys(post.entities, _topic_of(post))
        tokens = matter_tokens(content_tokens(post), place_names(post.entities, anchors, towns))
        mood = _mood(post)
        assignment = self._match_seen(post.id)
        if assignment is None:
            by_content = (
                self._match_near_dup(post.id, sig, ts)
                or self._match_resubmission(post.id, sig, ts)
                or self._match_specific_place(anchors, towns, tokens, ts, mood)
                or self._match_district(post.entities, tokens, anchors, ts, mood)
                or self._match_town([t for t in towns if "/" in t], tokens, anchors, ts)
            )
            assignment = (
                self._match_repost(post, ts, by_content)
                or by_content
                or Assignment(event_id=event_id_for(post.id), near_dup_of=None, is_new_event=True, similarity=0.0)
            )
            assignment = self._rehome(assignment, anchors, [t for t in towns if "/" not in t], ts, mood)
        self._index(post.id, assignment.event_id, ts, sig, tokens, anchors, towns + district_keys(post.entities),
                    negative=mood == SentimentLabel.negative)
        if len(self._sigs) > self.max_posts or len(self._post_event) > self.max_posts:
            self._expire_signatures(float("-inf"))
            self._expire_posts(float("-inf"))
            self._expire_long_bands(float("-inf"))
        self._assigned[post.id] = assignment
        if len(self._assigned) > REPLAY_MEMORY:
            self._assigned.popitem(last=False)
        self._since_gc += 1
        if self._since_gc >= self.gc_every:
            self.garbage_collect(datetime.fromtimestamp(self._latest, UTC))
        return assignment

    @property
    def latest_published(self) -> datetime | None:
        """The latest publication time indexed so far (the stream's clock), or None before the first post."""
        return None if self._latest == float("-inf") else datetime.fromtimestamp(self._latest, UTC)

    def garbage_collect(self, now: datetime) -> int:
        """Forget entries too old to match any post published from ``now`` on; return how many went."""
        self._since_gc = 0
        t = _ts(now)
        dropped = self._expire_signatures(t - self.window)
        cutoff = t - self.anchor_window
        self._expire_long_bands(cutoff)
        self._expire_posts(t - self.repost_window)
        stale = [e for e, last in self._event_last.items() if last < cutoff]
        excess = len(self._event_last) - len(stale) - self.max_posts
        if excess > 0:  # one new event per post, all inside the window: the least recently active go
            stale += heapq.nsmallest(excess, (e for e, last in self._event_last.items() if last >= cutoff),
                                     key=self._event_last.__getitem__)
        for event_id in stale:
            del self._event_last[event_id]
            self._event_posts.pop(event_id, None)
            self._event_negative.pop(event_id, None)
            self._event_recent.pop(event_id, None)
            self._event_opened.pop(event_id, None)
            self._members.pop(event_id, None)
            self._anchored.discard(event_id)
            self._with_anchor.discard(event_id)
        hot_cutoff = t - self.hot_window
        for event_id in [e for e, (at, _, _) in self._orphans.items() if at < t - self.place_join]:
            del self._orphans[event_id]
        # Events kept only for the hot-window rule need their words for the hot window, not the anchor window.
        for event_id in [e for e in self._anchored - self._with_anchor
                         if self._event_last.get(e, float("-inf")) < hot_cutoff]:
            self._members.pop(event_id, None)
            self._anchored.discard(event_id)
        for town in list(self._towns):
            town_events = self._towns[town]
            for event_id in [e for e, stat in town_events.items() if stat.last < hot_cutoff]:
                del town_events[event_id]
            if not town_events:
                del self._towns[town]
        for anchor in list(self._anchors):
            events = self._anchors[anchor]
            for event_id in [e for e, stat in events.items() if stat.last < cutoff]:
                del events[event_id]
            if not events:
                del self._anchors[anchor]
                for sub in _substrings(anchor):
                    keys = self._sub_index.get(sub)
                    if keys is not None:
                        keys.discard(anchor)
                        if not keys:
                            del self._sub_index[sub]
        return dropped

    def _expire_signatures(self, cutoff: float) -> int:
        """Drop near-duplicate entries published before ``cutoff``, and the oldest beyond ``max_posts``."""
        dropped = 0
        while self._sig_heap and (self._sig_heap[0][0] < cutoff or len(self._sigs) > self.max_posts):
            ts, pid = heapq.heappop(self._sig_heap)
            entry = self._sigs.get(pid)
            if entry is None or entry[2] != ts:
                continue
            del self._sigs[pid]
            dropped += 1
            for key in self._band_keys(entry[0]):
                bucket = self._buckets.get(key)
                if bucket is None:
                    continue
                if isinstance(bucket, str):
                    if bucket == pid:
                        del self._buckets[key]
                    continue
                with contextlib.suppress(ValueError):  # trimmed from a crowded bucket already
                    bucket.remove(pid)
                if not bucket:
                    del self._buckets[key]
        return dropped

    def _expire_long_bands(self, cutoff: float) -> None:
        # Four bands per post: the cap is in bands, so the resubmission index holds about max_posts posts.
        cap = self.max_posts * (self.num_perm // LONG_ROWS)
        while self._long_heap and (self._long_heap[0][0] < cutoff or len(self._long) > cap):
            ts, band = heapq.heappop(self._long_heap)
            long_entry = self._long.get(band)
            if long_entry is not None and long_entry[1] == ts:
                del self._long[band]

    def _expire_posts(self, cutoff: float) -> None:
        while self._post_heap and (self._post_heap[0][0] < cutoff or len(self._post_event) > self.max_posts):
            ts, pid = heapq.heappop(self._post_heap)
            post_entry = self._post_event.get(pid)
            if post_entry is not None and post_entry[1] == ts:
                del self._post_event[pid]

    def rebuild(self, rows: Iterable[AnalyzedPost | SignatureRow]) -> int:
        """Restore the index after a restart from stored posts; return how many were indexed.

        Feed the posts of the last ``anchor_window_days``. Full posts restore everything; signature rows
        restore the near-duplicate and resubmission indexes, plus anchors when they also carry
        ``entities``, ``title`` and ``tokens``. Rows are replayed in publication order, as first assigned.
        """
        items = sorted(rows, key=lambda r: (_ts(r.published_at), r.post_id if isinstance(r, SignatureRow) else r.id))
        n = 0
        for row in items:
            if isinstance(row, SignatureRow):
                sig = np.asarray(row.signature, dtype=np.int64)
                if sig.size != self.num_perm or np.all(sig == EMPTY_SIGNATURE_VALUE):
                    sig = np.empty(0, dtype=np.int64)
                # Rows may carry what anchors need (entities, title, tokens) if the store provides them.
                entities = getattr(row, "entities", None)
                focus = _WS.sub("", getattr(row, "title", "") or getattr(row, "text_norm", "")[:FOCUS_CHARS])
                tokens = content_words(getattr(row, "tokens", None) or ())
                anchors = anchor_keys(entities, focus) if isinstance(entities, Entities) else []
                towns = town_keys(entities, _topic_of(row)) if isinstance(entities, Entities) else []
                if isinstance(entities, Entities):
                    tokens = matter_tokens(tokens, place_names(entities, anchors, towns))
                    towns += district_keys(entities)
                self._index(row.post_id, row.event_id, _ts(row.published_at), sig, tokens, anchors, towns,
                            negative=_mood(row) == SentimentLabel.negative)
            else:
                if not row.event_id:
                    continue
                anchors = anchor_keys(row.entities, focus_text(row))
                towns = town_keys(row.entities, _topic_of(row))
                tokens = matter_tokens(content_tokens(row), place_names(row.entities, anchors, towns))
                self._index(row.id, row.event_id, _ts(row.published_at), self._signature(row), tokens, anchors,
                            towns + district_keys(row.entities), negative=_mood(row) == SentimentLabel.negative)
            n += 1
        if items:
            self.garbage_collect(datetime.fromtimestamp(self._latest, UTC))
        log.info("event clusterer rebuilt from %d stored posts", n)
        return n

    def stats(self) -> dict[str, int]:
        """Sizes of the in-memory structures (for metrics and the memory-bound test)."""
        return {
            "signatures": len(self._sigs),
            "long_bands": len(self._long),
            "buckets": len(self._buckets),
            "posts": len(self._post_event),
            "events": len(self._event_last),
            "members": sum(len(m) for m in self._members.values()),
            "anchors": len(self._anchors),
            "towns": len(self._towns),
        }

    # ---- matching ---------------------------------------------------------------------------------

    def _match_seen(self, pid: str) -> Assignment | None:
        """A post already indexed keeps its event; so does a late original whose repost came first."""
        known = self._post_event.get(pid)
        if known is None:
            return None
        return Assignment(event_id=known[0], near_dup_of=None, is_new_event=False, similarity=1.0, reason="repost")

    def _match_repost(self, post: AnalyzedPost, ts: float, by_content: Assignment | None) -> Assignment | None:
        if not post.repost_of:
            return None
        original = post_id(post.source, post.repost_of)
        known = self._post_event.get(original)
        if known is not None:
            event_id, is_new = known[0], False
        else:
            # The original is unseen (late, or outside the window). The repost joins what its own text
            # matches, else opens the event the original would open; either way the original is
            # registered there, so a late original joins its reposts (arrival order across partitions
            # is not publication order).
            if by_content is not None:
                event_id, is_new = by_content.event_id, False
            else:
                event_id = event_id_for(original)
                is_new = event_id not in self._event_last
            self._post_event[original] = (event_id, ts)
            heapq.heappush(self._post_heap, (ts, original))
        return Assignment(event_id=event_id, near_dup_of=original, is_new_event=is_new, similarity=1.0,
                          reason="repost")

    def _match_near_dup(self, pid: str, sig: np.ndarray, ts: float) -> Assignment | None:
        if sig.size == 0:
            return None
        candidates: set[str] = set()
        for key in self._band_keys(sig):
            bucket = self._buckets.get(key)
            if isinstance(bucket, str):
                candidates.add(bucket)
            elif bucket:
                candidates.update(bucket)
        candidates.discard(pid)
        best: tuple[float, str] | None = None
        for cand in sorted(candidates):
            cand_sig, _event, cand_ts = self._sigs[cand]
            if abs(ts - cand_ts) > self.window:
                continue
            sim = float(np.mean(cand_sig == sig))
            if sim >= self.threshold and (best is None or sim > best[0]):
                best = (sim, cand)
        if best is None:
            return None
        sim, cand = best
        return Assignment(event_id=self._sigs[cand][1], near_dup_of=cand, is_new_event=False, similarity=sim,
                          reason="near_dup")

    def _match_resubmission(self, pid: str, sig: np.ndarray, ts: float) -> Assignment | None:
        if sig.size == 0:
            return None
        hits: dict[str, tuple[int, str]] = {}
        for key in self._long_keys(sig):
            entry = self._long.get(key)
            if entry is None or entry[2] == pid or abs(ts - entry[1]) > self.anchor_window:
                continue
            count, first = hits.get(entry[0], (0, entry[2]))
            hits[entry[0]] = (count + 1, first)
        if not hits:
            return None
        event_id, (count, other) = max(hits.items(), key=lambda kv: (kv[1][0], kv[0]))
        # Each matching long band proves LONG_ROWS equal slots: a lower bound of the estimated Jaccard.
        return Assignment(event_id=event_id, near_dup_of=other, is_new_event=False,
                          similarity=count * LONG_ROWS / self.num_perm, reason="resubmission")

    def _related_keys(self, key: str) -> set[str]:
        """Indexed anchor keys naming the same thing: equal, one inside the other, or a 4+ char common suffix.

        "劳动东路魅力之城" / "万科魅力之城" / "魅力之城" and "伊景园滨河苑" / "滨河苑" all meet.
        """
        related = set(self._sub_index.get(key, ()))  # keys containing this one
        n = len(key)
        for i in range(n):
            for j in range(i + 2, n + 1):
                if key[i:j] in self._anchors:  # keys inside this one
                    related.add(key[i:j])
        if not key.endswith(_ORG_ENDINGS):
            for i in range(0, n - 3):
                suffix = key[i:]
                related.update(k for k in self._sub_index.get(suffix, ()) if k.endswith(suffix))
        return related

    def _match_anchor(self, anchors: list[str], tokens: frozenset[str], ts: float) -> Assignment | None:
        if not anchors or not tokens:
            return None
        best: tuple[float, str, str] | None = None
        seen: set[str] = set()
        for anchor in anchors:
            for key in sorted(self._related_keys(anchor)):
                for event_id in sorted(self._anchors.get(key, {})):
                    if event_id in seen:
                        continue
                    seen.add(event_id)
                    if ts - self._event_last.get(event_id, float("-inf")) > self.anchor_window:
                        continue
                    sim = max(
                        (matter_overlap(tokens, m.tokens) for m in self._members.get(event_id, ())
                         if abs(ts - m.ts) <= self.anchor_window),
                        default=0.0,
                    )
                    if sim >= self.anchor_similarity and (best is None or sim > best[0]):
                        best = (sim, event_id, key)
        if best is None:
            return None
        sim, event_id, anchor = best
        return Assignment(event_id=event_id, near_dup_of=None, is_new_event=False, similarity=sim,
                          reason="anchor", anchor=anchor)

    def _match_town(self, towns: list[str], tokens: frozenset[str], anchors: list[str], ts: float
                    ) -> Assignment | None:
        if not towns or not tokens:
            return None
        # Among the events that pass the word-overlap gate, the one the town talks about most wins: a breaking
        # matter draws most of a town's posts in those hours, an everyday one a few.
        best: tuple[int, float, str, str] | None = None
        for town in towns:
            for event_id, stat in sorted(self._towns.get(town, {}).items()):
                count = stat.count
                if abs(ts - stat.last) > self.hot_window:
                    continue
                sim = max((matter_overlap(tokens, m.tokens) for m in self._members.get(event_id, ())
                           if abs(ts - m.ts) <= self.hot_window and _compatible(anchors, m.anchors)), default=0.0)
                if sim >= self.town_similarity and (best is None or (count, sim) > best[:2]):
                    best = (count, sim, event_id, town)
        return _place_assignment(best, "town")

    def _match_specific_place(self, anchors: list[str], towns: list[str], tokens: frozenset[str], ts: float,
                              mood: SentimentLabel | None = None) -> Assignment | None:
        """Rules 3-5 for the post's specific places: a word match, unless the place has a breaking matter.

        While a place has a breaking matter, a post about the place belongs to it unless its words tie it
        clearly (``STRONG_MATTER_OVERLAP``) to another of the place's events: two shared everyday words
        ("家长", "门口") with a routine event must not pull an eyewitness post away from the incident.
        """
        by_words = self._match_anchor(anchors, tokens, ts) or self._match_town(
            [t for t in towns if "/" not in t], tokens, anchors, ts)
        breaking = self._match_place(anchors, towns, ts, mood)
        if breaking is None or (by_words is not None and (by_words.event_id == breaking.event_id
                                                          or by_words.similarity >= STRONG_MATTER_OVERLAP)):
            return by_words
        return breaking

    def _moving(self, event_id: str, ts: float) -> bool:
        """Is the event young (opened within ``VELOCITY_SECONDS``), or did it take ``VELOCITY_POSTS`` posts within
        ``VELOCITY_SECONDS`` of ``ts``? A matter's first minutes count: its second eyewitness may come before its
        third post."""
        if abs(ts - self._event_opened.get(event_id, float("-inf"))) <= VELOCITY_SECONDS:
            return True
        recent = self._event_recent.get(event_id, ())
        return len(recent) >= VELOCITY_POSTS and abs(ts - recent[0]) <= VELOCITY_SECONDS

    def _event_anchors(self, event_id: str) -> list[str]:
        """The specific anchors its recent members name (those whose words are kept)."""
        return sorted({a for m in self._members.get(event_id, ()) for a in m.anchors})

    def _mood_clash(self, event_id: str, mood: SentimentLabel | None) -> bool:
        """A positive post is no eyewitness of a mostly negative matter ("菜很新鲜" beside "冒黑烟")."""
        if mood != SentimentLabel.positive:
            return False
        return 2 * self._event_negative.get(event_id, 0) >= self._event_posts.get(event_id, 0)

    def _rehome(self, assignment: Assignment, anchors: list[str], towns: list[str], ts: float,
                mood: SentimentLabel | None = None) -> Assignment:
        """Send copies of a stray's text to the breaking matter at the stray's place.

        An eyewitness post that arrives before the matter's event has a second post at the place opens an
        event of its own (an *orphan*), and its copies would then pile up there as a second event about the
        same incident. While the orphan is young and small, a copy joins the place's breaking event instead.
        """
        if assignment.is_new_event:
            if anchors or towns:
                self._orphans[assignment.event_id] = (ts, tuple(anchors), tuple(towns))
            return assignment
        orphan = self._orphans.get(assignment.event_id)
        if (orphan is None or assignment.reason not in ("near_dup", "resubmission")
                or abs(ts - orphan[0]) > self.place_join
                or self._event_posts.get(assignment.event_id, 0) >= ORPHAN_MAX_POSTS):
            return assignment
        # Only a copy that itself names the orphan's place: templates that differ in the place are other matters.
        home = self._match_place([a for a in anchors if a in orphan[1]], [t for t in towns if t in orphan[2]], ts,
                                 mood)
        if home is None or home.event_id == assignment.event_id:
            return assignment
        self._orphans[assignment.event_id] = (max(orphan[0], ts), orphan[1], orphan[2])
        return dataclasses.replace(home, near_dup_of=assignment.near_dup_of)

    def _match_place(self, anchors: list[str], towns: list[str], ts: float, mood: SentimentLabel | None = None
                     ) -> Assignment | None:
        """Join on a shared place alone: only an event that is about the place and active there right now.

        ``district/topic`` keys never qualify: a district is too broad for its name alone to say "the same
        matter". ``similarity`` is the event's share of posts naming the place.
        """
        keyed: list[tuple[bool, str, dict[str, _PlaceStat]]] = [
            (True, key, self._anchors.get(key, {})) for anchor in anchors for key in sorted(self._related_keys(anchor))
        ]
        keyed += [(False, town, self._towns.get(town, {})) for town in towns if "/" not in town]
        # The event the place talks about most wins: during a breaking matter that is the matter's event.
        best: tuple[int, float, str, str] | None = None
        for specific, key, events in keyed:
            for event_id, stat in sorted(events.items()):
                if (not stat.breaking(ts, self.place_join) or not self._moving(event_id, ts)
                        or self._mood_clash(event_id, mood)):
                    continue
                if not specific and anchors and not _compatible(anchors, self._event_anchors(event_id)):
                    # The post's company or compound against an event about other ones: the town is all they
                    # share. A busy town has dozens of posts a minute, so some everyday event there (a complaint
                    # template that named the town twice) looks "breaking" before an incident's own event does.
                    continue
                count = stat.count
                focus = count / max(1, self._event_posts.get(event_id, 0))
                if focus >= self.place_focus and (best is None or (count, focus) > best[:2]):
                    best = (count, focus, event_id, key)
        return _place_assignment(best, "place")

    def _match_district(self, entities: Entities, tokens: frozenset[str], anchors: list[str], ts: float,
                        mood: SentimentLabel | None = None) -> Assignment | None:
        """Join a breaking matter of the post's district on shared matter words, whatever the topics say.

        A follow-up often names only the district ("我们班八个孩子没来上课，A3区要彻查") and the topic
        classifier may file it elsewhere than the first posts; an event about the district and active there
        within ``place_join_minutes`` takes it when most of the post's matter words are in the event's recent
        vocabulary (at least ``MIN_SHARED_WORDS`` and ``DISTRICT_CONTAINMENT`` of them): eyewitnesses each
        say a part of what the event as a whole says, so no single member need share much with them.
        """
        if len(tokens) < MIN_SHARED_WORDS:
            return None
        best: tuple[int, float, str, str] | None = None
        for key in district_keys(entities):
            for event_id, stat in sorted(self._towns.get(key, {}).items()):
                count = stat.count
                if (not stat.breaking(ts, self.place_join) or not self._moving(event_id, ts)
                        or self._mood_clash(event_id, mood)
                        or count / max(1, self._event_posts.get(event_id, 0)) < self.place_focus):
                    continue
                found: set[str] = set()  # the post's words that the event's recent members use
                for m in self._members.get(event_id, ()):
                    if abs(ts - m.ts) <= self.hot_window and _compatible(anchors, m.anchors):
                        found |= tokens & m.tokens
                shared = len(found)
                sim = shared / len(tokens)
                if shared >= MIN_SHARED_WORDS and sim >= DISTRICT_CONTAINMENT and (
                        best is None or (count, sim) > best[:2]):
                    best = (count, sim, event_id, key)
        return _place_assignment(best, "district")

    # ---- indexing ---------------------------------------------------------------------------------

    def _signature(self, post: AnalyzedPost) -> np.ndarray:
        sig = post.signature
        if len(sig) != self.num_perm:
            # Signature missing or made with another num_perm: compute it here so matching still works.
            sig = minhash_signature(post.text_norm or post.full_text, num_perm=self.num_perm)
        arr = np.asarray(sig, dtype=np.int64)
        if np.all(arr == EMPTY_SIGNATURE_VALUE):
            return np.empty(0, dtype=np.int64)  # empty text: never a near-duplicate of anything
        return arr

    def _long_keys(self, sig: np.ndarray) -> list[int]:
        n = self.num_perm // LONG_ROWS
        return [hash((b, sig[b * LONG_ROWS : (b + 1) * LONG_ROWS].tobytes())) for b in range(n)]

    def _band_keys(self, sig: np.ndarray) -> list[int]:
        # One int per band (Python's hash of the band's bytes; the index lives in one process and is rebuilt
        # at start-up, so a per-process hash seed is fine): a third of the memory of (band, bytes) keys. A
        # collision only adds a candidate, which the similarity check then rejects.
        if sig.size == 0:
            return []
        return [hash((b, sig[b * self.rows : (b + 1) * self.rows].tobytes())) for b in range(self.bands)]

    def _index(
        self, pid: str, event_id: str, ts: float, sig: np.ndarray, tokens: frozenset[str], anchors: list[str],
        towns: Sequence[str] = (), negative: bool = False,
    ) -> None:
        self._latest = max(self._latest, ts)
        if sig.size and pid not in self._sigs:
            self._sigs[pid] = (sig, event_id, ts)
            heapq.heappush(self._sig_heap, (ts, pid))
            for key in self._band_keys(sig):
                bucket = self._buckets.get(key)
                if bucket is None:
                    self._buckets[key] = pid
                    continue
                if isinstance(bucket, str):
                    bucket = self._buckets[key] = [bucket]
                bucket.append(pid)
                if len(bucket) > MAX_BUCKET:
                    # Boilerplate shared by very many posts: keep the newest, so lookups stay O(1).
                    del bucket[0]
        if sig.size:
            for key in self._long_keys(sig):
                if key not in self._long or self._long[key][1] <= ts:
                    self._long[key] = (event_id, ts, pid)
                    heapq.heappush(self._long_heap, (ts, key))
        self._post_event[pid] = (event_id, ts)
        heapq.heappush(self._post_heap, (ts, pid))
        self._event_last[event_id] = max(self._event_last.get(event_id, float("-inf")), ts)
        self._event_posts[event_id] = self._event_posts.get(event_id, 0) + 1
        self._event_recent[event_id] = tuple(sorted((*self._event_recent.get(event_id, ()), ts))[-VELOCITY_POSTS:])
        self._event_opened[event_id] = min(self._event_opened.get(event_id, ts), ts)
        if negative:
            self._event_negative[event_id] = self._event_negative.get(event_id, 0) + 1
        for anchor in anchors:
            events = self._anchors.get(anchor)
            if events is None:
                events = self._anchors[anchor] = {}
                for sub in _substrings(anchor):
                    self._sub_index.setdefault(sub, set()).add(anchor)
            events.setdefault(event_id, _PlaceStat(ts)).add(ts)
            self._anchored.add(event_id)
            self._with_anchor.add(event_id)
        for town in towns:
            town_events = self._towns.setdefault(town, {})
            town_events.setdefault(event_id, _PlaceStat(ts)).add(ts)
            if len(town_events) > TOWN_EVENTS:
                # A busy district sees many events a day: only the most recently active ones are candidates,
                # so a post costs O(TOWN_EVENTS) comparisons, never O(events in the window).
                del town_events[min(town_events, key=lambda e: town_events[e].last)]
            self._anchored.add(event_id)
        # Words are kept only where an anchor or town match can use them: most events never get one.
        if tokens and event_id in self._anchored:
            members = self._members.get(event_id)
            if members is None:
                members = self._members[event_id] = deque(maxlen=self.members_per_event)
            # Reposts and copies repeat one text: keeping each wording once keeps the event's range of words.
            same = next((m for m in members if m.tokens == tokens), None)
            if same is None:
                members.append(_Member(pid, ts, tokens, tuple(anchors)))
            else:
                same.ts = max(same.ts, ts)
