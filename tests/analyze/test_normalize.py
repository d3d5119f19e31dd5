"""analyze.normalize: full-width, traditional, invisible characters, HTML and scoring noise."""

from hypothesis import given, settings
from hypothesis import strategies as st

from analyze.normalize import normalize, strip_html, text_for_scoring


def test_full_width_ascii_and_digits_become_half_width():
    assert normalize("ＡＢＣ　ｘｙｚ　１２３") == "ABC xyz 123"


def test_traditional_becomes_simplified():
    assert normalize("請問這個問題怎麼辦") == "请问这个问题怎么办"


def test_simplified_text_is_not_rewritten():
    text = "乾隆年间的皇后在后面头发干燥"
    assert normalize(text) == text


def test_zero_width_and_control_characters_are_dropped():
    assert normalize("拆\u200b迁\u200d补\ufeff偿\x00\x07款") == "拆迁补偿款"


def test_whitespace_is_collapsed_and_newlines_kept_once():
    assert normalize("  小区\t\t停水 \r\n\r\n\n  三天了  ") == "小区 停水\n三天了"


def test_lone_surrogates_do_not_raise():
    assert normalize("坏\udcff字节") == "坏字节"


def test_non_str_and_empty_give_empty():
    assert normalize("") == ""
    assert normalize(None) == ""  # type: ignore[arg-type]


def test_strip_html_removes_tags_scripts_and_unescapes():
    html = '<p>物业&amp;业委会</p><script>alert("x")</script><br/><b>不作为</b> &lt;3'
    assert strip_html(html) == "物业&业委会\n不作为 <3"


def test_strip_html_leaves_plain_text_alone():
    assert strip_html("收费 5<10 元") == "收费 5<10 元"


def test_text_for_scoring_removes_urls_mentions_hashes_and_emoji():
    text = "转发微博 //@小明: #A3区停水# 太差了😡😡 http://t.cn/A6abc @市水务局 快处理 [怒]"
    assert text_for_scoring(text) == "A3区停水 太差了 快处理 [怒]"


def test_text_for_scoring_keeps_chinese_right_after_url():
    assert text_for_scoring("详见https://example.gov.cn/a?b=1请回复") == "详见 请回复"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_never_raises_and_has_no_invisible_chars(text):
    for out in (normalize(text), strip_html(text), text_for_scoring(text)):
        assert isinstance(out, str)
    out = normalize(text)
    assert not any(ch in out for ch in "\u200b\u200c\u200d\ufeff\x00")
    assert out == out.strip()


def test_huge_text_is_handled():
    text = "楼盘烂尾，" * 200_000 + "<b>x</b>"
    assert len(normalize(text)) > 1_000_000
    assert text_for_scoring(text).startswith("楼盘烂尾")
