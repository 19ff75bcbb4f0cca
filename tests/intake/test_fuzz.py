"""Fuzzing intake's validation (issue 21: no input can crash or stall a stage).

`validate_report` is fed reports drawn from the published JSON Schema, valid reports with
fields deleted or replaced by random JSON, random and corrupted bytes, and a list of hand-made
pathological messages (deep nesting, huge strings and names, bad encodings, NaN, duplicate
keys, huge numbers, odd Kafka keys). Whatever it gets, it must answer with an Outcome that a
stage can act on and send on: never an exception, reasons with a code, a message and a JSON
path, ids that fit the database, an accepted report that serialises back, and no value of the
report quoted in a reason (the feedback leaves the centre and the report may hold a victim's
data). `pathological_cases` is shared with tests/integration/test_fuzz_stack.py.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis_jsonschema._from_schema as _hjs_from_schema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as _conjecture_utils
from hypothesis_jsonschema import from_schema

from centre.fields import MAX_PROVIDER_REPORT_ID, PROVIDER_ID
from intake import limits
from intake.schema_gen import SCHEMA_FILE
from intake.validation import MAX_REPORT_BYTES, Outcome, validate_report
from tests.factories import make_report

SECRET = "SECRET-4f1a9c2e-7b3d-victim-data"  # placed in values; must never come back in a reason
# A path names at most MAX_DEPTH levels, each at most `.` + 64 characters of a member name +
# an ellipsis (intake.limits cuts longer names), or an index: about 2 KB, not ~300 characters.
MAX_PATH = 1 + limits.MAX_DEPTH * (1 + limits._PATH_NAME + 1)
_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_PROVIDER_ID = re.compile(PROVIDER_ID)
_RUN = uuid.uuid4().hex[:6]
_ids = itertools.count(1)

# Each property test stays within a few seconds (the file in well under a minute). On CI
# (CI=true) the examples are derandomized, so a run there cannot fail by chance; run locally
# for new examples. No example database: nothing is written next to the sources.
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)


# -- hypothesis-jsonschema 0.23.1 on Hypothesis 6.170 -------------------------------------------
# hypothesis-jsonschema draws an object's members with Hypothesis' private `many` through
# `elements.more()` / `elements.reject()`; Hypothesis has since made `many` a context manager
# without `more`, so every object schema fails with AttributeError. This is the old `many`
# (a continue-or-stop boolean per member, forced at the size bounds), for that module only.
class _ManyWithMore:
    def __init__(self, data: Any, min_size: int, max_size: float, average_size: float) -> None:
        self.data, self.min_size, self.max_size = data, min_size, max_size
        self.p_continue = _conjecture_utils._calc_p_continue(
            average_size - min_size, max_size - min_size
        )
        self.count = self.rejections = 0
        self.stopped = False

    def more(self) -> bool:
        if self.min_size == self.max_size:
            go = self.count < self.min_size
        else:
            forced: bool | None = None
            if self.stopped:
                if self.count < self.min_size:
                    self.data.mark_invalid("too many members rejected")
                forced = False
            elif self.count < self.min_size:
                forced = True
            elif self.count >= self.max_size:
                forced = False
            go = self.data.draw_boolean(self.p_continue, forced=forced)
        self.count += go
        return go

    def reject(self) -> None:
        self.count -= 1
        self.rejections += 1
        if self.rejections > max(3, 2 * self.count):
            if self.count < self.min_size:
                self.data.mark_invalid("too many members rejected")
            self.stopped = True


if not hasattr(_conjecture_utils.many, "more"):
    _hjs_from_schema.cu = types.SimpleNamespace(many=_ManyWithMore)  # type: ignore[attr-defined]


# -- the properties ---------------------------------------------------------------------------


def depth_of(value: Any) -> int:
    """Levels of objects and arrays, the value itself being the first (as intake.limits)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in v)
    return deepest


