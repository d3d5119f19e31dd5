"""analyze.events: MinHash signatures, and the clusterer's repost / near-duplicate / anchor rules."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analyze.events import (
    EMPTY_SIGNATURE_VALUE,
    EventClusterer,
    anchor_key,
    estimated_jaccard,
    event_id_for,
    minhash_signature,
)
from analyze.normalize import normalize, text_for_scoring
from analyze.segment import tokenize
from core.records import AnalyzedPost, Entities, Sentiment, SentimentLabel, Topic, post_id
from core.store.base import SignatureRow

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mailbox"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)

MIXER = (
    "A2区暮云街道丽发新城小区旁边新建了一个混凝土搅拌站，每天从早上六点到半夜都在施工，噪音巨大，"
    "粉尘漫天，小区里的老人和小孩根本没法开窗，晾的衣服全是灰。我们多次向环保部门反映，至今没有任何处理，"
    "请领导尽快派人调查，依法取缔这个没有环评手续的搅拌站，还居民一个安静干净的生活环境。"
)
MIXER_EDIT = MIXER.replace("每天从早上六点到半夜", "每天从清晨五点一直到深夜").replace("请领导", "恳请各位领导")
MIXER_OWN_WORDS = (
    "丽发新城小区的业主再次投诉：小区西侧的搅拌站昼夜施工，搅拌机和运输车的噪音让人无法入睡，"
    "粉尘污染严重，孩子咳嗽不止。这个搅拌站到底有没有环评手续？环保部门为什么不管？"
)
PARKING = (
    "丽发新城小区物业擅自把小区地面停车位划给外来车辆收费停放，业主自己反而没有车位，"
    "物业公司还要求业主购买每月三百元的停车卡，请相关部门核查物业收费是否合规。"
)
BUS = (
    "A市地铁二号线西延线的施工围挡占用了枫林路大部分车道，早晚高峰堵车严重，公交车经常晚点半小时以上，"
    "希望交通部门优化围挡设置，增加交警疏导，并公布施工的完工时间。"
)
TEACHER = (
    "A3区某小学的老师在课后向学生推销课外辅导资料，每本一百多元，不买的学生被老师点名批评，家长们很有意见，"
    "请教育局调查处理，规范教师的职业行为。"
)


def make_post(
    n: int | str,
    text: str,
    *,
    hours: float = 0.0,
    title: str = "",
    places: tuple[str, ...] = (),
    orgs: tuple[str, ...] = (),
    repost_of: str | None = None,
    source: str = "mailbox",
    districts: tuple[str, ...] = (),
    topic: str = "城乡建设",
    sentiment: SentimentLabel = SentimentLabel.negative,
) -> AnalyzedPost:
    scoring = text_for_scoring(f"{title}\n{text}" if title else text)
    return AnalyzedPost(
        id=post_id(source, str(n)), source=source, external_id=str(n), title=title, text=text,
        published_at=T0 + timedelta(hours=hours), repost_of=repost_of,
        text_norm=normalize(text), tokens=tokenize(scoring),
        sentiment=Sentiment(label=sentiment, score=0.8 if sentiment == SentimentLabel.negative else 0.2),
        topic=Topic(l1=topic),
        entities=Entities(places=list(places), orgs=list(orgs), districts=list(districts)),
        signature=minhash_signature(scoring),
    )


# ---- signatures --------------------------------------------------------------------------------


def test_signature_shape_and_empty_text():
    sig = minhash_signature(MIXER)
    assert len(sig) == 64 and all(0 <= v < 2**32 for v in sig)
    assert len(minhash_signature(MIXER, num_perm=128)) == 128
    assert minhash_signature("") == [EMPTY_SIGNATURE_VALUE] * 64
    assert minhash_signature(" \n\t ") == [EMPTY_SIGNATURE_VALUE] * 64
    assert len(minhash_signature("短")) == 64  # shorter than a shingle still gets a signature
    with pytest.raises(ValueError):
        minhash_signature(MIXER, num_perm=0)


def test_signature_estimates_similarity():
    assert estimated_jaccard(minhash_signature(MIXER), minhash_signature(MIXER + " ")) == 1.0
    assert estimated_jaccard(minhash_signature(MIXER), minhash_signature(MIXER_EDIT)) >= 0.6
    for other in (BUS, TEACHER, PARKING):
        assert estimated_jaccard(minhash_signature(MIXER), minhash_signature(other)) <= 0.2


def test_signature_is_the_same_in_another_process():
    code = (
        "import json; from analyze.events import minhash_signature; "
        f"print(json.dumps(minhash_signature({MIXER!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout) == minhash_signature(MIXER)


# ---- anchors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("A市A2区丽发新城小区", "丽发新城"),
        ("丽发新城", "丽发新城"),
        ("暮云街道丽发新城社区", "丽发新城"),
        ("金麓小区", "金麓"),
        ("西地省聚利人普惠投资有限公司", "聚利人普惠投资有限公司"),
        ("A3区", None),
        ("暮云街道", None),
        ("A市教育局", None),
        ("市委市政府", None),
        ("物业公司", None),
        ("我们小区", None),
        ("导致小区", None),
    ],
)
def test_anchor_keys_keep_specific_names_only(name, key):
    assert anchor_key(name) == key


# ---- clustering ----------------------------------------------------------------------------------


def test_repost_joins_the_original_event_even_when_it_arrives_first():
    c = EventClusterer()
    original = make_post("w1", MIXER, source="weibo")
    repost = make_post("w2", "转发微博", hours=1, repost_of="w1", source="weibo")
    a = c.assign(original)
    b = c.assign(repost)
    assert a.is_new_event and a.event_id == event_id_for(original.id)
    assert (b.event_id, b.near_dup_of, b.reason, b.is_new_event) == (a.event_id, original.id, "repost", False)

    late = EventClusterer()
    first = late.assign(make_post("w2", "转发微博", repost_of="w1", source="weibo"))
    then = late.assign(make_post("w1", MIXER, hours=-1, source="weibo"))
    assert first.event_id == then.event_id == event_id_for(original.id)


def test_arrival_out_of_publication_order_still_gives_one_event():
    # Partitions deliver a copy-paste variant, then a repost, then the original they both come from.
    c = EventClusterer()
    variant = c.assign(make_post("w5", MIXER_EDIT, hours=1, source="weibo"))
    repost = c.assign(make_post("w9", "转发：" + MIXER, hours=2, repost_of="w1", source="weibo"))
    original = c.assign(make_post("w1", MIXER, source="weibo"))
    assert variant.is_new_event
    assert repost.event_id == original.event_id == variant.event_id
    assert repost.reason == "repost" and repost.near_dup_of == make_post("w1", MIXER, source="weibo").id


def test_copy_paste_variants_join_and_unrelated_posts_do_not():
    c = EventClusterer()
    a = c.assign(make_post(1, MIXER))
    b = c.assign(make_post(2, MIXER_EDIT, hours=5))
    d = c.assign(make_post(3, BUS, hours=6))
    e = c.assign(make_post(4, TEACHER, hours=7))
    assert b.event_id == a.event_id and b.reason == "near_dup" and b.near_dup_of == make_post(1, MIXER).id
    assert b.similarity >= 0.5
    assert d.is_new_event and e.is_new_event
    assert len({a.event_id, d.event_id, e.event_id}) == 3


def test_anchor_joins_reworded_messages_about_one_compound_but_not_other_problems():
    c = EventClusterer()
    a = c.assign(make_post(1, MIXER, title="A2区丽发新城小区旁搅拌站噪音扰民", places=("丽发新城小区", "A2区")))
    b = c.assign(make_post(2, MIXER_OWN_WORDS, hours=24 * 9, title="丽发新城搅拌站昼夜生产",
                           places=("丽发新城",)))
    p = c.assign(make_post(3, PARKING, hours=24 * 10, title="丽发新城小区物业乱收停车费",
                           places=("丽发新城小区",)))
    t = c.assign(make_post(4, TEACHER, hours=24 * 11, title="A2区小学老师推销资料", places=("A2区",)))
    assert (b.event_id, b.reason, b.anchor) == (a.event_id, "anchor", "丽发新城")
    assert p.event_id != a.event_id  # same compound, different problem
    assert t.is_new_event  # sharing only a district is not enough


# A breaking incident in one town, told in different words by different people (no shared text, no anchor).
BLAST = "A7县青石镇那边一股很冲的化学品味道，刺鼻得眼睛疼，是不是工厂出事了？"
SMELL = "青石镇这边的味道越来越大了，孩子一直咳嗽，A7县有没有人出来说明一下？"
WORRY = "有没有青石镇的朋友，现在空气检测结果出来没有？家里孩子咳嗽很担心。"
MARKET = "青石镇农贸市场周末新开了几个摊位，蔬菜水果都很新鲜，价格也实惠。"


def test_a_breaking_matter_takes_posts_that_share_only_its_place():
    c = EventClusterer(hot_window_hours=12, window_hours=12)
    a = c.assign(make_post(1, BLAST, places=("A7县", "青石镇"), source="weibo"))
    for k in range(3):  # a breaking matter moves: copies by the minute
        c.assign(make_post(f"copy{k}", "转发：" + BLAST, hours=0.04 + k / 100, places=("A7县", "青石镇"),
                           source="weibo"))
    # Shares one word (味道) with the first posts: only the place and the time tie it to them.
    b = c.assign(make_post(2, SMELL, hours=0.1, places=("A7县", "青石镇"), source="weibo"))
    w = c.assign(make_post(3, WORRY, hours=0.15, places=("青石镇",), source="weibo"))
    # Same town, same minutes, but a cheerful everyday post: no eyewitness of the matter.
    m = c.assign(make_post(4, MARKET, hours=0.2, places=("青石镇",), source="weibo", sentiment=SentimentLabel.positive))
    assert (b.event_id, b.reason, b.anchor) == (a.event_id, "place", "青石镇")
    assert (w.event_id, w.reason) == (a.event_id, "town")  # matched on the reworded follow-up's words
    assert m.is_new_event
    # An hour on the matter is no longer breaking, but shared words still join within the hot window ...
    again = "青石镇今天空气检测结果出来了吗？孩子还在咳嗽"
    joined = c.assign(make_post(5, again, hours=1, places=("青石镇",), source="weibo"))
    assert (joined.event_id, joined.reason) == (a.event_id, "town")
    # ... while a post sharing only the town opens its own event.
    quiet = c.assign(make_post(6, "青石镇路口的红绿灯坏了，早上堵了半小时", hours=1.2, places=("青石镇",),
                               source="weibo"))
    assert quiet.is_new_event
    # The next day the town's (and the near-duplicate) window has passed: the same words open a new event.
    later = c.assign(make_post(7, "青石镇的空气好点了吗，孩子咳嗽有没有好转？", hours=30, places=("青石镇",),
                               source="weibo"))
    assert later.is_new_event


def test_a_retried_batch_gets_the_same_events_and_is_not_counted_twice():
    # The event stage's database write can fail after the clusterer assigned a batch; the retry presents the
    # same posts again. Counting them twice would make a place look "breaking" twice as fast.
    posts = [make_post(1, BLAST, places=("A7县", "青石镇"), source="weibo"),
             make_post(2, SMELL, hours=0.01, places=("A7县", "青石镇"), source="weibo"),
             make_post(3, WORRY, hours=0.02, places=("青石镇",), source="weibo"),
             make_post(4, "青石镇路口的红绿灯坏了，早上堵了半小时", hours=0.03, places=("青石镇",), source="weibo"),
             make_post(5, "青石镇菜市场今天的菜很新鲜", hours=0.04, places=("青石镇",), source="weibo"),
             make_post(6, "青石镇是不是出事了，好多消防车开过去", hours=0.05, places=("青石镇",), source="weibo")]
    once = EventClusterer(hot_window_hours=12, window_hours=12)
    want = [once.assign(p) for p in posts]
    retried = EventClusterer(hot_window_hours=12, window_hours=12)
    got = []
    for k in range(0, len(posts), 2):
        batch = posts[k:k + 2]
        first_try = [retried.assign(p) for p in batch]
        got += [retried.assign(p) for p in batch]  # the retry
        assert got[-len(batch):] == first_try
    assert got == want
    assert retried._event_posts == once._event_posts


def test_a_slow_everyday_event_at_a_busy_place_does_not_take_place_only_posts():
    # A big compound is named all day: two posts about its parking within minutes are not a breaking matter,
    # so an eyewitness post that shares only the compound's name opens its own event (the incident's).
    c = EventClusterer(hot_window_hours=12)
    parking = c.assign(make_post(1, "翠湖湾小区地下车库车位又涨价了，物业也不给个说法", places=("翠湖湾",),
                                 source="weibo"))
    c.assign(make_post(2, "翠湖湾车库涨价这事有人管吗？物业太霸道", hours=0.1, places=("翠湖湾",), source="weibo"))
    water = c.assign(make_post(3, "翠湖湾突然停水了，一点通知都没有，老人孩子在家怎么办", hours=0.15,
                               places=("翠湖湾",), source="weibo"))
    assert water.event_id != parking.event_id and water.is_new_event


def test_a_breaking_matter_does_not_join_an_everyday_event_on_place_words():
    """The soak's failure: an incident's first post slid into the routine event about the same street."""
    c = EventClusterer(hot_window_hours=12)
    fair = "A5区星港街道这周末有招聘会，8家企业，岗位挺多，找工作的朋友去看看。"
    for k in range(6):
        c.assign(make_post(f"fair{k}", fair.replace("8家", f"{k + 3}家"), hours=k / 10,
                           places=("A5区", "星港街道"), districts=("A5区",), source="weibo"))
    wages = "A5区星港街道城兴花园工地，城兴建设拖欠我们一百多个农民工半年工资，过年都回不了家。"
    first = c.assign(make_post("w", wages, hours=0.7, places=("A5区", "星港街道", "城兴花园"), districts=("A5区",),
                               source="weibo"))
    assert first.is_new_event  # "A5区", "星港", "街道" in common say nothing about the matter
    # Two companies' wage arrears in one district are two matters, however alike the words.
    other = c.assign(make_post("o", "A5区博远科技有限公司拖欠员工半年工资，农民工过年回不了家", hours=0.8,
                               orgs=("博远科技有限公司",), districts=("A5区",), source="hotline",
                               topic="劳动和社会保障"))
    assert other.event_id != first.event_id


def test_a_copy_of_an_early_eyewitness_post_joins_the_breaking_matter():
    c = EventClusterer(hot_window_hours=12)
    eyewitness = "青石镇工业园门口拉了警戒线，消防车一辆接一辆往里开。"
    # Arrives before the matter has a second post at the place: it opens an event of its own ...
    a = c.assign(make_post(1, BLAST, places=("青石镇",), source="weibo"))
    stray = c.assign(make_post("e", eyewitness, hours=0.01, places=("青石镇工业园",), source="weibo"))
    assert stray.is_new_event
    for k in range(3):
        c.assign(make_post(f"r{k}", "扩散！" + BLAST, hours=0.02 + k / 100, places=("青石镇",), source="weibo"))
    # ... but its copies go to the matter, so the incident does not become two events (and two tickets).
    copy = c.assign(make_post("e2", eyewitness + "#鑫源化工#", hours=0.1, places=("青石镇工业园",), source="weibo"))
    assert (copy.event_id, copy.reason) == (a.event_id, "place")


def test_an_incident_at_a_company_does_not_join_an_everyday_event_that_named_its_town_twice():
    """The 96 posts/s soak's split: a clinic-fee complaint template named 青石镇 twice in four minutes, so it looked
    "breaking" there when the chemical plant's first posts arrived, and took them on the town alone."""
    c = EventClusterer(hot_window_hours=12)
    fee = "来电人反映：在A7县{}就诊时被要求做多项不必要的检查，费用达{}元。诉求：请卫健部门调查处理并退还不合理费用"
    clinic = c.assign(make_post("f1", fee.format("妇幼保健院", 2400), places=("A7县", "青石镇"),
                                orgs=("A7县妇幼保健院",), districts=("A7县",), source="hotline", topic="卫生计生"))
    again = c.assign(make_post("f2", fee.format("社区卫生服务中心", 3800), hours=3 / 60, places=("A7县", "青石镇"),
                               orgs=("A7县社区卫生服务中心",), districts=("A7县",), source="hotline",
                               topic="卫生计生"))
    assert again.event_id == clinic.event_id  # one template, one everyday event, now named twice at 青石镇
    smell = "A7县青石镇工业园那边一股很冲的化学品味道，刺鼻得眼睛疼，鑫源化工是不是出事了？"
    first = c.assign(make_post("s1", smell, hours=4 / 60, places=("A7县", "青石镇工业园"), orgs=("鑫源化工",),
                               districts=("A7县",), source="weibo", topic="环境保护"))
    assert first.is_new_event, first.reason
    copy = c.assign(make_post("s2", smell.replace("？", "。"), hours=5 / 60, places=("A7县", "青石镇工业园"),
                              orgs=("鑫源化工",), districts=("A7县",), source="weibo", topic="环境保护"))
    assert copy.event_id == first.event_id
    # A post naming only the town still joins the matter breaking there (the plant's own event, once it moves).
    smell_town = c.assign(make_post("s3", "青石镇这边的味道越来越大了，孩子一直咳嗽，A7县有没有人出来说明一下？",
                                    hours=6 / 60, places=("青石镇",), districts=("A7县",), source="weibo"))
    assert smell_town.event_id == first.event_id, smell_town


