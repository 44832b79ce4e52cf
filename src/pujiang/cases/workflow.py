"""The grid-management workflow (GB/T 30428) as one transition table.

信息收集 → 立案 (or 不予立案 / 合并) → 派遣 → 处置 (接单; 延期 with approval; 退回) → 处置反馈 →
核查 → 结案 (or 返工 back to the handler) → 评价. Every step a case can take is a row below:
which states it leaves, which it enters, the permission it needs, whose department acts, which
time limit starts, and whether the reporter is told. Nothing else decides what may happen.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pujiang.platform.roles import (
    CASES_CLOSE,
    CASES_DISPATCH,
    CASES_HANDLE,
    CASES_REGISTER,
    CASES_VERIFY,
)


class State(enum.StrEnum):
    REPORTED = "reported"
    REGISTERED = "registered"
    REJECTED = "rejected"
    MERGED = "merged"
    DISPATCHED = "dispatched"
    HANDLING = "handling"
    HANDLED = "handled"
    VERIFIED = "verified"
    CLOSED = "closed"
    EVALUATED = "evaluated"


STATE_TITLES: dict[State, tuple[str, str]] = {
    State.REPORTED: ("信息收集", "reported"),
    State.REGISTERED: ("已立案待派遣", "registered"),
    State.REJECTED: ("不予立案", "rejected"),
    State.MERGED: ("已合并", "merged as duplicate"),
    State.DISPATCHED: ("已派遣待接单", "dispatched"),
    State.HANDLING: ("处置中", "being handled"),
    State.HANDLED: ("已反馈待核查", "handled, awaiting verification"),
    State.VERIFIED: ("已核查待结案", "verified"),
    State.CLOSED: ("已结案", "closed"),
    State.EVALUATED: ("已评价", "evaluated"),
}

TERMINAL = frozenset({State.REJECTED, State.MERGED, State.EVALUATED})
# States whose time limit runs, and which limit of the class applies.
STAGE_OF: dict[State, str] = {
    State.REPORTED: "register",
    State.REGISTERED: "dispatch",
    State.DISPATCHED: "handle",
    State.HANDLING: "handle",
    State.HANDLED: "verify",
    State.VERIFIED: "close",
}


class Action(enum.StrEnum):
    REGISTER = "register"
    REJECT = "reject"
    MERGE = "merge"
    DISPATCH = "dispatch"
    REDISPATCH = "redispatch"
    ACCEPT = "accept"
    RETURN = "return"
    REQUEST_EXTENSION = "request-extension"
    APPROVE_EXTENSION = "approve-extension"
    DENY_EXTENSION = "deny-extension"
    FEEDBACK = "feedback"
    VERIFY = "verify"
    REWORK = "rework"
    CLOSE = "close"
    EVALUATE = "evaluate"


class Actor(enum.StrEnum):
    """Whose department may take the step."""

    CENTER = "center"  # the coordinating operations center (or the one escalated to)
    HANDLER = "handler"  # the department the case is dispatched to


@dataclass(frozen=True)
class Transition:
    action: Action
    sources: frozenset[State]
    target: State
    permission: str
    actor: Actor
    title: tuple[str, str]
    notify: bool = True  # tell the reporter
    restart_clock: bool = True  # a new time limit starts in the target state


def _t(
    action: Action,
    sources: set[State],
    target: State,
    permission: str,
    actor: Actor,
    title: tuple[str, str],
    *,
    notify: bool = True,
    restart_clock: bool = True,
) -> Transition:
    return Transition(
        action, frozenset(sources), target, permission, actor, title, notify, restart_clock
    )


_HANDLED = {State.DISPATCHED, State.HANDLING}

TRANSITIONS: dict[Action, Transition] = {
    t.action: t
    for t in (
        _t(
            Action.REGISTER,
            {State.REPORTED},
            State.REGISTERED,
            CASES_REGISTER,
            Actor.CENTER,
            ("立案", "register"),
        ),
        _t(
            Action.REJECT,
            {State.REPORTED},
            State.REJECTED,
            CASES_REGISTER,
            Actor.CENTER,
            ("不予立案", "reject"),
        ),
        _t(
            Action.MERGE,
            {State.REPORTED},
            State.MERGED,
            CASES_REGISTER,
            Actor.CENTER,
            ("合并重复案件", "merge as duplicate"),
        ),
        _t(
            Action.DISPATCH,
            {State.REGISTERED},
            State.DISPATCHED,
            CASES_DISPATCH,
            Actor.CENTER,
            ("派遣", "dispatch"),
        ),
        _t(
            Action.REDISPATCH,
            {State.DISPATCHED},
            State.DISPATCHED,
            CASES_DISPATCH,
            Actor.CENTER,
            ("改派", "re-dispatch"),
            notify=False,
            restart_clock=False,
        ),
        _t(
            Action.ACCEPT,
            {State.DISPATCHED},
            State.HANDLING,
            CASES_HANDLE,
            Actor.HANDLER,
            ("接单", "accept"),
            restart_clock=False,
        ),
        _t(
            Action.RETURN,
            _HANDLED,
            State.REGISTERED,
            CASES_HANDLE,
            Actor.HANDLER,
            ("退回", "return for re-dispatch"),
            notify=False,
        ),
        _t(
            Action.REQUEST_EXTENSION,
            {State.HANDLING},
            State.HANDLING,
            CASES_HANDLE,
            Actor.HANDLER,
            ("申请延期", "ask for an extension"),
            notify=False,
            restart_clock=False,
        ),
        _t(
            Action.APPROVE_EXTENSION,
            {State.HANDLING},
            State.HANDLING,
            CASES_DISPATCH,
            Actor.CENTER,
            ("批准延期", "approve the extension"),
            notify=False,
            restart_clock=False,
        ),
        _t(
            Action.DENY_EXTENSION,
            {State.HANDLING},
            State.HANDLING,
            CASES_DISPATCH,
            Actor.CENTER,
            ("驳回延期", "deny the extension"),
            notify=False,
            restart_clock=False,
        ),
        _t(
            Action.FEEDBACK,
            {State.HANDLING},
            State.HANDLED,
            CASES_HANDLE,
            Actor.HANDLER,
            ("处置反馈", "report the result"),
        ),
        _t(
            Action.VERIFY,
            {State.HANDLED},
            State.VERIFIED,
            CASES_VERIFY,
            Actor.CENTER,
            ("核查通过", "verify on site"),
        ),
        _t(
            Action.REWORK,
            {State.HANDLED},
            State.HANDLING,
            CASES_VERIFY,
            Actor.CENTER,
            ("返工", "send back for rework"),
        ),
        _t(
            Action.CLOSE,
            {State.VERIFIED},
            State.CLOSED,
            CASES_CLOSE,
            Actor.CENTER,
            ("结案", "close"),
        ),
        _t(
            Action.EVALUATE,
            {State.CLOSED},
            State.EVALUATED,
            CASES_CLOSE,
            Actor.CENTER,
            ("评价", "evaluate"),
            notify=False,
            restart_clock=False,
        ),
    )
}


def allowed_actions(state: State) -> list[Action]:
    """The steps a case in `state` may take next (permissions aside)."""
    return [action for action, t in TRANSITIONS.items() if state in t.sources]
