"""alerts.events.places: anchor keys from the word lists in data/words.yaml."""

from __future__ import annotations

from alerts.events.places import anchor_key, compatible, shares_anchor, words


def test_word_lists_load_from_the_data_file():
    assert "小区" in words()["anchor_suffixes"] and "政府" in words()["gov_endings"]


def test_anchor_keys_strip_administrative_prefixes_and_reject_generic_names():
    assert anchor_key("A市A3区丽发新城小区") == "丽发新城"
    assert anchor_key("物业公司") is None and anchor_key("A3区人民政府") is None


def test_different_specific_anchors_are_incompatible_and_longer_names_share():
    assert not compatible(["城兴花园"], ["博远科技公司"])
    assert compatible([], ["博远科技公司"])
    assert shares_anchor(["魅力之城"], ["劳动东路魅力之城"])
