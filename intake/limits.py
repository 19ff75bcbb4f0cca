"""Limits on everything intake accepts and passes on: pure, no I/O.

A report that validates travels through every stage, is stored, sealed and sent to up to 28
recipients, so what it may hold is bounded at the door: how deep it nests, how many values it
holds, how long its strings and member names are, and how long the Kafka key is. The known
fields have tighter bounds of their own in `intake.model` (ids, URLs, lists); these bounds hold
for everything, the unknown fields that are passed on included.

The walk is iterative, so a document nested as deep as the parser allows costs no recursion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32  # objects and arrays inside one another, the report itself being the first
MAX_VALUES = 100_000  # object members and array elements in the whole report
MAX_STRING = 262_144  # characters of any string value (free text, e.g. a chat, included)
MAX_NAME = 256  # characters of an object member's name
MAX_KEY_BYTES = 1024  # the Kafka key, <provider_id>/<provider_report_id>, in bytes
MAX_PROBLEMS = 20  # reasons given for these limits; the walk stops at the first 20
MAX_REASONS = 100  # reasons in one rejection at most: the rest are counted in the last one
_PATH_NAME = 64  # characters of a member name shown in a path (never the whole of a long one)

# The known fields' own bounds (`intake.model` puts them in the JSON Schema).
MAX_ID = 256  # content_id, account_id, username, reference, authority, batch.reason, ip
MAX_EMAIL = 320
MAX_PHONE = 64
MAX_URL = 8_192
MAX_TEXT = MAX_STRING  # description, urgent_reason, text
MAX_CONTENT_ITEMS = 5_000
MAX_USERS = 10_000  # a batch bundle names every account that shared the content
MAX_IP_EVENTS = 10_000
MAX_REPORTED_ELSEWHERE = 100
MAX_ANNOTATIONS = 32


@dataclass(frozen=True, slots=True)
class LimitProblem:
    code: str
    message: str
    path: str


def _name(name: str) -> str:
    return name if len(name) <= _PATH_NAME else name[:_PATH_NAME] + "…"


def _child(path: str, part: str | int) -> str:
    return f"{path}[{part}]" if isinstance(part, int) else f"{path}.{_name(part)}"


def _label(path: str) -> str:
    return path[2:] if len(path) > 1 else "the report"


def structure_problems(doc: Any) -> list[LimitProblem]:
    """Every place where `doc` (parsed JSON) goes past a limit, at most MAX_PROBLEMS of them,
    in document order. A container nested too deep is one problem; what is inside it is not
    looked at."""
    out: list[LimitProblem] = []
    values = 0
    stack: list[tuple[Any, str, int]] = [(doc, "$", 1)]
    while stack and len(out) < MAX_PROBLEMS:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                out.append(
                    LimitProblem(
                        "too_long",
                        f"{_label(path)} must be at most {MAX_STRING} characters long.",
                        path,
                    )
                )
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            out.append(
                LimitProblem(
                    "too_deep",
                    f"{_label(path)} is nested deeper than "
                    f"{MAX_DEPTH} levels of objects and arrays.",
                    path,
                )
            )
            continue
        values += len(value)
        if values > MAX_VALUES:
            out.append(
                LimitProblem(
                    "too_many_values",
                    f"The report holds more than {MAX_VALUES} object members and array elements.",
                    "$",
                )
            )
            break
        children: list[tuple[Any, str, int]] = []
        if isinstance(value, dict):
            for name, child in value.items():
                if len(name) > MAX_NAME:
                    out.append(
                        LimitProblem(
                            "too_long",
                            f"A member name in {_label(path)} is "
                            f"longer than {MAX_NAME} characters.",
                            _child(path, name),
                        )
                    )
                    continue
                children.append((child, _child(path, name), depth + 1))
        else:
            children = [(child, _child(path, i), depth + 1) for i, child in enumerate(value)]
        stack.extend(reversed(children))  # popped in document order
    return out[:MAX_PROBLEMS]


def key_problem(key: bytes | None) -> LimitProblem | None:
    if key is not None and len(key) > MAX_KEY_BYTES:
        return LimitProblem(
            "key_too_long",
            f"The Kafka key is {len(key)} bytes; the limit is {MAX_KEY_BYTES} bytes.",
            "$",
        )
    return None


def shown_id(value: str, limit: int) -> str:
    """An id as feedback may show it: whole when within `limit` characters, else its first
    `limit - 1` and an ellipsis (never echoed whole)."""
    return value if len(value) <= limit else value[: limit - 1] + "…"
