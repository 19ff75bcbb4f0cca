"""Which EU member states likely have jurisdiction over a report (CONTRACT.md, "Jurisdiction").

A pure function of the report and a geolocation callable: no I/O, no clock, so the routing
agent stays a thin shell and the rule is tested without a broker or a database.

Reasons are machine-stable strings made only of codes, JSON paths and country codes: they go
into cases, logs and the audit trail, so they must never carry an IP address or user data.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

__all__ = [
    "BASES",
    "EU_MEMBER_STATES",
    "CountryBasis",
    "Jurisdiction",
    "decide_jurisdiction",
    "normalize_country",
]

# Written as in the contract (and the ISO list below as in the standard's table) so that both
# can be checked by eye against their source.
EU_MEMBER_STATES: Final[frozenset[str]] = frozenset(
    "at be bg cy cz de dk ee es fi fr gr hr hu ie it lt lu lv mt nl pl pt ro se si sk".split()
)

BASIS_IP: Final = "ip_geolocation"
BASIS_SUSPECT: Final = "suspect_country"
BASIS_VICTIM: Final = "victim_country"
BASIS_HINT: Final = "provider_hint"
# The contract's order; a country's bases are always listed in it.
BASES: Final[tuple[str, ...]] = (BASIS_IP, BASIS_SUSPECT, BASIS_VICTIM, BASIS_HINT)

# ISO 3166-1 alpha-2 officially assigned codes (249), plus XK (Kosovo), which is user-assigned
# but used by the EU and by geolocation databases alike.
_ISO_ALPHA2: Final[frozenset[str]] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS XK YE YT ZA ZM ZW
    """.split()
)
# Codes people write that ISO reserves for these countries: "EL" is the EU's own code for
# Greece (ISO and geolocation databases say GR); "UK" is exceptionally reserved for GB.
_ALIASES: Final[Mapping[str, str]] = {"EL": "GR", "UK": "GB"}

_BIT = {basis: 1 << i for i, basis in enumerate(BASES)}
_BASES_BY_MASK: Final[tuple[tuple[str, ...], ...]] = tuple(
    tuple(basis for basis in BASES if mask & _BIT[basis]) for mask in range(1 << len(BASES))
)

REASON_SIGNALS_DISAGREE: Final = "signals_disagree"
REASON_NO_MEMBER_STATE: Final = "no_member_state"


@dataclass(frozen=True, slots=True)
class CountryBasis:
    country: str  # lower-case alpha-2, as in the `le.<cc>` topics
    basis: tuple[str, ...]  # in BASES order

    def as_dict(self) -> dict[str, Any]:
        return {"country": self.country, "basis": list(self.basis)}


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    countries: tuple[CountryBasis, ...]  # sorted by country code
    europol_only: bool
    reasons: tuple[str, ...]

    @property
    def member_states(self) -> tuple[str, ...]:
        return tuple(entry.country for entry in self.countries)

    def as_dict(self) -> dict[str, Any]:
        """The `jurisdiction` object of case/v1 (reasons go to the case's own `reasons`)."""
        return {
            "countries": [entry.as_dict() for entry in self.countries],
            "europol_only": self.europol_only,
        }


def normalize_country(value: object) -> str | None:
    """Upper-case ISO 3166-1 alpha-2 for a user- or database-supplied code, None if it is not one.

    Case and surrounding blanks are forgiven; names ("Germany"), alpha-3 ("DEU") and unassigned
    pairs ("ZZ", "EU") are not.
    """
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    code = _ALIASES.get(code, code)
    return code if code in _ISO_ALPHA2 else None


# --- IP addresses ----------------------------------------------------------------------------

_IP_PUBLIC: Final = 0
_IP_NOT_PUBLIC: Final = 1
_IP_MALFORMED: Final = 2