def test_town_keys_find_the_town_inside_longer_names():
    from analyze.events import town_keys

    ents = Entities(places=["A7县青石镇工业园", "星沙街道", "A市A3区", "丽发新城"], districts=["A7县"])
    assert town_keys(ents) == ["青石镇", "星沙街道"]
    assert town_keys(ents, "安全生产") == ["青石镇", "星沙街道", "A7县/安全生产"]


def test_hot_window_prefers_the_event_the_town_talks_about_most():
    c = EventClusterer(hot_window_hours=12)
    # An everyday post in the town, then a breaking matter with many posts.
    drill = c.assign(make_post("d", "青石镇这边今天搞消防演练，孩子一直在看，有没有人去", places=("青石镇",),
                               source="weibo"))
    blast = c.assign(make_post(1, BLAST, hours=0.1, places=("青石镇工业园",), source="weibo"))
    for k in range(5):
        c.assign(make_post(f"r{k}", BLAST, hours=0.1 + k / 100, places=("青石镇工业园",), source="weibo"))
    # Shares more words with the drill (这边, 孩子, 有没有) than with the blast (味道), but the blast is what
    # the town is talking about right now.
    smell = c.assign(make_post(2, SMELL, hours=0.2, places=("A7县", "青石镇"), source="weibo"))
    assert blast.event_id != drill.event_id
    assert (smell.event_id, smell.reason) == (blast.event_id, "place")


