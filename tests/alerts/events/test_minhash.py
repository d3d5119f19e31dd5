"""alerts.events.minhash: signatures agree with the shingles' Jaccard similarity."""

from __future__ import annotations

from alerts.events.minhash import EMPTY_SIGNATURE_VALUE, estimated_jaccard, minhash_signature


def test_near_copies_score_high_and_unrelated_texts_low():
    a = minhash_signature("丽发新城小区旁边的搅拌站每天施工到半夜，噪音巨大，粉尘漫天")
    b = minhash_signature("丽发新城小区旁边的搅拌站每天施工到半夜，噪音巨大，粉尘漫天！！")
    c = minhash_signature("地铁施工围挡占用枫林路车道，早晚高峰堵车严重")
    assert estimated_jaccard(a, b) > 0.7 > 0.2 > estimated_jaccard(a, c)


def test_empty_text_has_the_empty_signature_and_the_signature_is_stable():
    assert minhash_signature("  ") == [EMPTY_SIGNATURE_VALUE] * 64
    assert minhash_signature("同一段文字") == minhash_signature("同一段文字")
