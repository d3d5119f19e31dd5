"""analyze.privacy: realistic citizen texts and property tests (never crash, idempotent, nothing leaks)."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyze.privacy import (
    MaskResult,
    find_names,
    hash_author,
    mask_author,
    mask_name,
    mask_phone,
    mask_pii,
    mask_url,
    pseudonym,
)

D = "[0-9０-９]"
MOBILE_LEFT = re.compile(f"(?<!{D})[1１][3-9３-９]{D}{{9}}(?!{D})")
ID_LEFT = re.compile(f"(?<!{D}){D}{{17}}[0-9０-９XxＸｘ](?!{D})")


@pytest.mark.parametrize(
    ("text", "expected", "kinds"),
    [
        ("我的电话13812345678，请回电", "我的电话138****5678，请回电", ["phone"]),
        ("手机：138-1234-5678", "手机：138****5678", ["phone"]),
        ("手机 138 1234 5678 谢谢", "手机 138****5678 谢谢", ["phone"]),
        ("电话１３８１２３４５６７８", "电话138****5678", ["phone"]),
        ("+86 13812345678", "+86 138****5678", ["phone"]),
        ("座机0731-88889999", "座机0731******99", ["landline"]),
        ("(0731)88889999", "0731******99", ["landline"]),
        ("身份证号11010119900307123X", "身份证号1***************3X", ["id_card"]),
        ("身份证430102199001011234。", "身份证4***************34。", ["id_card"]),
        ("卡号6222 0212 3456 7890", "卡号6222********7890", ["bank_card"]),
        ("卡号6222021234567890123", "卡号6222***********0123", ["bank_card"]),
        ("邮箱zhangsan@qq.com", "邮箱z***@qq.com", ["email"]),
        ("车牌苏D41230违停", "车牌苏D4***0违停", ["plate"]),
        ("湘A·12345堵门", "湘A1***5堵门", ["plate"]),
        ("本人张三，家住A3区", "本人张**，家住A3区", ["name"]),
        ("我叫李四，今年60岁", "我叫李**，今年60岁", ["name"]),
        ("联系人：王五 电话", "联系人：王** 电话", ["name"]),
        ("我叫欧阳娜娜。", "我叫欧**。", ["name"]),
        ("刘德华先生多次反映", "刘**先生多次反映", ["name"]),
    ],
)
def test_realistic_cases(text, expected, kinds):
    result = mask_pii(text)
    assert result == MaskResult(text=expected, kinds=kinds)


def test_numbers_inside_longer_runs_are_not_phones():
    text = "订单号20191381234567890123，工单编号A000102948，2019年12月"
    assert mask_pii(text) == MaskResult(text=text, kinds=[])


def test_surname_only_forms_and_words_are_left_alone():
    text = "张先生反映王女士家的空调噪音，小区业主委员会不作为"
    assert mask_pii(text).text == text


def test_a_cued_name_is_masked_everywhere_it_recurs():
    out = mask_pii("本人赵六，电话13912345678。赵六的房子漏水").text
    assert "赵六" not in out
    assert out.count("赵**") == 2


def test_extra_names_from_the_entity_extractor_are_masked():
    out = mask_pii("周杰的车堵了消防通道", names=["周杰"])
    assert out.text == "周**的车堵了消防通道"
    assert out.kinds == ["name"]


def test_everything_in_one_hotline_text():
    text = (
        "本人陈小明，身份证号430102198805051234，手机13787654321，银行卡6217002870012345678，"
        "反映A7县星沙街道物业问题，车牌湘A88K88被刮，邮件chen@163.com。"
    )
    out = mask_pii(text)
    assert set(out.kinds) == {"name", "id_card", "phone", "bank_card", "plate", "email"}
    for raw in ("陈小明", "430102198805051234", "13787654321", "6217002870012345678", "湘A88K88", "chen@"):
        assert raw not in out.text
    assert "A7县星沙街道" in out.text


def test_helpers():
    assert mask_name("张三丰") == "张**"
    assert mask_name("") == ""
    assert mask_phone("138-1234-5678") == "138****5678"
    for author in ("A000102948", "张三", "张伟1988", "zhangwei88", "13812345678", "欧阳娜娜的小号"):
        shown = mask_author(author, salt="s")
        assert re.fullmatch("网友[0-9A-F]{6}", shown), shown
        assert author[0] not in shown[2:] and author[-4:] not in shown and author[:3] not in shown
        assert mask_author(author, salt="s") == shown and mask_author(shown) == shown  # stable, idempotent
    assert mask_author("张伟1988", salt="s") != mask_author("张伟1989", salt="s")
    assert mask_author("张伟1988", salt="s") == pseudonym(hash_author("张伟1988", "s"))


@pytest.mark.parametrize(("url", "hidden", "kept"), [
    ("https://x.org/a?phone=13812345678&x=1", "13812345678", "https://x.org/a?phone=138****5678&x=1"),
    ("https://x.org/u/110101199003077777/p", "110101199003077777", "https://x.org/u/"),
    ("https://x.org/a?q=%31%33%38%31%32%33%34%35%36%37%38", "13812345678", "138****5678"),
    ("https://x.org/pay?card=6222020200112233445", "6222020200112233445", "6222***********3445"),
    ("https://x.org/a?mail=zhang%40qq.com", "zhang", "z***@qq.com"),
])
def test_urls_are_masked(url, hidden, kept):
    out = mask_url(url)
    assert hidden not in out and kept in out
    assert mask_url(out) == out


def test_urls_without_personal_data_are_unchanged():
    for url in ("https://weibo.example.org/a/4890012345", "https://x.org/a?id=123&page=4", None, ""):
        assert mask_url(url) == url


def test_hash_author_is_salted_and_stable():
    a = hash_author("A000102948", "salt-1")
    assert a == hash_author("A000102948", "salt-1")
    assert a != hash_author("A000102948", "salt-2")
    assert a != hash_author("A000102949", "salt-1")
    assert "A000102948" not in a and len(a) == 32
    assert len(hash_author("x", "s" * 200)) == 32


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_masks_without_error_idempotently_and_leaks_nothing(text):
    once = mask_pii(text)
    assert mask_pii(once.text).text == once.text
    assert not MOBILE_LEFT.search(once.text)
    assert not ID_LEFT.search(once.text)


digit = st.sampled_from("0123456789０１２３４５６７８９")
mobiles = st.tuples(st.sampled_from("3456789"), st.lists(digit, min_size=9, max_size=9)).map(
    lambda t: "1" + t[0] + "".join(t[1])
)
id_cards = st.lists(digit, min_size=17, max_size=17).flatmap(
    lambda ds: st.sampled_from("0123456789Xx").map(lambda last: "".join(ds) + last)
)
no_digits = st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs")), max_size=40)


def _plain(s):
    return s.translate(str.maketrans("０１２３４５６７８９", "0123456789")).upper()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(no_digits, st.one_of(mobiles, id_cards), no_digits)
def test_embedded_phone_or_id_never_survives(prefix, number, suffix):
    out = mask_pii(prefix + " " + number + "，" + suffix).text
    assert _plain(number) not in _plain(out)
    assert mask_pii(out).text == out


def test_huge_and_empty_text():
    assert mask_pii("") == MaskResult(text="", kinds=[])
    big = ("投诉电话13812345678，" * 50_000) + "完"
    out = mask_pii(big)
    assert "13812345678" not in out.text and out.kinds == ["phone"]


def test_find_names():
    assert find_names("我叫李四，联系人：王五，张三丰先生") == ["李四", "王五", "张三丰"]