def test_hot_window_district_needs_the_same_topic():
    c = EventClusterer(hot_window_hours=12)
    a = c.assign(make_post(1, "A3区明德小学好多孩子吃完学校配餐后上吐下泻，孩子都送医院了", districts=("A3区",),
                           topic="教育文体", source="weibo"))
    same = c.assign(make_post(2, "我们班有八个孩子没来上课，都是吃了学校配餐的，A3区要彻查", hours=1,
                              districts=("A3区",), topic="教育文体", source="weibo"))
    other = c.assign(make_post(3, "A3区这家医院的孩子挂号排队太久，学校体检也要排队", hours=1.5,
                               districts=("A3区",), topic="卫生计生", source="weibo"))
    assert (same.event_id, same.reason, same.anchor) == (a.event_id, "town", "A3区/教育文体")
    assert other.is_new_event


def test_gc_forgets_towns_after_the_hot_window():
    c = EventClusterer(hot_window_hours=12, anchor_window_days=1)
    c.assign(make_post(1, BLAST, places=("青石镇",), source="weibo"))
    assert c.stats()["towns"] == 1
    c.garbage_collect(T0 + timedelta(hours=13))
    assert c.stats()["towns"] == 0


def test_windows_expire_near_duplicates_and_anchors():
    c = EventClusterer(window_hours=72, anchor_window_days=30)
    a = c.assign(make_post(1, MIXER, title="丽发新城搅拌站", places=("丽发新城",)))
    late_copy = c.assign(make_post(2, BUS, hours=100))
    assert late_copy.is_new_event
    # A copy after the near-dup window still joins through its anchor within the anchor window ...
    b = c.assign(make_post(3, MIXER_EDIT, hours=24 * 20, title="丽发新城搅拌站", places=("丽发新城",)))
    assert (b.event_id, b.reason) == (a.event_id, "anchor")
    # ... and nothing joins once the anchor window has passed since the event's last post.
    far = c.assign(make_post(4, MIXER, hours=24 * 20 + 24 * 31, title="丽发新城搅拌站", places=("丽发新城",)))
    assert far.is_new_event


