"""Geolocation against the data shipped in geoip2fast, and against a MaxMind-format database
written by the test itself (the MMDB format is small enough to write by hand; no writer
library and no network needed)."""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from routing.geo import (
    FastGeolocator,
    Geolocator,
    MaxMindGeolocator,
    _clean_code,
    _import_geoip2fast,
    make_geolocator,
    shipped_data_path,
)
from routing.jurisdiction import decide_jurisdiction


@pytest.fixture(scope="module")
def fast() -> FastGeolocator:
    return FastGeolocator()


# --- the shipped geoip2fast data ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("80.128.0.1", "DE"),  # Deutsche Telekom (80.128.0.0/10)
        ("217.0.0.1", "DE"),  # Deutsche Telekom
        ("90.0.0.1", "FR"),  # Orange France
        ("193.253.0.1", "FR"),  # Orange (France Telecom)
        ("8.8.8.8", "US"),  # Google Public DNS
        ("2003::1", "DE"),  # Deutsche Telekom 2003::/19
        ("2a01:cb00::1", "FR"),  # Orange France
        ("2001:4860:4860::8888", "US"),  # Google Public DNS
        ("::ffff:80.128.0.1", "DE"),  # IPv4-mapped: looked up as IPv4
    ],
)
def test_shipped_data_knows_well_known_addresses(
    fast: FastGeolocator, ip: str, country: str
) -> None:
    assert fast.country(ip) == country


def test_shipped_data_has_ipv6(fast: FastGeolocator) -> None:
    assert fast.has_ipv6
    assert fast.networks > 700_000


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "127.0.0.1",
        "192.0.2.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
    ],
)
def test_non_public_addresses_have_no_country(fast: FastGeolocator, ip: str) -> None:
    assert fast.country(ip) is None


@pytest.mark.parametrize(
    "ip", ["", "1.2.3", "01.2.3.4", "80.128.0.1 ", "x", "2003::1::1", "80.128.0.1/8"]
)
def test_malformed_addresses_have_no_country(fast: FastGeolocator, ip: str) -> None:
    assert fast.country(ip) is None


def test_fast_path_agrees_with_geoip2fast_lookup(fast: FastGeolocator) -> None:
    """Our direct reading of geoip2fast's index against the library's own lookup()."""
    module = _import_geoip2fast()
    reference = module.GeoIP2Fast(geoip2fast_data_file=str(shipped_data_path()))
    rng = random.Random(20261120)
    ips = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(20_000)]
    # geoip2fast mixes IPv4 and IPv6 in one key space and misanswers for ::/96, so compare
    # on global unicast (2000::/3), the only IPv6 space that is public.
    ips += [str(ipaddress.IPv6Address((1 << 125) | rng.getrandbits(125))) for _ in range(20_000)]
    mismatches = [
        ip for ip in ips if fast._lookup(ip) != _clean_code(reference.lookup(ip).country_code)
    ]
    assert mismatches == []
    assert sum(fast._lookup(ip) is not None for ip in ips) > 10_000


def test_data_is_loaded_once_per_process(fast: FastGeolocator) -> None:
    assert FastGeolocator()._table is fast._table


def test_lookups_are_cached() -> None:
    geo = FastGeolocator(cache_size=16)
    for _ in range(3):
        assert geo.country("80.128.0.1") == "DE"
    info = geo.cache_info()
    assert (info.hits, info.misses) == (2, 1)


def test_missing_data_file_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FastGeolocator(tmp_path / "nope.dat.gz")


