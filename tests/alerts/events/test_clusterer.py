"""alerts.events.clusterer: reposts, near-duplicates, text similarity with places, replay, memory, restart."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from alerts.events.clusterer import EventClusterer
from alerts.events.config import ClustererConfig
from core.records import Source
from core.store.base import SignatureRow
from tests.alerts.events.posts import DEV, make_post

STORY = "【湾仔码头水饺吃出饰品珠子】网友爆料，在超市买的湾仔码头水饺里吃出一颗饰品珠子，厂家至今没有回应"
RETOLD = "湾仔码头的水饺竟然吃出了饰品珠子？网友晒图，厂家回应称正在调查此事"
OTHER = "今晚央视音乐频道投票汇总出炉，歌迷们纷纷为自己喜欢的歌手拉票"


def test_a_repost_follows_its_original_whatever_its_words():
    c = EventClusterer()
    first = c.assign(make_post("o1", STORY))
    again = c.assign(make_post("r1", "顶", minutes=5, repost_of="o1"))
    assert again.event_id == first.event_id and again.reason == "repost"


def test_a_repost_seen_before_its_original_takes_the_original_along():
    c = EventClusterer()
    repost = c.assign(make_post("r1", "转发", minutes=5, repost_of="o1"))
    original = c.assign(make_post("o1", STORY))
    assert original.event_id == repost.event_id


def test_a_copy_is_a_near_duplicate_and_a_retelling_joins_by_text():
    c = EventClusterer()
    first = c.assign(make_post("a", STORY))
    copy = c.assign(make_post("b", STORY + "！！", minutes=3))
    retold = c.assign(make_post("c", RETOLD, minutes=20))
    other = c.assign(make_post("d", OTHER, minutes=30))
    assert copy.reason == "near_dup" and copy.event_id == first.event_id
    assert retold.reason == "text" and retold.event_id == first.event_id
    assert other.is_new_event and other.event_id != first.event_id


def test_two_compounds_with_the_same_complaint_are_two_events_and_one_compound_is_one():
    text = "小区旁边的搅拌站每天施工到半夜，噪音巨大，粉尘漫天，请环保部门调查"
    c = EventClusterer()
    a = c.assign(make_post("a", "城兴花园" + text, places=["城兴花园"]))
    b = c.assign(make_post("b", "丽发新城" + text[:20] + "居民睡不着", minutes=10, places=["丽发新城"]))
    d = c.assign(make_post("d", "丽发新城搅拌站半夜施工，噪音扰民", minutes=20, places=["A3区丽发新城小区"]))
    assert a.event_id != b.event_id and d.event_id == b.event_id


def test_a_quiet_event_takes_no_chance_match_but_a_retelling_weeks_later_revives_it():
    c = EventClusterer(ClustererConfig(window_hours=48))
    first = c.assign(make_post("a", STORY))
    later = c.assign(make_post("b", RETOLD, minutes=60 * 24 * 5))
    retold = c.assign(make_post("c", "转：" + STORY, minutes=60 * 24 * 20))
    assert later.event_id != first.event_id and retold.event_id == first.event_id


def test_a_retried_post_gets_the_same_answer():
    c = EventClusterer()
    post = make_post("a", STORY)
    assert c.assign(post) == c.assign(post)


def test_memory_is_bounded_by_time():
    c = EventClusterer(ClustererConfig(window_hours=1, slow_window_hours=1, revive_window_days=0,
                                       repost_window_days=0.05, near_dup_window_hours=1, gc_every=10_000))
    for n in range(200):
        c.assign(make_post(f"p{n}", f"第{n}号通知：{OTHER[n % 10 :]}{n * 7919}", minutes=n * 10))
    before = c.stats()["events"]
    c.garbage_collect(c.latest_published + timedelta(hours=3))
    after = c.stats()
    assert before > 0 and after["events"] == 0 and after["signatures"] == 0 and after["posts"] == 0


def test_rebuild_from_stored_rows_places_the_next_post_as_the_live_index_would():
    live = EventClusterer()
    posts = [make_post("a", STORY), make_post("b", OTHER, minutes=5)]
    for p in posts:
        p.event_id = live.assign(p).event_id
    rows = [SignatureRow(post_id=p.id, event_id=p.event_id or "", published_at=p.published_at, signature=[],
                         text_norm=p.text_norm) for p in posts]
    restarted = EventClusterer()
    assert restarted.rebuild(rows) == 2
    nxt = make_post("c", RETOLD, minutes=30)
    assert restarted.assign(nxt).event_id == live.assign(nxt).event_id == posts[0].event_id


@pytest.mark.shared
def test_the_same_stream_in_other_interleavings_gives_the_same_events():
    from alerts.events.evaluate import bcubed, read_posts, read_truth

    if not DEV.exists():
        pytest.skip(f"{DEV} not present: the Weibo development stories live in ../shared")
    truth = read_truth(DEV / "truth.jsonl")
    stories = sorted(set(truth.values()))[::3]
    keep = set(stories)
    posts = [p for p in read_posts(DEV / "posts_unlinked.jsonl") if truth[p.external_id] in keep]
    posts.sort(key=lambda p: (p.published_at, p.id))
    first = EventClusterer()
    reference = {p.external_id: first.assign(p).event_id for p in posts}
    rng = random.Random(23)
    for attempt in range(3):
        # Partition interleavings: posts of the same minute arrive in any order (the stage sorts each batch,
        # but a batch boundary can fall inside a minute), batches of 64 as the bus delivers them.
        shuffled = sorted(posts, key=lambda p: (p.published_at.replace(second=0), rng.random()))
        c = EventClusterer()
        got: dict[str, str] = {}
        for i in range(0, len(shuffled), 64):
            for p in sorted(shuffled[i : i + 64], key=lambda p: (p.published_at, p.id)):
                got[p.external_id] = c.assign(p).event_id
        _, _, f1 = bcubed(got, reference)
        assert f1 >= 0.95, f"interleaving {attempt}: agreement {f1:.3f}"


PLANT = "青石镇工业园鑫源化工发生爆炸，浓烟滚滚，附近居民听到巨响"
WITNESS = "青石镇工业园门口拉了警戒线，消防车一辆接一辆往里开"


def test_an_eyewitness_at_the_place_joins_the_breaking_matter_but_not_hours_later():
    c = EventClusterer()
    first = c.assign(make_post("a", PLANT, places=["青石镇工业园"]))
    c.assign(make_post("b", PLANT + "，大家注意安全", minutes=2, places=["青石镇工业园"]))
    now = c.assign(make_post("c", WITNESS, minutes=8, places=["青石镇工业园"]))
    later = EventClusterer()
    later.assign(make_post("a", PLANT, places=["青石镇工业园"]))
    hours = later.assign(make_post("c", WITNESS, minutes=240, places=["青石镇工业园"]))
    assert now.event_id == first.event_id and hours.is_new_event


def test_one_template_filled_in_for_two_schools_is_two_events():
    c = EventClusterer()
    template = "今天开放日，孩子回来说新的图书馆特别漂亮，老师也很耐心。"
    a = c.assign(make_post("a", "第五中学" + template, places=["第五中学"]))
    b = c.assign(make_post("b", "明德小学" + template, minutes=5, places=["明德小学"]))
    assert a.event_id != b.event_id


def test_a_letter_about_another_compound_does_not_join_by_the_property_firm_both_name():
    c = EventClusterer()
    first = c.assign(make_post("a", "反映新港城小区优居物业擅自提高物业费，业主多次协商无果。诉求：请住建部门查处",
                               places=["新港城小区", "优居物业"], source=Source.hotline))
    same = c.assign(make_post("b", "反映新港城小区物业擅自提高物业费，物业拒绝公示收费依据。诉求：请核查",
                              minutes=30, places=["新港城小区"], source=Source.hotline))
    c.assign(make_post("b2", "新港城小区物业费说涨就涨，物业拒绝公示收费依据，业主要求住建部门核查", minutes=40,
                       places=["新港城小区"], source=Source.hotline))
    other = c.assign(make_post("c", "翠湖湾小区的优居物业也擅自提高了物业费，业主多次协商没有结果，请住建部门查处",
                               minutes=60, places=["翠湖湾小区", "优居物业"], source=Source.hotline))
    assert same.event_id == first.event_id and other.event_id != first.event_id


def test_a_compounds_everyday_complaint_does_not_join_its_water_cut_on_the_name_alone():
    water = "翠湖湾小区已经停水两天了，恒居物业说是业主欠物业费就断水，家里老人只能下楼提桶接水，这是违法的吧？"
    everyday = "翠湖湾小区旁的烧烤店油烟噪声扰民至凌晨，请城管部门依法处理。"
    names = ("金桂苑", "锦绣华庭", "阳光新城", "梧桐里", "滨江花园", "和美家园", "书香名邸", "百合苑", "春风里")
    tails = ("门口的路灯坏了一个月，晚上出门不方便。", "电梯又停了，老人上下楼很困难。",
             "的垃圾站臭气熏天，夏天更严重。")
    for floor, joins in ((0.05, False), (0.0, True)):
        c = EventClusterer(ClustererConfig(matter_floor=floor))
        for i, name in enumerate(names * 2):  # letters about other compounds teach the stream's IDF ("小区")
            c.assign(make_post(f"w{i}", name + "小区" + tails[i % 3], minutes=-600 + i, places=[name + "小区"],
                               source=Source.mailbox))
        first = c.assign(make_post("a", water, places=["翠湖湾小区", "恒居物业"], source=Source.mailbox))
        later = c.assign(make_post("b", everyday, minutes=180, places=["翠湖湾小区"], source=Source.mailbox))
        # Only the compound's name is shared: without words of the matter the letter is another matter.
        assert (later.event_id == first.event_id) is joins, floor
