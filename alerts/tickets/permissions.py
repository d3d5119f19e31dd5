"""Who may do what to a ticket: roles plus the unit relation (lead 主办 or cooperating 协办).

admin does everything; analyst (the propaganda office) sees all, assigns, approves and closes;
leader reads all and approves; handler (a unit's user) sees and acts only on its own unit's tickets.
Unit users get NotFound (404), never Forbidden, for tickets of other units, so ids cannot be probed.
"""

from __future__ import annotations

from typing import Any, Protocol

from core.errors import Forbidden, NotFound

ADMIN, ANALYST, HANDLER, LEADER = "admin", "analyst", "handler", "leader"
READ_ALL = frozenset({ADMIN, ANALYST, LEADER})

# action -> (roles allowed regardless of unit, unit relation a handler needs: "lead" | "any" | None)
RULES: dict[str, tuple[frozenset[str], str | None]] = {
    "acknowledge": (frozenset({ADMIN}), "lead"),
    "assess": (frozenset({ADMIN, ANALYST}), "lead"),
    "start_handling": (frozenset({ADMIN, ANALYST}), "lead"),
    "reject": (frozenset({ADMIN}), "lead"),
    "reassign": (frozenset({ADMIN, ANALYST}), None),
    "request_extension": (frozenset({ADMIN}), "lead"),
    "decide_extension": (frozenset({ADMIN, ANALYST, LEADER}), None),
    "merge": (frozenset({ADMIN, ANALYST}), None),
    "close": (frozenset({ADMIN, ANALYST}), "lead"),
    "reopen": (frozenset({ADMIN, ANALYST}), None),
    "evaluate": (frozenset({ADMIN, ANALYST}), None),
    "draft_response": (frozenset({ADMIN, ANALYST}), "any"),
    "edit_response": (frozenset({ADMIN, ANALYST}), "any"),
    "approve_response": (frozenset({ADMIN, ANALYST, LEADER}), None),
    "publish_response": (frozenset({ADMIN, ANALYST}), "lead"),
}


class Actor(Protocol):
    """Anything with the fields of ``core.auth.User`` (read-only)."""

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def unit_id(self) -> str | None: ...


def unit_relation(actor: Actor, ticket: Any) -> str | None:
    """"lead" when the actor's unit leads the ticket, "cooperating" when it assists, else None."""
    if not actor.unit_id:
        return None
    if actor.unit_id == ticket.lead_unit:
        return "lead"
    if actor.unit_id in (ticket.cooperating_units or []):
        return "cooperating"
    return None


def can_read(actor: Actor, ticket: Any) -> bool:
    """Whether the actor may see the ticket at all."""
    return actor.role in READ_ALL or (actor.role == HANDLER and unit_relation(actor, ticket) is not None)


def check_read(actor: Actor, ticket: Any) -> None:
    """NotFound (not Forbidden) when the actor may not see the ticket: ids must not be probeable."""
    if not can_read(actor, ticket):
        raise NotFound(f"工单不存在 / ticket {ticket.id!r} not found")


def can(actor: Actor, action: str, ticket: Any) -> bool:
    """Whether the actor's role and unit allow ``action`` on ``ticket`` (the state is checked elsewhere)."""
    roles, relation = RULES[action]
    if actor.role in roles:
        return True
    if actor.role != HANDLER or relation is None:
        return False
    rel = unit_relation(actor, ticket)
    return rel == "lead" if relation == "lead" else rel is not None


def check(actor: Actor, action: str, ticket: Any) -> None:
    """Raise NotFound if the actor cannot see the ticket, Forbidden if it may see but not do ``action``."""
    check_read(actor, ticket)
    if not can(actor, action, ticket):
        raise Forbidden(
            f"角色「{actor.role}」无权对该工单执行此操作 / role {actor.role!r} may not {action} ticket {ticket.id!r}"
        )