def check(out: Outcome, secrets: tuple[str, ...] = (SECRET,)) -> None:
    """What every stage after validation relies on, whatever the input was."""
    assert isinstance(out, Outcome)
    assert out.accepted != bool(out.problems), out.problems
    assert (out.report is not None) == out.accepted
    for p in out.problems:
        assert isinstance(p.code, str) and _CODE.fullmatch(p.code), p
        assert isinstance(p.message, str) and p.message.strip(), p
        assert len(p.message) <= MAX_PATH + 300, p.code
        assert isinstance(p.path, str) and p.path.startswith("$") and len(p.path) <= MAX_PATH, p
        for s in secrets:
            assert s not in p.message and s not in p.path, p
    prid = out.provider_report_id
    assert prid is None or (isinstance(prid, str) and 0 < len(prid) <= MAX_PROVIDER_REPORT_ID)
    assert out.provider_id is None or _PROVIDER_ID.fullmatch(out.provider_id)
    if out.accepted:
        data = orjson.dumps(out.report)
        assert orjson.loads(data) == out.report
        assert depth_of(out.report) <= limits.MAX_DEPTH
        assert len(data) <= 2 * MAX_REPORT_BYTES
    assert len(out.problems) <= limits.MAX_REASONS, f"{len(out.problems)} reasons"


_ROOT = SCHEMA_FILE.parents[2]
_SOURCES = "".join(
    p.read_text()
    for p in [SCHEMA_FILE]
    + [_ROOT / "intake" / f for f in ("validation.py", "limits.py", "model.py")]
    + [_ROOT / "centre" / f for f in ("fields.py", "problems.py")]
)


