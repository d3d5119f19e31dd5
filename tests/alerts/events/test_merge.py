"""Event merges (alerts.events.merge, clusterer) and the store following them (alerts.events.merge_store);
citizens' letters reviving their place's matter after months."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from alerts.events import service
from alerts.events.clusterer import EventClusterer
from alerts.events.config import ClustererConfig
from alerts.events.merge_store import record_merge
from core.db.models import EventMemberRow, EventRow, TicketRow
from core.db.session import Database
from core.records import Source
from tests.alerts.events.posts import T0, make_post
from tests.alerts.events.test_service import make_post as stored_post

EMPLOYER = "广铁集团要求职工购买定向商品房时必须捆绑购买12万一个的车位，不买车位就取消购房资格"
COMPOUND = "伊景园滨河苑定向商品房强制捆绑销售车位，职工交了18.5万认购款还要再交12万车位款"
BOTH = "广铁集团职工定向商品房伊景园滨河苑捆绑销售车位，12万一个车位不买就取消购房资格，请领导关注"


def _two_sides(c: EventClusterer) -> tuple[str, str]:
    """The employer's side and the compound's side of one matter, each opened before a letter names both."""
    # Each letter's subject names one side; its body names both (the two names go together in the stream).
    both = ["广铁集团", "伊景园滨河苑"]
    a = c.assign(make_post("g1", EMPLOYER + "，伊景园滨河苑", title="广铁集团捆绑车位", places=both,
                           source=Source.mailbox))
    b = c.assign(make_post("y1", COMPOUND + "，广铁集团", title="伊景园滨河苑捆绑车位", minutes=60,
                           places=both[::-1], source=Source.mailbox))
    assert a.event_id != b.event_id  # different first-named anchors: two events at first
    return a.event_id, b.event_id


def test_a_post_naming_both_main_anchors_and_joining_both_merges_the_events():
    c = EventClusterer()
    employer, compound = _two_sides(c)
    bridge = c.assign(make_post("x1", BOTH, minutes=120, places=["广铁集团", "伊景园滨河苑"], source=Source.mailbox))
    assert bridge.absorbed and {bridge.event_id, *bridge.absorbed} == {employer, compound}
    assert c.resolve(employer) == c.resolve(compound) == bridge.event_id
    # Later letters naming either side first land in the one event (the absorbed side's anchor is its own).
    later = c.assign(make_post("g2", "广铁集团强制职工买房捆绑车位，12万车位费不交就取消资格", minutes=180,
                               title="广铁集团强制职工买房捆绑车位", places=["广铁集团"], source=Source.mailbox))
    assert later.event_id == bridge.event_id and c.stats()["events"] == 1


def test_a_firm_named_with_many_compounds_bridges_none_of_them():
    c = EventClusterer()
    for n, compound in enumerate(["金桂苑", "百合苑", "怡和苑", "状元府"]):  # the firm goes with none in particular
        c.assign(make_post(f"f{n}", f"{compound}小区城邦物业擅自提高物业费", minutes=n, places=[compound, "城邦物业"],
                           source=Source.mailbox))
    firm = c.assign(make_post("f9", "城邦物业擅自提高物业费，业主多次协商无果，请住建部门督促", minutes=10,
                              title="城邦物业擅自提高物业费", places=["城邦物业"], source=Source.mailbox))
    bridge = c.assign(make_post("x1", "百合苑小区城邦物业擅自提高物业费，业主多次协商无果，请住建部门督促", minutes=20,
                                title="百合苑小区城邦物业擅自提高物业费", places=["百合苑", "城邦物业"],
                                source=Source.mailbox))
    assert not bridge.absorbed and c.resolve(firm.event_id) == firm.event_id


def test_no_merge_without_anchors_or_when_turned_off():
    c = EventClusterer(ClustererConfig(merge_similarity=2.0))
    _two_sides(c)
    bridge = c.assign(make_post("x1", BOTH, minutes=120, places=["广铁集团", "伊景园滨河苑"], source=Source.mailbox))
    assert not bridge.absorbed and c.stats()["events"] == 2
    c = EventClusterer()
    _two_sides(c)
    plain = c.assign(make_post("x1", BOTH, minutes=120, source=Source.mailbox))  # names no anchor
    assert not plain.absorbed


INTERNSHIP = "A市涉外经济学院强制学生实习，学校要求学生必须去学校安排的几个点实习，工资500元，不去不给学分"
AGAIN = "A市涉外经济学院又组织学生外出实习打工，学校安排学生去外省工厂流水线，不去不给学分不能毕业"
CANTEEN = "A市涉外经济学院食堂只开放十余个窗口，排队很长，有些学生吃不上饭"


def test_a_letter_revives_its_places_matter_months_later_by_its_own_words_only():
    c = EventClusterer()
    first = c.assign(make_post("i1", INTERNSHIP, places=["涉外经济学院"], source=Source.mailbox))
    months = 60 * 24 * 200
    other = c.assign(make_post("c1", CANTEEN, minutes=months, places=["涉外经济学院"], source=Source.mailbox))
    again = c.assign(make_post("i2", AGAIN, minutes=months + 60, places=["涉外经济学院"], source=Source.mailbox))
    assert other.event_id != first.event_id  # the same college, another matter
    assert again.event_id == first.event_id
    # Social posts are not revived after the ordinary window.
    c = EventClusterer()
    first = c.assign(make_post("i1", INTERNSHIP, places=["涉外经济学院"]))
    again = c.assign(make_post("i2", AGAIN, minutes=months, places=["涉外经济学院"]))
    assert again.event_id != first.event_id


def test_the_store_follows_a_merge(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'events.db'}")
    db.migrate()
    try:
        with db.transaction() as s:
            service.apply_posts(s, posts=[stored_post(1, event_id="ev-big"), stored_post(2, event_id="ev-big"),
                                          stored_post(3, event_id="ev-big", author="author-4")])
            service.apply_posts(s, posts=[stored_post(4, event_id="ev-small", minutes=5),
                                          stored_post(5, event_id="ev-small", minutes=6)])
            s.add(TicketRow(id="t-small", event_id="ev-small", level=3, lead_unit="u", created_at=T0,
                            updated_at=T0))
        with db.transaction() as s:
            record_merge(s, survivor="ev-big", absorbed=("ev-small",))
            record_merge(s, survivor="ev-big", absorbed=("ev-small",))  # redelivered: nothing more
        with db.transaction() as s:
            big = s.get(EventRow, "ev-big")
            assert big is not None and big.size == 5 and big.unique_authors == 4
            assert big.last_seen.replace(tzinfo=None) == (T0 + timedelta(minutes=6)).replace(tzinfo=None)
            assert s.get(EventRow, "ev-small") is None
            assert set(s.scalars(select(EventMemberRow.event_id))) == {"ev-big"}
            assert s.get(TicketRow, "t-small").event_id == "ev-big"  # the survivor had no ticket
    finally:
        db.close()