def test_resubmission_weeks_later_joins_without_an_anchor():
    c = EventClusterer(window_hours=72, anchor_window_days=45)
    a = c.assign(make_post(1, BUS))
    again = c.assign(make_post(2, BUS + "！", hours=24 * 20))  # re-sent, unanswered
    other = c.assign(make_post(4, TEACHER, hours=24 * 22))
    assert (again.event_id, again.reason, again.near_dup_of) == (a.event_id, "resubmission", make_post(1, BUS).id)
    assert other.is_new_event
    late = c.assign(make_post(5, BUS, hours=24 * 20 + 24 * 46))
    assert late.is_new_event


def test_garbage_collect_bounds_memory():
    c = EventClusterer(window_hours=24, anchor_window_days=2, repost_window_days=1, gc_every=10_000)
    words = ("春天", "夏日", "秋风", "冬雪", "江河", "山川", "星辰", "云朵", "花草", "树木")
    for i in range(200):
        # Each post in other words (numbers are not words the clusterer keeps).
        text = f"第{i}号通知：{words[i % 10]}{words[i // 10 % 10]}，{TEACHER[i % 40:]}{i * 7919}"
        c.assign(make_post(i, text, hours=i, title=f"红星{i}花园", places=(f"红星{i}花园",)))
    before = c.stats()
    c.garbage_collect(T0 + timedelta(hours=200))
    after = c.stats()
    assert after["signatures"] <= 25 < before["signatures"]
    assert after["posts"] <= 25 < before["posts"]
    assert after["members"] <= 49 < before["members"]
    assert after["anchors"] <= 49 < before["anchors"]
    assert after["long_bands"] <= 4 * 49 < before["long_bands"]


