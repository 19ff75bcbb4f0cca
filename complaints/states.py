"""The states of a complaint and the transitions between them (pure, no I/O).

    received ──assign──▶ under_review ──decide──▶ upheld | rejected

A complaint is decided only once someone has it under review; a decision is final. Assigning
again while under review hands the complaint to another case handler (no state change).
"""

from __future__ import annotations

RECEIVED = "received"
UNDER_REVIEW = "under_review"
UPHELD = "upheld"
REJECTED = "rejected"

STATES: tuple[str, ...] = (RECEIVED, UNDER_REVIEW, UPHELD, REJECTED)
OPEN: tuple[str, ...] = (RECEIVED, UNDER_REVIEW)
FINAL: tuple[str, ...] = (UPHELD, REJECTED)

_NEXT: dict[str, frozenset[str]] = {
    RECEIVED: frozenset({UNDER_REVIEW}),
    UNDER_REVIEW: frozenset({UNDER_REVIEW, UPHELD, REJECTED}),
    UPHELD: frozenset(),
    REJECTED: frozenset(),
}


class TransitionError(ValueError):
    """A transition the state machine does not allow; the message says what to do instead."""


def can(current: str, to: str) -> bool:
    return to in _NEXT.get(current, frozenset())


def check(current: str, to: str) -> None:
    """Raise TransitionError with a message a case handler can act on."""
    if current not in _NEXT:
        raise TransitionError(f"unknown state {current!r}")
    if to not in _NEXT:
        raise TransitionError(f"unknown state {to!r}; the states are {', '.join(STATES)}")
    if can(current, to):
        return
    if current in FINAL:
        raise TransitionError(f"the complaint is already {current}; a decision is final")
    if current == RECEIVED and to in FINAL:
        raise TransitionError(
            "the complaint is not under review yet; assign it to a case "
            "handler first (centre complaints assign ID HANDLER)"
        )
    raise TransitionError(f"a complaint cannot go from {current} to {to}")
