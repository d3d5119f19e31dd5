"""analyze.segment: gazetteer names stay whole, stopwords and punctuation go, thread-safe."""

from concurrent.futures import ThreadPoolExecutor

from hypothesis import given, settings
from hypothesis import strategies as st

from analyze.segment import Segmenter, get_segmenter, tokenize, tokenize_for_search


def test_district_and_town_names_stay_whole():
    tokens = tokenize("A市A3区含浦街道杜鹃文苑小区停水三天")
    assert tokens[:3] == ["A市", "A3区", "含浦街道"]
    assert "停水" in tokens or "停" in tokens


def test_stopwords_and_punctuation_are_dropped_and_ascii_lowercased():
    tokens = tokenize("我们的WiFi信号太差了！！！请问怎么办？")
    assert "wifi" in tokens
    assert not {"我们", "的", "了", "！", "？", "请问", "怎么办"} & set(tokens)


def test_full_width_input_is_normalised_first():
    assert "A3区" in tokenize("Ａ３区的路灯坏了")


def test_search_tokens_include_sub_words():
    tokens = tokenize_for_search("中华人民共和国教育局")
    assert "中华人民共和国" in tokens
    assert "教育" in tokens and "教育局" in tokens


def test_extra_words_are_kept_whole(tmp_path):
    seg = Segmenter(extra_words=["一米阳光婚纱摄影"])
    assert "一米阳光婚纱摄影" in seg.tokenize("一米阳光婚纱摄影是否合法纳税")


def test_same_result_from_many_threads():
    text = "A7县泉塘街道的垃圾站臭气熏天，居民反映多次无人处理"
    expected = tokenize(text)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(tokenize, [text] * 64))
    assert all(r == expected for r in results)
    assert get_segmenter() is get_segmenter()


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_clean_tokens(text):
    for tok in tokenize(text):
        assert tok and tok == tok.strip()
        assert tok not in get_segmenter().stopwords


def _uncached(seg: Segmenter, text: str) -> list[str]:
    from analyze.normalize import normalize

    text = normalize(text)
    return seg.clean(seg._tk.cut(text, HMM=True)) if text else []


def test_run_cache_gives_the_words_of_a_plain_cut():
    import json

    from ingest.demo import DemoStream
    from ingest.validate import parse_record

    seg = get_segmenter()
    texts = ["A7县泉塘街道的垃圾站臭气熏天，居民反映多次无人处理", "WiFi 2.0版 #话题# ① ㈠ 𠀀𠀁 ab-cd 3.5% a_b\t\n",
             "《人民日报》：\u3400\u4dbf测试，“引号”…… 100元/月 i'm OK!", ""]
    for i, record in enumerate(DemoStream(seed=11, rate_per_min=600.0)):
        if i >= 400:
            break
        texts.append(parse_record(json.dumps(record, ensure_ascii=False).encode(), source_hint=None, salt="t",
                                  max_text_chars=20_000).full_text)
    for _ in range(2):  # the second round is answered from the cache
        for text in texts:
            assert seg.tokenize(text) == _uncached(seg, text), text
    hits, misses = seg.block_cache_info()
    assert hits > misses


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("的了停水三天A3区含浦街道ab12-_.%# ，。！\n\t　🙂ｗ㐀𠀀")), max_size=80))
def test_run_cache_equals_plain_cut_on_any_text(text):
    seg = get_segmenter()
    assert seg.tokenize(text) == _uncached(seg, text)
    assert seg.tokenize(text) == _uncached(seg, text)