def _ranges(cidrs: Iterable[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sorted, merged (starts, ends) of the networks, for one bisect per lookup."""
    spans = sorted(
        (int(net.network_address), int(net.broadcast_address))
        for net in map(ipaddress.ip_network, cidrs)
    )
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple(s for s, _ in merged), tuple(e for _, e in merged)


# Explicit tables rather than ipaddress's is_global/is_private: those changed between Python
# patch releases (and is_global is True for IPv4 multicast), while this decision must not.
# From the IANA special-purpose registries: space whose location says nothing about anyone.
_V4_NOT_PUBLIC = _ranges(
    [
        "0.0.0.0/8",  # "this network", incl. the unspecified address
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT shared space
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. limited broadcast
    ]
)
# IPv6 outside 2000::/3 (global unicast) is all special: ::/8 (unspecified, loopback,
# IPv4-compatible), 64:ff9b::/96 NAT64, 100::/64 discard, 5f00::/16, fc00::/7 ULA, fe80::/10,
# fec0::/10, ff00::/8 multicast. Inside it these are not public either:
_V6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_V6_NOT_PUBLIC = _ranges(
    [
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID, anycast services
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    ]
)
_V6_GLOBAL_FIRST = int(_V6_GLOBAL_UNICAST.network_address)
_V6_GLOBAL_LAST = int(_V6_GLOBAL_UNICAST.broadcast_address)


def _in(value: int, table: tuple[tuple[int, ...], tuple[int, ...]]) -> bool:
    starts, ends = table
    pos = bisect_right(starts, value) - 1
    return pos >= 0 and value <= ends[pos]


@lru_cache(maxsize=65_536)
def _classify_ip(text: str) -> tuple[int, str | None]:
    """(kind, canonical address to geolocate or None); cached: the same uploaders recur."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return _IP_MALFORMED, None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.scope_id is not None:
            # A zone index names an interface on the reporter's machine, not a place.
            address = ipaddress.IPv6Address(int(address))
    value = int(address)
    if isinstance(address, ipaddress.IPv4Address):
        if _in(value, _V4_NOT_PUBLIC):
            return _IP_NOT_PUBLIC, None
    elif not (_V6_GLOBAL_FIRST <= value <= _V6_GLOBAL_LAST) or _in(value, _V6_NOT_PUBLIC):
        return _IP_NOT_PUBLIC, None
    # The canonical text (no scope id, compressed IPv6, mapped → dotted quad) keeps the
    # geolocator's cache hit rate up and gives it nothing it has to parse leniently.
    return _IP_PUBLIC, str(address)


# --- the decision ----------------------------------------------------------------------------


def decide_jurisdiction(
    report: Mapping[str, Any], locate: Callable[[str], str | None]
) -> Jurisdiction:
    """Member states likely to have jurisdiction, each with its bases, and why.

    Union of the EU countries of the geolocated `location.ip_events[*].ip`, of suspects'
    `country` and of victims' `country`; `location.country_hint` only when none of those gives
    an EU country. No EU country at all → Europol only. "signals_disagree" is added when the
    signals that were weighed (IPs, suspects, victims, and the hint when it was used) name more
    than one country, EU or not.

    Never raises on odd shapes: intake has validated the schema, and a routing crash would hold
    a case back, so anything unusable is skipped or becomes a reason.
    """
    found: dict[str, int] = {}  # upper-case EU code -> basis bits
    named: set[str] = set()  # every valid country a weighed signal names, EU or not
    reasons: dict[str, None] = {}  # ordered set: one reason per kind and subject

    location = report.get("location")
    if not isinstance(location, Mapping):
        location = {}

    events = location.get("ip_events")
    if isinstance(events, list):
        for i, event in enumerate(events):
            ip = event.get("ip") if isinstance(event, Mapping) else None
            if ip is None:
                continue  # nothing to weigh; the schema check is intake's job
            kind, canonical = _classify_ip(ip) if isinstance(ip, str) else (_IP_MALFORMED, None)
            if kind == _IP_MALFORMED:
                reasons[f"ip_malformed:$.location.ip_events[{i}].ip"] = None
                continue
            if canonical is None:
                reasons[f"ip_not_public:$.location.ip_events[{i}].ip"] = None
                continue
            code = normalize_country(locate(canonical))
            if code is None:
                reasons[f"ip_unlocated:$.location.ip_events[{i}].ip"] = None
                continue
            named.add(code)
            if code.lower() in EU_MEMBER_STATES:
                found[code] = found.get(code, 0) | _BIT[BASIS_IP]
            else:
                reasons[f"ip_outside_eu:{code}"] = None

    users = report.get("users")
    if isinstance(users, list):
        for i, user in enumerate(users):
            if not isinstance(user, Mapping):
                continue
            role = user.get("role")
            if role == "suspect":
                basis = BASIS_SUSPECT
            elif role == "victim":
                basis = BASIS_VICTIM
            else:
                continue  # recipients say where content went, not who is under jurisdiction
            raw = user.get("country")
            if raw is None:
                continue
            code = normalize_country(raw)
            if code is None:
                reasons[f"country_invalid:$.users[{i}].country"] = None
                continue
            named.add(code)
            if code.lower() in EU_MEMBER_STATES:
                found[code] = found.get(code, 0) | _BIT[basis]
            else:
                reasons[f"{basis}_outside_eu:{code}"] = None

    if not found:
        raw = location.get("country_hint")
        if raw is not None:
            code = normalize_country(raw)
            if code is None:
                reasons["country_invalid:$.location.country_hint"] = None
            else:
                named.add(code)
                if code.lower() in EU_MEMBER_STATES:
                    found[code] = _BIT[BASIS_HINT]
                else:
                    reasons[f"provider_hint_outside_eu:{code}"] = None

    if len(named) > 1:
        reasons[REASON_SIGNALS_DISAGREE] = None
    if not found:
        reasons[REASON_NO_MEMBER_STATE] = None

    countries = tuple(
        CountryBasis(code.lower(), _BASES_BY_MASK[found[code]]) for code in sorted(found)
    )
    return Jurisdiction(countries=countries, europol_only=not countries, reasons=tuple(reasons))
