"""The jurisdiction rule of CONTRACT.md, with a fake geolocator: no data files, no I/O."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

import pytest

from routing.jurisdiction import (
    BASES,
    EU_MEMBER_STATES,
    CountryBasis,
    Jurisdiction,
    decide_jurisdiction,
    normalize_country,
)

IP = "ip_geolocation"
SUSPECT = "suspect_country"
VICTIM = "victim_country"
HINT = "provider_hint"

# Public addresses (none in a special-purpose range), mapped to what the fake database says.
FAKE_DB: dict[str, str | None] = {
    "80.128.0.1": "DE",
    "90.0.0.1": "FR",
    "8.8.8.8": "US",
    "1.1.1.1": "au",  # lower case from a sloppy database still counts
    "2003::1": "DE",
    "2a01:cb00::1": "FR",
    "2001:4860:4860::8888": "US",
    "5.5.5.5": None,
    "6.6.6.6": "EU",  # continent pseudo-code: no country
    "7.7.7.7": "GR",
    "9.9.9.9": "--",
    "11.0.0.1": "NL",
    "31.0.0.1": "IT",
    "62.0.0.1": "AT",
    "100.63.255.255": "SE",  # just below CGNAT space
    "100.128.0.0": "FI",  # just above it
    "172.32.0.1": "PL",  # just above 172.16/12
}


class FakeLocate:
    """A dict-backed geolocator that records what it was asked."""

    def __init__(self, db: Mapping[str, str | None] = FAKE_DB) -> None:
        self.db = db
        self.calls: list[str] = []

    def __call__(self, ip: str) -> str | None:
        self.calls.append(ip)
        return self.db.get(ip)


def report(
    ips: list[Any] | None = None,
    users: list[Any] | None = None,
    hint: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    location: dict[str, Any] = {"ip_events": [{"ip": ip, "event": "upload"} for ip in ips or []]}
    if hint is not None:
        location["country_hint"] = hint
    return {"schema": "report/v1", "location": location, "users": users or [], **extra}


def suspect(country: Any, **more: Any) -> dict[str, Any]:
    return {"role": "suspect", "country": country, **more}


def victim(country: Any, **more: Any) -> dict[str, Any]:
    return {"role": "victim", "country": country, **more}


def decide(rep: Mapping[str, Any], locate: FakeLocate | None = None) -> Jurisdiction:
    return decide_jurisdiction(rep, locate or FakeLocate())


def as_pairs(j: Jurisdiction) -> list[tuple[str, tuple[str, ...]]]:
    return [(c.country, c.basis) for c in j.countries]


# --- constants --------------------------------------------------------------------------------


def test_member_states_are_the_contracts_27() -> None:
    contract = "at be bg cy cz de dk ee es fi fr gr hr hu ie it lt lu lv mt nl pl pt ro se si sk"
    assert EU_MEMBER_STATES == frozenset(contract.split())
    assert len(EU_MEMBER_STATES) == 27
    assert "el" not in EU_MEMBER_STATES and "gb" not in EU_MEMBER_STATES


def test_bases_order_is_the_contracts() -> None:
    assert BASES == (IP, SUSPECT, VICTIM, HINT)


@pytest.mark.parametrize("code", sorted(EU_MEMBER_STATES))
def test_every_member_state_is_accepted_in_either_case(code: str) -> None:
    for written in (code, code.upper()):
        j = decide(report(users=[suspect(written)]))
        assert as_pairs(j) == [(code, (SUSPECT,))]


# --- single bases -----------------------------------------------------------------------------


def test_empty_report_goes_to_europol_only() -> None:
    j = decide({"schema": "report/v1"})
    assert j.countries == ()
    assert j.europol_only is True
    assert j.reasons == ("no_member_state",)


def test_ip_geolocation_basis() -> None:
    j = decide(report(ips=["80.128.0.1"]))
    assert as_pairs(j) == [("de", (IP,))]
    assert j.europol_only is False
    assert j.reasons == ()


def test_suspect_country_basis() -> None:
    j = decide(report(users=[suspect("FR")]))
    assert as_pairs(j) == [("fr", (SUSPECT,))]
    assert j.europol_only is False


def test_victim_country_basis() -> None:
    j = decide(report(users=[victim("IE")]))
    assert as_pairs(j) == [("ie", (VICTIM,))]


def test_recipients_do_not_count() -> None:
    j = decide(report(users=[{"role": "recipient", "country": "DE"}]))
    assert j.europol_only is True
    assert j.countries == ()


@pytest.mark.parametrize(
    "user",
    [
        {"country": "DE"},  # no role
        {"role": "Suspect", "country": "DE"},  # roles are exact
        {"role": "suspect"},  # no country
        {"role": "victim", "country": None},
    ],
)
def test_users_without_a_usable_role_or_country_are_skipped(user: dict[str, Any]) -> None:
    j = decide(report(users=[user]))
    assert j.countries == ()
    assert j.reasons == ("no_member_state",)


def test_union_of_all_three_bases_sorted() -> None:
    j = decide(report(ips=["80.128.0.1"], users=[victim("AT"), suspect("FR")]))
    assert as_pairs(j) == [("at", (VICTIM,)), ("de", (IP,)), ("fr", (SUSPECT,))]
    assert j.europol_only is False


def test_one_country_from_several_bases_is_merged_in_contract_order() -> None:
    j = decide(
        report(
            ips=["80.128.0.1", "2003::1"],
            users=[victim("de"), suspect("DE"), victim("DE")],
            hint="DE",
        )
    )
    # The hint is not a basis here: the other signals already gave an EU country.
    assert as_pairs(j) == [("de", (IP, SUSPECT, VICTIM))]
    assert "signals_disagree" not in j.reasons


def test_countries_are_sorted_by_code() -> None:
    j = decide(
        report(
            ips=["100.128.0.0", "31.0.0.1", "62.0.0.1", "11.0.0.1"],
            users=[suspect("SK"), victim("BE"), suspect("MT"), victim("CY")],
        )
    )
    codes = [c.country for c in j.countries]
    assert codes == sorted(codes) == ["at", "be", "cy", "fi", "it", "mt", "nl", "sk"]


# --- the provider's hint ----------------------------------------------------------------------


def test_hint_counts_when_nothing_else_gives_a_country() -> None:
    j = decide(report(hint="DE"))
    assert as_pairs(j) == [("de", (HINT,))]
    assert j.europol_only is False
    assert j.reasons == ()


@pytest.mark.parametrize(
    "rep",
    [
        report(ips=["90.0.0.1"], hint="DE"),
        report(users=[suspect("FR")], hint="DE"),
        report(users=[victim("FR")], hint="DE"),
    ],
)
def test_hint_is_ignored_when_another_signal_gives_an_eu_country(rep: dict[str, Any]) -> None:
    j = decide(rep)
    assert as_pairs(j)[0][0] == "fr"
    assert all(HINT not in c.basis for c in j.countries)
    assert "de" not in j.member_states


def test_hint_counts_when_the_other_signals_are_outside_the_eu() -> None:
    j = decide(report(ips=["8.8.8.8"], users=[suspect("US")], hint="DE"))
    assert as_pairs(j) == [("de", (HINT,))]
    assert j.reasons == ("ip_outside_eu:US", "suspect_country_outside_eu:US", "signals_disagree")


def test_hint_counts_when_the_other_signals_are_unusable() -> None:
    j = decide(
        report(ips=["10.0.0.1", "not-an-ip", "5.5.5.5"], users=[suspect("Narnia")], hint="fr")
    )
    assert as_pairs(j) == [("fr", (HINT,))]
    assert j.reasons == (
        "ip_not_public:$.location.ip_events[0].ip",
        "ip_malformed:$.location.ip_events[1].ip",
        "ip_unlocated:$.location.ip_events[2].ip",
        "country_invalid:$.users[0].country",
    )


def test_hint_outside_the_eu_means_europol_only() -> None:
    j = decide(report(hint="US"))
    assert j.europol_only is True
    assert j.reasons == ("provider_hint_outside_eu:US", "no_member_state")


def test_invalid_hint_is_reported_when_it_would_have_counted() -> None:
    j = decide(report(hint="Germany"))
    assert j.europol_only is True
    assert j.reasons == ("country_invalid:$.location.country_hint", "no_member_state")


def test_unused_hint_is_not_examined() -> None:
    j = decide(report(users=[suspect("DE")], hint="Germany"))
    assert j.reasons == ()


# --- outside the EU ---------------------------------------------------------------------------


def test_everything_outside_the_eu_goes_to_europol_only_with_reasons() -> None:
    j = decide(
        report(
            ips=["8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"], users=[suspect("US"), victim("UK")]
        )
    )
    assert j.countries == ()
    assert j.europol_only is True
    assert j.reasons == (
        "ip_outside_eu:US",
        "ip_outside_eu:AU",
        "suspect_country_outside_eu:US",
        "victim_country_outside_eu:GB",
        "signals_disagree",
        "no_member_state",
    )


def test_non_eu_signals_do_not_hide_eu_ones() -> None:
    j = decide(report(ips=["8.8.8.8", "80.128.0.1"], users=[victim("CH")]))
    assert as_pairs(j) == [("de", (IP,))]
    assert j.reasons == ("ip_outside_eu:US", "victim_country_outside_eu:CH", "signals_disagree")


def test_same_reason_is_listed_once() -> None:
    j = decide(report(ips=["8.8.8.8", "8.8.8.8", "2001:4860:4860::8888"]))
    assert j.reasons == ("ip_outside_eu:US", "no_member_state")


# --- IP addresses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.1",
        "10.255.255.255",
        "172.16.5.4",
        "172.31.255.255",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.1.1",  # link-local
        "100.64.0.1",  # CGNAT shared space
        "100.127.255.254",
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",  # multicast (ipaddress calls it global)
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "192.0.2.1",  # documentation
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",  # benchmarking
        "192.0.0.8",
        "192.88.99.1",
        "::",
        "::1",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456:789a::1",
        "ff02::1",
        "fec0::1",
        "2001:db8::1",
        "3fff::1",
        "2001::1",  # Teredo
        "2001:2::1",  # benchmarking
        "64:ff9b::808:808",  # NAT64
        "100::1",  # discard
        "::80.128.0.1",  # deprecated IPv4-compatible form
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:100.64.0.1",
    ],
)
def test_non_public_addresses_are_never_geolocated(ip: str) -> None:
    locate = FakeLocate(db=dict.fromkeys([ip], "DE"))
    j = decide(report(ips=[ip]), locate)
    assert locate.calls == []
    assert j.europol_only is True
    assert j.reasons == ("ip_not_public:$.location.ip_events[0].ip", "no_member_state")


@pytest.mark.parametrize("ip", ["100.63.255.255", "100.128.0.0", "172.32.0.1", "11.0.0.1"])
def test_addresses_next_to_special_ranges_are_public(ip: str) -> None:
    locate = FakeLocate()
    j = decide(report(ips=[ip]), locate)
    assert locate.calls == [ip]
    assert j.countries and j.countries[0].basis == (IP,)


@pytest.mark.parametrize(
    "ip",
    [
        "",
        " ",
        "1.2.3",
        "256.1.1.1",
        "01.2.3.4",  # leading zeros: octal or decimal? refuse to guess
        "1.2.3.4 ",
        "80.128.0.1/32",
        "not-an-ip",
        "2003::1::1",
        "2003:::1",
        "gggg::1",
        1347420161,  # an address as a number is not the contract's string
        True,
        ["80.128.0.1"],
        {"ip": "80.128.0.1"},
    ],
)
def test_malformed_addresses_are_never_geolocated(ip: Any) -> None:
    locate = FakeLocate()
    j = decide(report(ips=[ip]), locate)
    assert locate.calls == []
    assert j.reasons == ("ip_malformed:$.location.ip_events[0].ip", "no_member_state")


def test_reason_paths_carry_the_events_index() -> None:
    j = decide(report(ips=["80.128.0.1", "10.1.1.1", "8.8.8.8", "x", "5.5.5.5"]))
    assert j.reasons == (
        "ip_not_public:$.location.ip_events[1].ip",
        "ip_outside_eu:US",
        "ip_malformed:$.location.ip_events[3].ip",
        "ip_unlocated:$.location.ip_events[4].ip",
        "signals_disagree",
    )


def test_ipv6_is_geolocated_in_canonical_form() -> None:
    locate = FakeLocate()
    j = decide(report(ips=["2003:0000:0000::0001", "2A01:CB00::1"]), locate)
    assert locate.calls == ["2003::1", "2a01:cb00::1"]
    assert as_pairs(j) == [("de", (IP,)), ("fr", (IP,))]


def test_ipv6_zone_index_is_dropped_before_geolocation() -> None:
    locate = FakeLocate()
    j = decide(report(ips=["2003::1%eth0"]), locate)
    assert locate.calls == ["2003::1"]
    assert as_pairs(j) == [("de", (IP,))]


@pytest.mark.parametrize("ip", ["::ffff:80.128.0.1", "::FFFF:80.128.0.1", "::ffff:5080:1"])
def test_ipv4_mapped_ipv6_is_handled_as_ipv4(ip: str) -> None:
    locate = FakeLocate()
    j = decide(report(ips=[ip]), locate)
    assert locate.calls == ["80.128.0.1"]
    assert as_pairs(j) == [("de", (IP,))]


@pytest.mark.parametrize("ip", ["5.5.5.5", "6.6.6.6", "9.9.9.9", "12.0.0.1"])
def test_unlocated_addresses(ip: str) -> None:
    # None, a continent pseudo-code, a database's "--" marker, or simply absent.
    j = decide(report(ips=[ip]))
    assert j.reasons == ("ip_unlocated:$.location.ip_events[0].ip", "no_member_state")


@pytest.mark.parametrize("answer", ["ASIA", "Germany", "DEU", "", "XX"])
def test_non_iso_geolocation_answers_count_as_unlocated(answer: str) -> None:
    j = decide(report(ips=["80.128.0.1"]), FakeLocate({"80.128.0.1": answer}))
    assert j.reasons == ("ip_unlocated:$.location.ip_events[0].ip", "no_member_state")


def test_each_public_address_is_geolocated_as_given_order() -> None:
    locate = FakeLocate()
    decide(report(ips=["90.0.0.1", "10.0.0.1", "80.128.0.1", "8.8.8.8"]), locate)
    assert locate.calls == ["90.0.0.1", "80.128.0.1", "8.8.8.8"]


def test_event_without_ip_is_skipped_quietly() -> None:
    rep = {"location": {"ip_events": [{"event": "login"}, {"ip": None}, {"ip": "80.128.0.1"}]}}
    j = decide(rep)
    assert as_pairs(j) == [("de", (IP,))]
    assert j.reasons == ()


# --- Greece and other spellings ---------------------------------------------------------------


@pytest.mark.parametrize("written", ["GR", "gr", "EL", "el", "El"])
def test_greece_accepts_el_as_alias(written: str) -> None:
    j = decide(report(users=[suspect(written)]))
    assert as_pairs(j) == [("gr", (SUSPECT,))]


def test_greece_from_geolocation_and_el_from_user_merge() -> None:
    j = decide(report(ips=["7.7.7.7"], users=[victim("EL")]))
    assert as_pairs(j) == [("gr", (IP, VICTIM))]
    assert "signals_disagree" not in j.reasons


def test_greece_hint_as_el() -> None:
    assert as_pairs(decide(report(hint="EL"))) == [("gr", (HINT,))]


def test_country_codes_forgive_case_and_blanks() -> None:
    assert as_pairs(decide(report(users=[victim(" fr ")]))) == [("fr", (VICTIM,))]


@pytest.mark.parametrize(
    "value", ["Germany", "DEU", "D", "", "  ", "ZZ", "EU", "D3", "de-DE", 49, ["DE"], True]
)
def test_invalid_country_codes(value: Any) -> None:
    j = decide(report(users=[victim("FR"), suspect(value)]))
    assert as_pairs(j) == [("fr", (VICTIM,))]
    assert j.reasons == ("country_invalid:$.users[1].country",)


def test_normalize_country() -> None:
    assert normalize_country("de") == "DE"
    assert normalize_country("EL") == "GR"
    assert normalize_country("uk") == "GB"
    assert normalize_country("XK") == "XK"
    assert normalize_country("EU") is None
    assert normalize_country(None) is None
    assert normalize_country("DEU") is None


# --- disagreement -----------------------------------------------------------------------------


def test_ip_and_suspect_disagree_and_both_count() -> None:
    j = decide(report(ips=["80.128.0.1"], users=[suspect("FR")]))
    assert as_pairs(j) == [("de", (IP,)), ("fr", (SUSPECT,))]
    assert j.reasons == ("signals_disagree",)


def test_two_addresses_in_different_countries_disagree() -> None:
    j = decide(report(ips=["80.128.0.1", "90.0.0.1"]))
    assert j.member_states == ("de", "fr")
    assert j.reasons == ("signals_disagree",)


def test_agreeing_signals_do_not_disagree() -> None:
    j = decide(report(ips=["80.128.0.1", "2003::1"], users=[suspect("DE"), victim("de")]))
    assert j.reasons == ()


def test_unusable_signals_do_not_disagree() -> None:
    j = decide(report(ips=["80.128.0.1", "10.0.0.1", "5.5.5.5"], users=[suspect("??")]))
    assert "signals_disagree" not in j.reasons


# --- output shape and privacy -----------------------------------------------------------------


def test_as_dict_is_the_case_v1_shape() -> None:
    j = decide(report(ips=["80.128.0.1"], users=[suspect("FR"), victim("DE")]))
    d = j.as_dict()
    assert d == {
        "countries": [
            {"country": "de", "basis": ["ip_geolocation", "victim_country"]},
            {"country": "fr", "basis": ["suspect_country"]},
        ],
        "europol_only": False,
    }
    assert json.loads(json.dumps(d)) == d


def test_as_dict_for_europol_only() -> None:
    assert decide(report()).as_dict() == {"countries": [], "europol_only": True}


def test_result_is_immutable_and_comparable() -> None:
    rep = report(ips=["80.128.0.1"], users=[suspect("FR")])
    a, b = decide(rep), decide(rep)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.europol_only = True  # type: ignore[misc]
    assert isinstance(a.countries[0], CountryBasis)


_REASON = re.compile(
    r"^(?:"
    r"(?:ip_malformed|ip_not_public|ip_unlocated):\$\.location\.ip_events\[\d+\]\.ip"
    r"|country_invalid:\$\.(?:users\[\d+\]\.country|location\.country_hint)"
    r"|(?:ip|suspect_country|victim_country|provider_hint)_outside_eu:[A-Z]{2}"
    r"|signals_disagree|no_member_state"
    r")$"
)


def test_reasons_hold_no_personal_data() -> None:
    personal: dict[str, Any] = {
        "ips": [
            "80.128.0.1",
            "10.9.8.7",
            "2003::1",
            "::ffff:90.0.0.1",
            "8.8.8.8",
            "5.5.5.5",
            "999.1.1.1",
            "fe80::abcd%eth0",
        ],
        "users": [
            suspect(
                "FR",
                account_id="acct-4711",
                username="jdoe",
                email="j.doe@example.org",
                phone="+49 170 1234567",
            ),
            victim("Deutschland", account_id="acct-42", username="kid", age_band="child"),
            victim("US", email="victim@example.org"),
        ],
        "hint": "Atlantis",
    }
    j = decide(report(**personal, provider_id="acme-social"))
    blob = json.dumps({"reasons": j.reasons, "jurisdiction": j.as_dict()})
    for needle in (
        "80.128",
        "10.9.8.7",
        "2003:",
        "ffff",
        "8.8.8.8",
        "5.5.5.5",
        "999.",
        "fe80",
        "abcd",
        "eth0",
        "acct",
        "jdoe",
        "example.org",
        "170",
        "kid",
        "Deutschland",
        "acme",
        "@",
    ):
        assert needle not in blob, needle
    assert j.reasons, "the report was built to produce reasons"
    for reason in j.reasons:
        assert _REASON.match(reason), reason


# --- robustness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rep",
    [
        {},
        {"location": None, "users": None},
        {"location": "DE", "users": "suspect"},
        {"location": {"ip_events": "80.128.0.1"}},
        {"location": {"ip_events": [None, "80.128.0.1", 7]}},
        {"users": [None, "suspect", 3, []]},
    ],
)
def test_odd_shapes_never_raise(rep: dict[str, Any]) -> None:
    j = decide(rep)
    assert j.europol_only is True


def test_many_events_stay_correct() -> None:
    ips = ["80.128.0.1", "90.0.0.1", "10.0.0.1", "8.8.8.8"] * 250
    j = decide(report(ips=ips))
    assert j.member_states == ("de", "fr")
    assert j.reasons.count("ip_outside_eu:US") == 1
    assert sum(r.startswith("ip_not_public:") for r in j.reasons) == 250