def test_loading_is_offline_and_leaves_the_environment_alone() -> None:
    """In a fresh process, so that the data really loads: no socket may be opened, and the
    PYTHONWARNINGS/PYTHONIOENCODING that importing geoip2fast sets must not leak to children."""
    code = """
import json, os, sys
def refuse(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "urllib.Request"):
        raise AssertionError(f"network access during geolocation: {event}")
sys.addaudithook(refuse)
os.environ.pop("PYTHONWARNINGS", None)
os.environ.pop("PYTHONIOENCODING", None)
from routing.geo import make_geolocator
geo = make_geolocator(None)
print(json.dumps({"de": geo.country("80.128.0.1"), "v6": geo.country("2003::1"),
                  "warnings": os.environ.get("PYTHONWARNINGS"),
                  "encoding": os.environ.get("PYTHONIOENCODING")}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "de": "DE",
        "v6": "DE",
        "warnings": None,
        "encoding": None,
    }


def test_make_geolocator_defaults_to_shipped_data() -> None:
    assert isinstance(make_geolocator(None), FastGeolocator)
    assert isinstance(make_geolocator(""), FastGeolocator)  # an empty CENTRE_GEOIP_DB is unset


def test_geolocator_feeds_the_jurisdiction_rule(fast: FastGeolocator) -> None:
    rep = {
        "location": {
            "ip_events": [
                {"ip": "80.128.0.1"},
                {"ip": "::ffff:90.0.0.1"},
                {"ip": "2003::1"},
                {"ip": "8.8.8.8"},
            ]
        }
    }
    j = decide_jurisdiction(rep, fast.country)
    assert j.as_dict() == {
        "countries": [
            {"country": "de", "basis": ["ip_geolocation"]},
            {"country": "fr", "basis": ["ip_geolocation"]},
        ],
        "europol_only": False,
    }
    assert j.reasons == ("ip_outside_eu:US", "signals_disagree")


# --- a tiny MaxMind DB written here ------------------------------------------------------------
# Format: MaxMind DB spec 2.0 — binary search tree over address bits (24-bit records), 16 zero
# bytes, data section, then b"\xab\xcd\xefMaxMind.com" and the metadata map.


def _mmdb_control(type_: int, size: int) -> bytes:
    assert size < 29
    if type_ <= 7:
        return bytes([(type_ << 5) | size])
    return bytes([size, type_ - 7])  # extended type


def _mmdb_encode(value: Any) -> bytes:
    if isinstance(value, str):
        raw = value.encode()
        return _mmdb_control(2, len(raw)) + raw
    if isinstance(value, dict):
        out = _mmdb_control(7, len(value))
        for key, item in value.items():
            out += _mmdb_encode(key) + _mmdb_encode(item)
        return out
    if isinstance(value, list):
        return _mmdb_control(11, len(value)) + b"".join(map(_mmdb_encode, value))
    if isinstance(value, tuple):  # (type, int): uint16=5, uint32=6, uint64=9
        type_, number = value
        assert isinstance(type_, int) and isinstance(number, int)
        raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
        return _mmdb_control(type_, len(raw)) + raw
    raise TypeError(type(value))


def write_mmdb(path: Path, database_type: str, networks: dict[str, dict[str, Any]]) -> None:
    """An IPv6 tree (IPv4 under ::/96, as MaxMind lays it out) of non-overlapping networks."""
    data = b""
    records: list[tuple[int, int, int]] = []  # (address bits in 128, prefix length, data offset)
    for cidr, record in networks.items():
        net = ipaddress.ip_network(cidr)
        shift = 96 if net.version == 4 else 0
        records.append((int(net.network_address), net.prefixlen + shift, len(data)))
        data += _mmdb_encode(record)

    nodes: list[list[tuple[str, int] | None]] = [[None, None]]
    for address, prefix_len, offset in records:
        node = 0
        for depth in range(prefix_len):
            bit = (address >> (127 - depth)) & 1
            if depth == prefix_len - 1:
                nodes[node][bit] = ("data", offset)
            else:
                child = nodes[node][bit]
                if child is None:
                    nodes.append([None, None])
                    child = ("node", len(nodes) - 1)
                    nodes[node][bit] = child
                node = child[1]

    count = len(nodes)

    def record_value(rec: tuple[str, int] | None) -> int:
        if rec is None:
            return count  # "no data"
        kind, value = rec
        return value if kind == "node" else count + 16 + value

    tree = b"".join(
        record_value(left).to_bytes(3, "big") + record_value(right).to_bytes(3, "big")
        for left, right in nodes
    )
    metadata = {
        "binary_format_major_version": (5, 2),
        "binary_format_minor_version": (5, 0),
        "build_epoch": (9, 1_700_000_000),
        "database_type": database_type,
        "description": {"en": "test database"},
        "ip_version": (5, 6),
        "languages": ["en"],
        "node_count": (6, count),
        "record_size": (5, 24),
    }
    path.write_bytes(tree + bytes(16) + data + b"\xab\xcd\xefMaxMind.com" + _mmdb_encode(metadata))


def _country(code: str, name: str) -> dict[str, Any]:
    return {"iso_code": code, "names": {"en": name}}


NETWORKS = {
    "80.128.0.0/10": {"country": _country("DE", "Germany")},
    "90.0.0.0/13": {"country": _country("FR", "France")},
    "8.8.8.0/24": {"country": _country("US", "United States")},
    "2003::/19": {"country": _country("DE", "Germany")},
    # A network known only by where it is registered: not a location.
    "193.0.0.0/21": {"registered_country": _country("NL", "Netherlands")},
}


@pytest.fixture(
    params=["GeoLite2-Country", "GeoIP2-City", "DBIP-Country-Lite", "GeoIP2-Enterprise"]
)
def mmdb(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / "test.mmdb"
    write_mmdb(path, request.param, NETWORKS)
    return path


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("80.128.0.1", "DE"),
        ("80.191.255.255", "DE"),
        ("80.192.0.0", None),  # just past the /10
        ("90.7.1.2", "FR"),
        ("8.8.8.8", "US"),
        ("2003::1", "DE"),
        ("2003:1fff:ffff::1", "DE"),
        ("2003:2000::1", None),
        ("::ffff:80.128.0.1", "DE"),  # our tree has no ::ffff:0:0/96 alias: folded to IPv4
        ("193.0.0.1", None),
        ("1.1.1.1", None),
        ("not-an-ip", None),
    ],
)
def test_maxmind_database(mmdb: Path, ip: str, country: str | None) -> None:
    geo = MaxMindGeolocator(mmdb)
    try:
        assert geo.country(ip) == country
    finally:
        geo.close()


def test_maxmind_via_make_geolocator(tmp_path: Path) -> None:
    path = tmp_path / "country.mmdb"
    write_mmdb(path, "GeoLite2-Country", NETWORKS)
    geo = make_geolocator(str(path))
    assert isinstance(geo, MaxMindGeolocator) and isinstance(geo, Geolocator)
    assert geo.country("80.128.0.1") == "DE"
    j = decide_jurisdiction({"location": {"ip_events": [{"ip": "2003::1"}]}}, geo.country)
    assert j.as_dict()["countries"] == [{"country": "de", "basis": ["ip_geolocation"]}]
    geo.close()


def test_maxmind_rejects_databases_without_countries(tmp_path: Path) -> None:
    path = tmp_path / "asn.mmdb"
    write_mmdb(path, "GeoLite2-ASN", {"8.8.8.0/24": {"autonomous_system_number": (6, 15169)}})
    with pytest.raises(ValueError, match="GeoLite2-ASN"):
        MaxMindGeolocator(path)


def test_mmdb_writer_is_read_the_same_by_pure_python_and_c_readers(tmp_path: Path) -> None:
    # Guards the hand-written format: both maxminddb back ends must accept it.
    import maxminddb

    path = tmp_path / "check.mmdb"
    write_mmdb(path, "GeoLite2-Country", NETWORKS)
    for mode in (maxminddb.MODE_FILE, maxminddb.MODE_MMAP_EXT):
        with maxminddb.open_database(str(path), mode) as reader:
            assert reader.get("80.128.0.1") == NETWORKS["80.128.0.0/10"]
            assert reader.get("1.1.1.1") is None
            assert reader.metadata().node_count > 0