def test_max_posts_caps_the_index_whatever_the_rate():
    def text(i: int) -> str:  # unrelated texts: each post is its own event
        return "".join(chr(0x4E00 + (i * 7919 + k * 104729) % 20000) for k in range(40))

    # 300 posts inside one hour: no window expires them, the ceiling does (oldest first).
    c = EventClusterer(max_posts=100)
    first = c.assign(make_post(0, text(0), hours=0))
    for i in range(1, 300):
        c.assign(make_post(i, text(i), hours=i / 300))
    c.garbage_collect(T0 + timedelta(hours=1))  # what every gc_every posts do: events are capped there
    stats = c.stats()
    assert stats["signatures"] <= 100 and stats["posts"] <= 100
    assert stats["long_bands"] <= 100 * 4
    assert stats["events"] <= 100
    # The newest posts are still matched; the oldest were forgotten.
    assert c.assign(make_post("r", text(299), hours=1)).reason == "near_dup"
    again = c.assign(make_post("o", text(0), hours=1))
    assert again.is_new_event and again.event_id != first.event_id


def _stream() -> list[AnalyzedPost]:
    texts = [MIXER, BUS, TEACHER, PARKING, MIXER_EDIT, MIXER_OWN_WORDS]
    titles = ["丽发新城搅拌站", "地铁围挡", "老师推销", "丽发新城停车", "丽发新城搅拌站噪音", "丽发新城搅拌站"]
    places = [("丽发新城",), (), (), ("丽发新城小区",), ("丽发新城",), ("丽发新城",)]
    return [make_post(i, texts[i % 6], hours=50 * i, title=titles[i % 6], places=places[i % 6]) for i in range(24)]