def _strings_and_names(doc: Any) -> tuple[set[str], set[str]]:
    values: set[str] = set()
    names: set[str] = set()
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            values.add(v)
        elif isinstance(v, dict):
            names.update(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return values, names


def check_no_value_quoted(out: Outcome, doc: Any) -> None:
    """No string value of the input longer than 8 characters appears in a reason, unless the
    schema, the validator's own text or a member name (paths name fields) holds it too."""
    values, names = _strings_and_names(doc)
    said = "\n".join(p.message + "\n" + p.path for p in out.problems)
    for v in values:
        if len(v) > 8 and v not in _SOURCES and not any(v in n for n in names):
            assert v not in said, (v, out.problems)


def serialise(doc: Any) -> bytes:
    """orjson, or the standard library for integers past 64 bits (which orjson will not write
    but a company may send)."""
    try:
        return orjson.dumps(doc)
    except TypeError:
        return json.dumps(doc, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass")


def key_of(provider_id: str, provider_report_id: str) -> bytes:
    return f"{provider_id}/{provider_report_id}".encode("utf-8", "surrogatepass")


# -- (a) reports drawn from the published JSON Schema -----------------------------------------

PUBLISHED = json.loads(SCHEMA_FILE.read_text())


def generation_schema() -> dict[str, Any]:
    """The published schema, adapted for hypothesis-jsonschema where it needs it:

    - `if`/`then` (urgent needs urgent_reason; image and video need a hash) make it merge and
      filter subschemas at every draw, some 20 times slower (100 examples: over 80 s). They are
      replaced by their strong form: urgent_reason is always a non-blank string, and sha256
      always a hash. The weak forms (absent, null) are drawn by the mutation tests below.
    """
    s = copy.deepcopy(PUBLISHED)
    defs = s["$defs"]
    for d in defs.values():
        d.pop("if", None)
        d.pop("then", None)
    defs["Incident"]["required"].append("urgent_reason")
    defs["Incident"]["properties"]["urgent_reason"] = {
        "type": "string",
        "pattern": r"\S",
        "maxLength": limits.MAX_TEXT,
    }
    defs["ContentItem"]["required"].append("sha256")
    defs["ContentItem"]["properties"]["sha256"] = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
    return s


# What a JSON Schema cannot say: content_id unique within a report (the schema says so in words).
_SCHEMA_CANNOT_SAY = {"duplicate_content_id"}


@settings(FUZZ, max_examples=60)
@given(doc=from_schema(generation_schema()), secret_in=st.sampled_from(["unknown", "description"]))
def test_a_report_valid_by_the_published_schema_is_accepted(
    doc: dict[str, Any], secret_in: str
) -> None:
    if secret_in == "unknown":
        doc["x_secret"] = SECRET
    else:
        doc["incident"]["description"] = f"{SECRET} said"
    out = validate_report(serialise(doc), key_of(doc["provider_id"], doc["provider_report_id"]))
    check(out)
    check_no_value_quoted(out, doc)
    assert out.accepted or {p.code for p in out.problems} <= _SCHEMA_CANNOT_SAY, out.problems


# -- (b) valid reports with fields deleted, replaced or added ---------------------------------


def base_report(
    provider_id: str = "acme-social", provider_report_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A valid report with the secret in a known free-text field, an id field and an unknown
    field."""
    given = {
        "incident": {"description": f"{SECRET} told us"},
        "x_secret": SECRET,
        "users": [{"role": "suspect", "username": SECRET, "country": "FR"}],
        **overrides,
    }
    r = make_report(provider_id=provider_id, **given)
    if provider_report_id is not None:
        r["provider_report_id"] = provider_report_id
    return r


BASE = base_report()
BASE_KEY = key_of(BASE["provider_id"], BASE["provider_report_id"])


def _field_names(schema: Any) -> set[str]:
    out: set[str] = set()
    stack = [schema]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            out.update(v.get("properties", {}) if isinstance(v.get("properties"), dict) else ())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return out


FIELD_NAMES = sorted(_field_names(PUBLISHED))
ODD_STRINGS = [
    SECRET,
    "",
    " ",
    "\u3000",
    "\u0000",
    "\u200b",
    "\ufeff",
    "image",
    "video",
    "text",
    "url",
    "report/v1",
    "acme-social",
    "known_material",
    "suspect",
    "FR",
    "fr",
    "F",
    "ZZZ",
    "2026-11-20T10:15:00Z",
    "2026-11-20T10:15:00",
    "2026-13-40T25:61:00Z",
    "2026-11-20",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+00:00",
    "2026-11-20T10:15:00+24:00",
    "2026-11-20T10:15:00.123456789Z",
    "a" * 64,
    "A" * 64,
    "g" * 64,
    "a" * 32,
    "a" * 65,
    "x" * (limits.MAX_ID + 1),
    "\ud7ff\ue000\U0010ffff",
]
ODD_NUMBERS = [
    -1,
    0,
    1,
    100,
    101,
    65535,
    65536,
    2**31,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**30,
    0.5,
    -0.0,
    1e308,
    5e-324,
]
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(ODD_STRINGS),
    st.sampled_from(ODD_NUMBERS),
)
names = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=10,
)
odd_keys = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"",
            b"/",
            b"acme-social",
            b"acme-social/",
            b"/r-1",
            b"Acme Social/r-1",
            b"\xff/\xfe",
            b"acme-social/" + b"k" * (limits.MAX_KEY_BYTES + 1),
            b"other-co/r-1",
            b"acme-social/" + SECRET.encode(),
        ]
    ),
)


def _spots(doc: Any) -> list[tuple[Any, Any]]:
    """(container, key or index) of every member and element, in document order."""
    out: list[tuple[Any, Any]] = []
    stack = [doc]
    while stack:
        v = stack.pop()
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, child in items:
            out.append((v, k))
            stack.append(child)
    return out


@st.composite
def mutated_reports(draw: Any) -> tuple[dict[str, Any], bytes | None]:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 5))):
        spots = _spots(doc)
        if not spots:
            break
        parent, k = draw(st.sampled_from(spots))
        op = draw(st.sampled_from(["delete", "replace", "add"]))
        if op == "delete":
            del parent[k]
        elif op == "replace":
            parent[k] = draw(json_values)
        elif isinstance(parent, dict):
            parent[draw(names)] = draw(json_values)
        else:
            parent.append(draw(json_values))
    key = draw(st.one_of(st.just(BASE_KEY), odd_keys))
    return doc, key


@settings(FUZZ, max_examples=800)
@given(mutated_reports())
def test_a_mutated_report_is_decided_without_quoting_it(
    case: tuple[dict[str, Any], bytes | None],
) -> None:
    doc, key = case
    out = validate_report(serialise(doc), key)
    check(out)
    check_no_value_quoted(out, doc)


# -- (c) bytes: random, tokens of JSON, a valid report corrupted, deep nesting ----------------

BASE_BYTES = orjson.dumps(BASE)
TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b":",
    b",",
    b" ",
    b"\n",
    b"0",
    b"-1",
    b"1e400",
    b"-",
    b"NaN",
    b"Infinity",
    b"null",
    b"true",
    b'"schema"',
    b'"report/v1"',
    b'"provider_id"',
    b'"acme-social"',
    b'"provider_report_id"',
    b'"r-1"',
    b'"content"',
    b'"incident"',
    b"\\",
    b"\\u",
    b'"\\ud800"',
    b'"\\u0000"',
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\x00",
    b'"' + SECRET.encode() + b'"',
    b'{"k":' * 40,
    b"[" * 40,
]


@st.composite
def corrupted_reports(draw: Any) -> bytes:
    value = bytearray(BASE_BYTES)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(value)))
        op = draw(st.sampled_from(["delete", "insert", "overwrite"]))
        if op == "delete":
            del value[at : at + draw(st.integers(1, 16))]
        elif op == "insert":
            value[at:at] = draw(st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=4))
        else:
            value[at : at + 1] = draw(st.binary(min_size=1, max_size=1))
    return bytes(value)


raw_values = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join),
    corrupted_reports(),
)


@settings(FUZZ, max_examples=1000)
@given(value=raw_values, key=st.one_of(st.just(BASE_KEY), odd_keys))
def test_any_bytes_are_decided(value: bytes, key: bytes | None) -> None:
    check(validate_report(value, key))


def nest(depth: int, kinds: list[bool], leaf: bytes = b"1") -> bytes:
    """`depth` objects (True) and arrays (False) inside one another, written out by hand: no
    serialiser here writes that deep."""
    opening = [b'{"k":' if kinds[i % len(kinds)] else b"[" for i in range(depth)]
    closing = [b"}" if kinds[i % len(kinds)] else b"]" for i in reversed(range(depth))]
    return b"".join(opening) + leaf + b"".join(closing)


_HOLE = "@@FUZZ-HOLE@@"


def with_hole(doc: dict[str, Any], where: str) -> bytes:
    """`doc` as JSON with a placeholder at `where` (x, incident, content0, users0x), to splice
    bytes into."""
    doc = copy.deepcopy(doc)
    if where == "incident":
        doc["incident"] = _HOLE
    elif where == "content0":
        doc["content"][0]["x"] = _HOLE
    elif where == "users0x":
        doc["users"][0]["x"] = _HOLE
    else:
        doc[where] = _HOLE
    return orjson.dumps(doc)


def deep_report(doc: dict[str, Any], where: str, nested: bytes) -> bytes:
    if where == "top":
        return nested
    return with_hole(doc, where).replace(b'"' + _HOLE.encode() + b'"', nested)


# The level at which the nested value starts, the report being level 1.
_STARTS_AT = {"top": 1, "x": 2, "incident": 2, "content0": 4, "users0x": 4}


@settings(FUZZ, max_examples=300)
@given(
    depth=st.integers(1, 2000),
    kinds=st.lists(st.booleans(), min_size=1, max_size=6),
    where=st.sampled_from(sorted(_STARTS_AT)),
)
def test_nesting_of_any_depth_is_decided(depth: int, kinds: list[bool], where: str) -> None:
    out = validate_report(deep_report(BASE, where, nest(depth, kinds)), BASE_KEY)
    check(out)
    deepest = _STARTS_AT[where] + depth - 1
    codes = {p.code for p in out.problems}
    if where == "top" and not kinds[0]:
        # An array is refused as such; past the parser's depth it cannot even be read as one.
        assert codes & {"not_an_object", "too_deep"}, out.problems
    elif deepest > limits.MAX_DEPTH:
        assert "too_deep" in codes, out.problems
    elif where in ("x", "content0", "users0x"):  # unknown fields: kept and passed on
        assert out.accepted, out.problems


# -- (c) hand-made pathological messages ------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    key: bytes | None
    value: bytes
    expect: str | None = None  # "accepted", or a code among the reasons


def pathological_cases(
    provider_id: str = "acme-social",
    new_id: Callable[[], str] = lambda: f"fz-{_RUN}-{next(_ids):05d}",
) -> list[Case]:
    """Messages that have broken, or could break, a parser, a limit or a stage. Each has its
    own provider_report_id from `new_id`; the key names it (and `provider_id`) unless the case
    is about the key."""
    cases: list[Case] = []

    def add(
        name: str,
        value: bytes | Callable[[str], bytes],
        expect: str | None = None,
        key: bytes | Callable[[str], bytes | None] | None = b"<same>",
    ) -> None:
        rid = new_id()
        v = value(rid) if callable(value) else value
        if key == b"<same>":
            k: bytes | None = key_of(provider_id, rid)
        else:
            k = key(rid) if callable(key) else key
        cases.append(Case(name, k, v, expect))

    def rep(rid: str, **overrides: Any) -> dict[str, Any]:
        return base_report(provider_id, rid, **overrides)

    def rep_bytes(rid: str, **overrides: Any) -> bytes:
        return serialise(rep(rid, **overrides))

    def spliced(rid: str, where: str, raw: bytes) -> bytes:
        return with_hole(rep(rid), where).replace(b'"' + _HOLE.encode() + b'"', raw)

    add("valid", lambda r: rep_bytes(r), "accepted")
    # Nesting: around the parser's limit (1024) and intake's (32), as objects, arrays, mixed.
    for depth in (1, 2, 30, 31, 32, 33, 100, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 2000):
        for kinds, kname in (([True], "objects"), ([False], "arrays"), ([True, False], "mixed")):
            # An array is refused as such, unless deeper than orjson parses (1024 levels).
            add(
                f"top-{kname}-{depth}",
                nest(depth, kinds),
                ("too_deep" if depth > 1024 else "not_an_object")
                if not kinds[0]
                else "too_deep"
                if depth > limits.MAX_DEPTH
                else "missing_field",
            )
            add(
                f"unknown-field-{kname}-{depth}",
                lambda r, d=depth, k=kinds: spliced(r, "x", nest(d, k)),
                "too_deep" if depth + 1 > limits.MAX_DEPTH else "accepted",
            )
        add(
            f"incident-objects-{depth}",
            lambda r, d=depth: spliced(r, "incident", nest(d, [True])),
            "too_deep" if depth + 1 > limits.MAX_DEPTH else None,
        )
    # Long strings and names, many values.
    add(
        "provider_report_id-201",
        lambda r: rep_bytes(r + "-" + "L" * 200),
        "invalid_value",
        key=lambda r: key_of(provider_id, r + "-" + "L" * 200),
    )
    add(
        "provider_report_id-10k",
        lambda r: rep_bytes(r + "-" + "L" * 10_000),
        "key_too_long",
        key=lambda r: key_of(provider_id, r + "-" + "L" * 10_000),
    )
    add(
        "provider_report_id-300k-key-short",
        lambda r: rep_bytes(r + "-" + "L" * (limits.MAX_STRING + 10)),
        "too_long",
    )
    add(
        "key-provider_report_id-long-body-short",
        lambda r: rep_bytes(r),
        "key_too_long",
        key=lambda r: key_of(provider_id, r + "K" * 100_000),
    )
    add(
        "content_id-257",
        lambda r: rep_bytes(
            r,
            content=[
                {"content_id": "c" * (limits.MAX_ID + 1), "media_type": "text", "text": SECRET}
            ],
        ),
        "invalid_value",
    )
    add(
        "description-over-max-string",
        lambda r: rep_bytes(r, incident={"description": SECRET + "d" * limits.MAX_STRING}),
        "too_long",
    )
    add("unknown-string-at-max", lambda r: rep_bytes(r, x_long="s" * limits.MAX_STRING), "accepted")
    add(
        "unknown-string-over-max",
        lambda r: rep_bytes(r, x_long="s" * (limits.MAX_STRING + 1)),
        "too_long",
    )
    add(
        "member-name-257",
        lambda r: rep_bytes(r, **{"n" * (limits.MAX_NAME + 1): SECRET}),
        "too_long",
    )
    add("member-name-100k", lambda r: rep_bytes(r, **{"n" * 100_000: 1}), "too_long")
    add(
        "member-names-long-nested-33",
        lambda r: spliced(r, "x", b"".join([b'{"' + b"n" * 250 + b'":'] * 33) + b"1" + b"}" * 33),
        "too_deep",
    )
    add(
        "many-keys-100001",
        lambda r: spliced(r, "x", b"{" + b",".join(b'"%x":0' % i for i in range(100_001)) + b"}"),
        "too_many_values",
    )
    add(
        "many-elements-100001",
        lambda r: spliced(r, "x", b"[0" + b",0" * 100_000 + b"]"),
        "too_many_values",
    )
    add("empty-member-name", lambda r: rep_bytes(r, **{"": SECRET}), "accepted")
    # Thousands of reasons, before they were capped at MAX_REASONS: past some 4400 the
    # decision's audit event passed 256 KiB, so intake failed the batch, restarted and at last
    # quarantined the message (7.7 KB of `"content": [{}] * 2500` was enough); 40,000 made a
    # 4.7 MB feedback/v1, past the 1 MiB its topic takes.
    add(
        "content-5000-empty-items",
        lambda r: rep_bytes(r, content=[{}] * limits.MAX_CONTENT_ITEMS),
        "too_many_problems",
    )
    add(
        "users-5000-every-field-wrong",
        lambda r: rep_bytes(
            r,
            users=[
                {
                    "role": 1,
                    "account_id": 2,
                    "username": 3,
                    "email": 4,
                    "phone": 5,
                    "country": 6,
                    "age_band": 7,
                    "account_action": 8,
                }
            ]
            * 5000,
        ),
        "invalid_type",
    )
    add("over-1-MiB", lambda r: rep_bytes(r, x_pad="p" * MAX_REPORT_BYTES), "too_large")
    add(
        "exactly-1-MiB",
        lambda r: (lambda b: b[:-1] + b" " * (MAX_REPORT_BYTES - len(b)) + b"}")(rep_bytes(r)),
        "accepted",
    )
    # Encodings.
    for name, raw in (
        ("invalid-utf8-ff", b"\xff"),
        ("overlong-utf8", b"\xc0\xaf"),
        ("truncated-utf8", b"\xe2\x82"),
        ("utf8-surrogate", b"\xed\xa0\x80"),
        ("nul-byte", b"\x00"),
        ("control-char", b"\x01"),
    ):
        add(
            f"{name}-in-description",
            lambda r, raw=raw: rep_bytes(r).replace(
                f"{SECRET} told us".encode(), SECRET.encode() + raw
            ),
            "invalid_encoding" if name not in ("nul-byte", "control-char") else "invalid_json",
        )
    add("truncated-utf8-at-end", lambda r: rep_bytes(r)[:-1] + b"\xe2\x82", "invalid_encoding")
    add(
        "lone-surrogate-escape",
        lambda r: rep_bytes(r).replace(f"{SECRET} told us".encode(), SECRET.encode() + b"\\ud800"),
        "invalid_json",
    )
    add(
        "lone-surrogate-in-provider_report_id",
        lambda r: rep_bytes(r).replace(r.encode(), r.encode() + b"\\udc00", 1),
        "invalid_json",
    )
    add("escaped-nul", lambda r: rep_bytes(r, x_nul="a\u0000b"), "accepted")
    add("bom", lambda r: b"\xef\xbb\xbf" + rep_bytes(r), "invalid_json")
    add("utf-16", lambda r: json.dumps(rep(r)).encode("utf-16"), "invalid_encoding")
    add("utf-32", lambda r: json.dumps(rep(r)).encode("utf-32"), "invalid_encoding")
    # Numbers.
    for field, where in (
        ("pdq_quality", "content0"),
        ("port", "ip_event"),
        ("user_count", "batch"),
        ("x_num", "top"),
    ):
        for name, raw in (
            ("nan", b"NaN"),
            ("infinity", b"Infinity"),
            ("-infinity", b"-Infinity"),
            ("1e400", b"1e400"),
            ("10e400", b"1" + b"0" * 400),
            ("2e64", b"18446744073709551616"),
            ("tiny", b"1e-400"),
            ("float", b"1.0"),
            ("neg", b"-1"),
        ):

            def value(r: str, field: str = field, where: str = where, raw: bytes = raw) -> bytes:
                doc = rep(r, batch={"reason": "x"})
                if where == "content0":
                    doc["content"][0][field] = _HOLE
                elif where == "ip_event":
                    doc["location"]["ip_events"][0][field] = _HOLE
                elif where == "batch":
                    doc["batch"][field] = _HOLE
                else:
                    doc[field] = _HOLE
                return orjson.dumps(doc).replace(b'"' + _HOLE.encode() + b'"', raw)

            expect = (
                "invalid_json"
                if name in ("nan", "infinity", "-infinity", "1e400", "10e400")
                else "accepted"
                if field == "x_num"
                else None
            )
            add(f"{field}-{name}", value, expect)
    # Duplicate members: the last one counts (orjson), and the key must agree with it.
    add(
        "duplicate-provider_report_id",
        lambda r: rep_bytes(r).replace(
            b'"provider_report_id":',
            b'"provider_report_id":"' + r.encode() + b'-first","provider_report_id":',
            1,
        ),
        "accepted",
    )
    add(
        "duplicate-provider_report_id-mismatch",
        lambda r: rep_bytes(r).replace(
            b'"provider_report_id":"' + r.encode() + b'"',
            b'"provider_report_id":"'
            + r.encode()
            + b'","provider_report_id":"'
            + r.encode()
            + b'-second"',
            1,
        ),
        "key_mismatch",
    )
    add(
        "duplicate-schema",
        lambda r: rep_bytes(r).replace(
            b'"schema":"report/v1"', b'"schema":"report/v1","schema":"report/v0"', 1
        ),
        "invalid_value",
    )
    add(
        "duplicate-content",
        lambda r: rep_bytes(r).replace(b'"content":', b'"content":[],"content":', 1),
        "accepted",
    )
    # Not one JSON object.
    for name, raw, expect in (
        ("empty", b"", "invalid_json"),
        ("null", b"null", "not_an_object"),
        ("array", b"[]", "not_an_object"),
        ("zero", b"0", "not_an_object"),
        ("string", b'"' + SECRET.encode() + b'"', "not_an_object"),
        ("space", b" ", "invalid_json"),
        ("empty-object", b"{}", "missing_field"),
        ("whitespace-object", b"\n\t{}\r\n", "missing_field"),
    ):
        add(f"value-{name}", raw, expect)
    add("trailing-garbage", lambda r: rep_bytes(r) + b"x", "invalid_json")
    add("two-objects", lambda r: rep_bytes(r) + rep_bytes(r), "invalid_json")
    add("truncated", lambda r: rep_bytes(r)[:-1], "invalid_json")
    # The Kafka key.
    for name, key, expect in (
        ("none", None, "accepted"),
        ("empty", b"", "accepted"),
        ("no-slash", provider_id.encode(), "key_mismatch"),
        ("slash", b"/", "key_mismatch"),
        ("no-report-id", provider_id.encode() + b"/", "key_mismatch"),
        ("no-provider", lambda r: b"/" + r.encode(), "key_mismatch"),
        ("not-utf8", b"\xff\xfe/\x80", "key_mismatch"),
        ("provider-not-topic-safe", lambda r: b"Fuzz Co!/" + r.encode(), "key_mismatch"),
        ("report-id-mismatch", lambda r: key_of(provider_id, r + "-other"), "key_mismatch"),
        ("extra-slashes", lambda r: key_of(provider_id, r + "/a/b"), "key_mismatch"),
        ("nul", lambda r: key_of(provider_id, r) + b"\x00", "key_mismatch"),
        ("100KB", lambda r: key_of(provider_id, r) + b"k" * 100_000, "key_too_long"),
    ):
        add(f"key-{name}", lambda r: rep_bytes(r), expect, key=key)
    add(
        "key-long-value-unparseable",
        b"{",
        "invalid_json",
        key=lambda r: key_of(provider_id, r + "-" + "K" * 1000),
    )
    add(
        "report-id-with-slash",
        lambda r: rep_bytes(r + "/x"),
        "accepted",
        key=lambda r: key_of(provider_id, r + "/x"),
    )
    add("report-id-blank", lambda r: rep_bytes(" \u3000"), "invalid_value")
    add(
        "report-id-not-a-string",
        lambda r: serialise(rep(r) | {"provider_report_id": {"id": r}}),
        "invalid_type",
    )
    return cases


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in pathological_cases()])
def test_a_pathological_message_is_decided(case: Case) -> None:
    out = validate_report(case.value, case.key)
    codes = {p.code for p in out.problems}
    if case.expect == "accepted":
        assert out.accepted, out.problems
    elif case.expect is not None:
        assert case.expect in codes, out.problems
    check(out)
