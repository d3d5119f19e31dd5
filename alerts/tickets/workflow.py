"""The one ticket state machine (预警 → 签收 → 研判 → 处置 → 回应 → 办结 → 评估), pure and table-driven.

Besides the main line: a lead unit may 退回 (reject) a ticket it thinks is not its own; the office
then 改派 (reassigns) it, which puts it back to ``new``. 延期 (extension request/decision), a new
rule match (``update``) and an extra response leave the state as it is but are only legal on open
tickets. 合并 (merge) ends a ticket as ``merged``; 重开 (reopen) brings a closed or evaluated ticket
back to ``handling`` when the matter flares up again (二次舆情).
"""

from __future__ import annotations

from core.errors import InvalidTransition

NEW, ACKNOWLEDGED, ASSESSING, HANDLING = "new", "acknowledged", "assessing", "handling"
RESPONDED, RETURNED, CLOSED, EVALUATED, MERGED = "responded", "returned", "closed", "evaluated", "merged"

STATES = (NEW, ACKNOWLEDGED, ASSESSING, HANDLING, RESPONDED, RETURNED, CLOSED, EVALUATED, MERGED)
# "Open" matches the partial unique index on tickets: everything but closed/evaluated/merged.
FINAL_STATES = (CLOSED, EVALUATED, MERGED)
OPEN_STATES = tuple(s for s in STATES if s not in FINAL_STATES)

STATE_ZH = {
    NEW: "预警",
    ACKNOWLEDGED: "已签收",
    ASSESSING: "研判中",
    HANDLING: "处置中",
    RESPONDED: "已回应",
    RETURNED: "已退回",
    CLOSED: "已办结",
    EVALUATED: "已评估",
    MERGED: "已合并",
}

ACTION_ZH = {
    "acknowledge": "签收",
    "assess": "研判",
    "start_handling": "处置",
    "respond": "发布回应",
    "close": "办结",
    "evaluate": "效果评估",
    "reject": "退回",
    "reassign": "改派",
    "request_extension": "申请延期",
    "decide_extension": "审批延期",
    "merge": "合并",
    "reopen": "重开",
    "update": "更新预警",
}

_WORKING = (ACKNOWLEDGED, ASSESSING, HANDLING, RESPONDED)

# action -> {from_state: to_state}. Anything not listed is illegal.
TRANSITIONS: dict[str, dict[str, str]] = {
    "acknowledge": {NEW: ACKNOWLEDGED},
    "assess": {ACKNOWLEDGED: ASSESSING, ASSESSING: ASSESSING},
    "start_handling": {ASSESSING: HANDLING},
    # 权威信息 may go out before handling starts (red: within 5 h), and later updates keep it responded.
    "respond": {s: RESPONDED for s in _WORKING},
    "close": {HANDLING: CLOSED, RESPONDED: CLOSED},
    "evaluate": {CLOSED: EVALUATED, EVALUATED: EVALUATED},
    "reject": {NEW: RETURNED, ACKNOWLEDGED: RETURNED},
    "reassign": {NEW: NEW, RETURNED: NEW},
    "request_extension": {s: s for s in _WORKING},
    "decide_extension": {s: s for s in _WORKING},
    "merge": {s: MERGED for s in OPEN_STATES},
    "reopen": {CLOSED: HANDLING, EVALUATED: HANDLING},
    "update": {s: s for s in OPEN_STATES},
}
ACTIONS = tuple(TRANSITIONS)


def next_state(state: str, action: str) -> str:
    """The state after ``action`` from ``state``; raises InvalidTransition when the table forbids it."""
    if state not in STATES:
        raise InvalidTransition(f"未知的工单状态「{state}」 / unknown ticket state {state!r}")
    if action not in TRANSITIONS:
        raise InvalidTransition(f"未知的工单操作「{action}」 / unknown ticket action {action!r}")
    target = TRANSITIONS[action].get(state)
    if target is None:
        allowed = "、".join(STATE_ZH[s] for s in TRANSITIONS[action])
        raise InvalidTransition(
            f"工单处于「{STATE_ZH[state]}」状态，不能{ACTION_ZH[action]}（仅限：{allowed}） / "
            f"action {action!r} is not allowed in state {state!r} "
            f"(allowed from: {', '.join(TRANSITIONS[action])})"
        )
    return target


def allowed_actions(state: str) -> list[str]:
    """Actions the state machine permits from ``state`` (roles are checked separately)."""
    return [a for a, table in TRANSITIONS.items() if state in table]


def is_open(state: str) -> bool:
    """Whether a ticket in ``state`` still counts as the event's one open ticket."""
    return state in OPEN_STATES