def test_rebuild_from_stored_posts_gives_the_same_assignments():
    stream = _stream()
    live = EventClusterer()
    stored = []
    for post in stream[:14]:
        a = live.assign(post)
        stored.append(post.model_copy(update={"event_id": a.event_id, "near_dup_of": a.near_dup_of}))
    restarted = EventClusterer()
    assert restarted.rebuild(reversed(stored)) == 14  # any order: rebuild sorts by time
    assert [live.assign(p) for p in stream[14:]] == [restarted.assign(p) for p in stream[14:]]


class RichSignatureRow(SignatureRow):
    """A signature row carrying what anchors need (the extension proposed for core.store.base)."""

    title: str = ""
    entities: Entities = Entities()
    tokens: list[str] = []


def test_rebuild_from_rich_signature_rows_restores_anchors():
    stream = _stream()[:14]
    live = EventClusterer()
    rich, bare = [], []
    for post in stream:
        a = live.assign(post)
        rich.append(RichSignatureRow(post_id=post.id, event_id=a.event_id, published_at=post.published_at,
                                     signature=post.signature, title=post.title, entities=post.entities,
                                     tokens=post.tokens))
        bare.append(SignatureRow(post_id=post.id, event_id=a.event_id, published_at=post.published_at,
                                 signature=post.signature))
    reworded = make_post(
        100, "投诉丽发新城小区附近的搅拌站：噪音从早到晚不停，粉尘落满阳台，环保部门一直不处理，请尽快取缔。",
        hours=50 * 14, title="丽发新城搅拌站扰民", places=("丽发新城小区",),
    )
    restarted, forgetful = EventClusterer(), EventClusterer()
    restarted.rebuild(rich)
    forgetful.rebuild(bare)
    expected = live.assign(reworded)
    assert expected.reason == "anchor" and expected.event_id == event_id_for(stream[0].id)
    assert restarted.assign(reworded) == expected
    assert forgetful.assign(reworded).is_new_event  # without anchors the restart would split the event


