"""analyze.heat: bounded 0-100, monotone in every input, documented reference points."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyze.heat import heat

counts = st.integers(min_value=0, max_value=10**7)
rates = st.floats(min_value=0, max_value=1e5, allow_nan=False)
shares = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(size=st.integers(1, 10**6), authors=counts, engagement=counts, velocity=rates, share=shares)
def test_bounded(size, authors, engagement, velocity, share):
    h = heat(size=size, unique_authors=authors, engagement=engagement, velocity_per_hour=velocity,
             negative_share=share)
    assert 0 < h < 100


@given(size=st.integers(1, 10**5), authors=st.integers(0, 10**5), engagement=counts, velocity=rates, share=shares,
       which=st.sampled_from(["size", "unique_authors", "engagement", "velocity_per_hour", "negative_share"]))
def test_monotone_in_every_input(size, authors, engagement, velocity, share, which):
    args = {"size": size, "unique_authors": min(authors, size), "engagement": engagement,
            "velocity_per_hour": velocity, "negative_share": share}
    more = dict(args)
    if which == "size":
        more["size"] = size * 2
    elif which == "unique_authors":
        more["size"] = args["size"]
        more["unique_authors"] = min(args["unique_authors"] + 1, args["size"])
    elif which == "negative_share":
        more["negative_share"] = min(1.0, share + 0.25)
    else:
        more[which] = args[which] * 2 + 1
    assert heat(**more) >= heat(**args)


def test_reference_points_from_the_docstring():
    assert heat(size=0, unique_authors=0, engagement=0, velocity_per_hour=0, negative_share=0) == 0
    one = heat(size=1, unique_authors=1, engagement=0, velocity_per_hour=0, negative_share=0.5)
    local = heat(size=20, unique_authors=20, engagement=200, velocity_per_hour=3, negative_share=0.8)
    viral = heat(size=300, unique_authors=280, engagement=20_000, velocity_per_hour=60, negative_share=0.9)
    assert one == pytest.approx(8, abs=1.5)
    assert local == pytest.approx(62, abs=3)
    assert viral == pytest.approx(87, abs=3)


def test_many_voices_weigh_more_than_one_account_repeating_itself():
    one_account = heat(size=40, unique_authors=1, engagement=0, velocity_per_hour=1, negative_share=1)
    forty_people = heat(size=40, unique_authors=40, engagement=0, velocity_per_hour=1, negative_share=1)
    assert forty_people > one_account + 5


def test_negative_inputs_are_rejected():
    with pytest.raises(ValueError):
        heat(size=-1, unique_authors=0, engagement=0, velocity_per_hour=0, negative_share=0)
