"""The ticket state machine: the main line, side paths, and every illegal (state, action) pair."""

from __future__ import annotations

import pytest

from alerts.tickets import workflow as wf
from core.errors import InvalidTransition


def test_main_line() -> None:
    state = wf.NEW
    for action, expected in [
        ("acknowledge", wf.ACKNOWLEDGED),
        ("assess", wf.ASSESSING),
        ("start_handling", wf.HANDLING),
        ("respond", wf.RESPONDED),
        ("close", wf.CLOSED),
        ("evaluate", wf.EVALUATED),
    ]:
        state = wf.next_state(state, action)
        assert state == expected


def test_reject_reassign_merge_reopen() -> None:
    assert wf.next_state(wf.ACKNOWLEDGED, "reject") == wf.RETURNED
    assert wf.next_state(wf.RETURNED, "reassign") == wf.NEW
    assert wf.next_state(wf.HANDLING, "merge") == wf.MERGED
    assert wf.next_state(wf.CLOSED, "reopen") == wf.HANDLING
    assert wf.next_state(wf.EVALUATED, "reopen") == wf.HANDLING
    assert wf.next_state(wf.HANDLING, "request_extension") == wf.HANDLING
    assert not wf.is_open(wf.MERGED) and wf.is_open(wf.RETURNED)


EXPECTED_LEGAL = {
    ("new", "acknowledge"), ("acknowledged", "assess"), ("assessing", "assess"),
    ("assessing", "start_handling"),
    ("acknowledged", "respond"), ("assessing", "respond"), ("handling", "respond"), ("responded", "respond"),
    ("handling", "close"), ("responded", "close"), ("closed", "evaluate"), ("evaluated", "evaluate"),
    ("new", "reject"), ("acknowledged", "reject"), ("new", "reassign"), ("returned", "reassign"),
    *{(s, "request_extension") for s in ("acknowledged", "assessing", "handling", "responded")},
    *{(s, "decide_extension") for s in ("acknowledged", "assessing", "handling", "responded")},
    *{(s, "merge") for s in ("new", "acknowledged", "assessing", "handling", "responded", "returned")},
    *{(s, "update") for s in ("new", "acknowledged", "assessing", "handling", "responded", "returned")},
    ("closed", "reopen"), ("evaluated", "reopen"),
}


def test_table_is_exactly_the_documented_one() -> None:
    legal = {(s, a) for a in wf.ACTIONS for s in wf.STATES if s in wf.TRANSITIONS[a]}
    assert legal == EXPECTED_LEGAL


@pytest.mark.parametrize(
    ("state", "action"),
    sorted((s, a) for s in wf.STATES for a in wf.ACTIONS if (s, a) not in EXPECTED_LEGAL),
)
def test_every_illegal_pair_raises_with_both_names(state: str, action: str) -> None:
    with pytest.raises(InvalidTransition) as info:
        wf.next_state(state, action)
    msg = str(info.value)
    assert wf.STATE_ZH[state] in msg and wf.ACTION_ZH[action] in msg
    assert repr(state) in msg and repr(action) in msg


def test_final_states_allow_nothing_but_reopen_or_evaluate() -> None:
    assert wf.allowed_actions(wf.MERGED) == []
    assert set(wf.allowed_actions(wf.CLOSED)) == {"evaluate", "reopen"}


def test_unknown_state_or_action() -> None:
    with pytest.raises(InvalidTransition, match="unknown ticket state"):
        wf.next_state("lost", "close")
    with pytest.raises(InvalidTransition, match="unknown ticket action"):
        wf.next_state("new", "explode")