def test_rebuild_from_signature_rows_restores_near_duplicates():
    live = EventClusterer()
    first = make_post(1, MIXER)
    a = live.assign(first)
    restarted = EventClusterer()
    restarted.rebuild([SignatureRow(post_id=first.id, event_id=a.event_id, published_at=first.published_at,
                                    signature=first.signature)])
    again = restarted.assign(make_post(2, MIXER_EDIT, hours=2))
    assert (again.event_id, again.reason) == (a.event_id, "near_dup")


def test_event_ids_are_deterministic_for_an_input_order():
    runs = []
    for _ in range(2):
        c = EventClusterer()
        runs.append([c.assign(p).event_id for p in _stream()])
    assert runs[0] == runs[1]
    assert len(set(runs[0])) < len(runs[0])


# ---- real data -----------------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.slow
def test_mailbox_replay_gathers_the_recurring_compound_problem():
    path = SHARED / "messages.jsonl"
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path}")
    from analyze.entities import EntityExtractor

    extractor = EntityExtractor.load(use_lac=False)  # the fast layer; LAC is optional
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    rows = sorted((r for r in rows if "2019-12-01" <= r["time"] < "2020-02-01"), key=lambda r: (r["time"], r["id"]))
    c = EventClusterer()
    event_of: dict[str, str] = {}
    for r in rows:
        text = f"{r['subject']}\n{r['body']}"
        scoring = text_for_scoring(text)
        post = AnalyzedPost(
            id=post_id("mailbox", r["id"]), source="mailbox", external_id=r["id"], title=r["subject"],
            text=r["body"], published_at=datetime.fromisoformat(r["time"]), text_norm=normalize(text),
            tokens=tokenize(scoring), sentiment=Sentiment(label=SentimentLabel.neutral, score=0.5),
            topic=Topic(l1="x"), entities=extractor.extract(text), signature=minhash_signature(scoring),
        )
        event_of[r["id"]] = c.assign(post).event_id
    sizes = Counter(event_of.values())
    biggest, size = sizes.most_common(1)[0]
    compound = [r for r in rows if "丽发新城" in r["subject"]]
    members = [r for r in rows if event_of[r["id"]] == biggest]
    # The biggest event is the 丽发新城 mixing-plant problem, with most of its messages and little else.
    assert sum(event_of[r["id"]] == biggest for r in compound) >= 0.8 * len(compound)
    about = sum("丽发新城" in r["subject"] + r["body"] or "搅拌" in r["subject"] for r in members)
    assert about >= 0.9 * size
    assert size >= 3 * sizes.most_common(2)[1][1]


def test_a_district_breaking_matter_takes_a_follow_up_filed_under_another_topic():
    c = EventClusterer(hot_window_hours=12)
    first = "A3区明德小学好多孩子吃了学校午餐后上吐下泻，孩子都送医院了，学校一句解释都没有"
    a = c.assign(make_post(1, first, places=("明德小学",), districts=("A3区",), topic="食品药品", source="weibo"))
    for k in range(3):  # a breaking matter moves: copies by the minute
        c.assign(make_post(f"copy{k}", "转发：" + first, hours=0.04 + k / 100, places=("明德小学",),
                           districts=("A3区",), topic="食品药品", source="weibo"))
    # Names only the district; the classifier filed it under education; most of its words are the matter's.
    follow = c.assign(make_post(3, "我们班有八个孩子没来上课，都是吃了学校午餐的，A3区要彻查", hours=0.1,
                                districts=("A3区",), topic="教育文体", source="weibo"))
    assert (follow.event_id, follow.reason, follow.anchor) == (a.event_id, "district", "A3区/*")
    # The same district, a post with one word in common, is another matter.
    other = c.assign(make_post(4, "A3区的孩子课后托管什么时候开始报名？", hours=0.12, districts=("A3区",),
                               topic="教育文体", source="weibo"))
    assert other.is_new_event


def test_rebuild_from_signature_rows_keeps_a_breaking_matter_and_its_mood():
    """After a restart (rows as the post stores return them) the place rules decide as before it."""
    stream = [
        make_post(1, BLAST, places=("青石镇",), source="weibo"),
        make_post(2, "转发：" + BLAST, hours=0.02, places=("青石镇",), source="weibo"),
        make_post(3, "A7县青石镇有人在直播，说消防车都来了", hours=0.03, places=("青石镇",), districts=("A7县",),
                  topic="安全生产", source="weibo"),
    ]
    after = [
        make_post(4, SMELL, hours=0.1, places=("青石镇",), source="weibo"),
        make_post(5, MARKET, hours=0.11, places=("青石镇",), source="weibo", sentiment=SentimentLabel.positive),
        make_post(6, "A7县的安全生产检查什么时候公布结果", hours=0.12, districts=("A7县",), topic="安全生产",
                  source="weibo"),
    ]
    live = EventClusterer()
    rows = []
    for post in stream:
        a = live.assign(post)
        rows.append(SignatureRow(post_id=post.id, event_id=a.event_id, published_at=post.published_at,
                                 signature=post.signature, source=post.source.value, external_id=post.external_id,
                                 tokens=post.tokens, entities=post.entities, topic=post.topic.l1,
                                 sentiment=post.sentiment.label.value))
    restarted = EventClusterer()
    assert restarted.rebuild(rows) == len(stream)
    expected = [live.assign(p) for p in after]
    assert [restarted.assign(p) for p in after] == expected
    assert expected[0].event_id == rows[0].event_id
    assert expected[1].is_new_event  # the mood guard survived the restart
