"""IP geolocation from local data: which country an IP address is in.

Two sources (DESIGN.md "IP geolocation"): a MaxMind-format database when `CENTRE_GEOIP_DB`
names one, else the data shipped inside the `geoip2fast` package. Both work offline; neither
ever downloads anything (geoip2fast only fetches when its `update_*` methods are called, which
this module never does).
"""

from __future__ import annotations

import os
import socket
import threading
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "FastGeolocator",
    "Geolocator",
    "MaxMindGeolocator",
    "make_geolocator",
]

# Sized for the set of distinct addresses a worker sees in a burst (the same uploaders recur
# across reports); 64 Ki entries of short strings cost a few MiB.
DEFAULT_CACHE_SIZE = 65_536

# The default geoip2fast file (`geoip2fast.dat.gz`) holds IPv4 only; this one, shipped in the
# same wheel, holds IPv4 and IPv6.
SHIPPED_DATA_FILE = "geoip2fast-ipv6.dat.gz"

_MAX_IPV4 = 0xFFFF_FFFF
_IPV4_MAPPED_PREFIX = 0xFFFF  # ::ffff:0:0/96, after shifting out the low 32 bits
# MaxMind's legacy continent pseudo-codes: two letters, but no country.
_PSEUDO_COUNTRIES = frozenset({"EU", "AP"})


@runtime_checkable
class Geolocator(Protocol):
    """Where an IP address is, as an ISO 3166-1 alpha-2 code in upper case, or None."""

    def country(self, ip: str) -> str | None: ...


def _parse_ip(ip: str) -> tuple[int, bool] | None:
    """(address as int, is_ipv6), with IPv4-mapped IPv6 folded into IPv4.

    inet_pton rather than ipaddress: it is ~8x faster and, unlike inet_aton, strict (no
    "1.2.3", no leading zeros, no surrounding blanks).
    """
    try:
        if ":" in ip:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, ip), "big")
            if value >> 32 == _IPV4_MAPPED_PREFIX:
                return value & _MAX_IPV4, False
            return value, True
        return int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big"), False
    except (OSError, ValueError, TypeError):
        return None


def _clean_code(code: object) -> str | None:
    if not isinstance(code, str) or len(code) != 2 or not code.isascii() or not code.isalpha():
        return None
    code = code.upper()
    return None if code in _PSEUDO_COUNTRIES else code


class _CachedGeolocator:
    """LRU cache in front of a lookup: report streams repeat the same addresses."""

    def __init__(self, cache_size: int) -> None:
        # Per instance, not a decorator on the method, so that the cache dies with the
        # geolocator and two databases never share answers.
        self._cached: Callable[[str], str | None] = lru_cache(maxsize=cache_size)(self._lookup)

    def country(self, ip: str) -> str | None:
        return self._cached(ip)

    def cache_info(self) -> Any:
        return self._cached.cache_info()  # type: ignore[attr-defined]

    def cache_clear(self) -> None:
        self._cached.cache_clear()  # type: ignore[attr-defined]

    def _lookup(self, ip: str) -> str | None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# geoip2fast


@dataclass(frozen=True, slots=True)
class _FastTable:
    """geoip2fast's two-level sorted index, read directly.

    GeoIP2Fast.lookup() builds a result object, formats the CIDR and times itself on every
    call (~6 µs); two bisects on the same lists cost well under 1 µs.
    """

    index: Sequence[int]  # first address of each chunk
    firsts: Sequence[Sequence[int]]  # per chunk: first address of each network, sorted
    netlens: Sequence[Sequence[int]]  # per chunk: prefix length of each network
    ids: Sequence[Sequence[int]]  # per chunk: index into codes
    codes: tuple[str | None, ...]  # None for private/reserved/not-found pseudo-entries
    has_ipv6: bool
    networks: int

    def country(self, value: int, is_ipv6: bool) -> str | None:
        # geoip2fast keys IPv4 and IPv6 in one integer space; an IPv6 address inside ::/96
        # would collide with the IPv4 networks, and none of ::/96 is public anyway.
        if is_ipv6 and value <= _MAX_IPV4:
            return None
        root = bisect_right(self.index, value) - 1
        if root < 0:
            return None
        firsts = self.firsts[root]
        pos = bisect_right(firsts, value) - 1
        if pos < 0:
            return None
        first = firsts[pos]
        if is_ipv6:
            if first <= _MAX_IPV4:  # below the first IPv6 network: nothing covers it
                return None
            host_bits = 128 - self.netlens[root][pos]
        else:
            host_bits = 32 - self.netlens[root][pos]
        if value - first >= 1 << host_bits:  # in a gap between networks
            return None
        return self.codes[self.ids[root][pos]]


_fast_tables: dict[str, _FastTable] = {}
_fast_lock = threading.Lock()


def _import_geoip2fast() -> Any:
    # Importing geoip2fast sets PYTHONWARNINGS=ignore and PYTHONIOENCODING in os.environ,
    # which every subprocess we start would inherit; put the environment back.
    saved = {key: os.environ.get(key) for key in ("PYTHONWARNINGS", "PYTHONIOENCODING")}
    try:
        import geoip2fast.geoip2fast as module
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return module


def shipped_data_path() -> Path:
    """Absolute path of the IPv4+IPv6 country file inside the installed geoip2fast."""
    return Path(_import_geoip2fast().__file__).with_name(SHIPPED_DATA_FILE)


def _load_fast_table(path: Path) -> _FastTable:
    key = str(path.resolve())
    with _fast_lock:
        # geoip2fast keeps its data in module globals, so a second load replaces the first for
        # every GeoIP2Fast instance: load each file once per process, under a lock, and keep
        # our own references to the lists right after loading.
        table = _fast_tables.get(key)
        if table is not None:
            return table
        module = _import_geoip2fast()
        if not path.is_file():
            raise FileNotFoundError(f"geoip2fast data file not found: {path}")
        # An absolute path: with a bare file name geoip2fast would prefer a file of that name
        # in the current directory over its own.
        loader = module.GeoIP2Fast(verbose=False, geoip2fast_data_file=key)
        if not loader.country:
            raise ValueError(f"{path.name} is not a geoip2fast country database")
        codes = tuple(
            # Entries like "02:Private Network Class A" or "99:<not found in database>" are
            # geoip2fast's markers for non-public and unknown space, not countries.
            _clean_code(entry.split(":", 1)[0])
            for entry in module.mainListNamesCountry
        )
        table = _FastTable(
            index=module.mainIndex,
            firsts=module.mainListFirstIP,
            netlens=module.mainListNetlength,
            ids=module.mainListIDCountryCodes,
            codes=codes,
            has_ipv6=bool(loader.ipv6),
            networks=int(module.totalNetworks),
        )
        _fast_tables[key] = table
        return table


class FastGeolocator(_CachedGeolocator):
    """Country lookups on the data shipped inside the geoip2fast package (IPv4 and IPv6).

    The data (~790k networks, ~50 MiB in memory) is loaded once per process and shared by
    every instance; loading takes about 0.2 s.
    """

    def __init__(
        self, data_file: str | os.PathLike[str] | None = None, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        path = Path(data_file) if data_file is not None else shipped_data_path()
        self._table = _load_fast_table(path)
        super().__init__(cache_size)

    @property
    def has_ipv6(self) -> bool:
        return self._table.has_ipv6

    @property
    def networks(self) -> int:
        return self._table.networks

    def _lookup(self, ip: str) -> str | None:
        parsed = _parse_ip(ip)
        if parsed is None:
            return None
        return self._table.country(*parsed)


# ---------------------------------------------------------------------------------------------
# MaxMind


class MaxMindGeolocator(_CachedGeolocator):
    """Country lookups in a MaxMind-format database (GeoIP2/GeoLite2/DB-IP, country or city)."""

    def __init__(self, path: str | os.PathLike[str], cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        # Imported here: geoip2 takes ~70 ms to import and most processes never need it.
        import geoip2.database
        import geoip2.errors

        self._not_found: type[Exception] = geoip2.errors.AddressNotFoundError
        self._reader = geoip2.database.Reader(os.fspath(path))
        database_type: str = self._reader.metadata().database_type
        # geoip2 checks the method against the database type and raises TypeError (after an
        # expensive inspect.stack()) on a mismatch, so choose the right one once.
        query: Callable[[str], Any]
        if "City" in database_type:
            query = self._reader.city
        elif "Enterprise" in database_type:
            query = self._reader.enterprise
        elif "Country" in database_type:
            query = self._reader.country
        else:
            self._reader.close()
            raise ValueError(f"unsupported MaxMind database type {database_type!r}")
        self._query = query
        self.database_type = database_type
        super().__init__(cache_size)

    def _lookup(self, ip: str) -> str | None:
        parsed = _parse_ip(ip)
        if parsed is None:
            return None
        value, is_ipv6 = parsed
        # Fold IPv4-mapped IPv6 to IPv4: not every database aliases ::ffff:0:0/96.
        text = ip if is_ipv6 else socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
        try:
            response = self._query(text)
        except self._not_found:
            return None
        except ValueError:  # e.g. an IPv6 address against an IPv4-only database
            return None
        # `country` is where the address is used; `registered_country` (where the network is
        # registered) is deliberately not a fallback: it says little about jurisdiction.
        return _clean_code(response.country.iso_code)

    def close(self) -> None:
        self._reader.close()


def make_geolocator(path: str | None) -> Geolocator:
    """MaxMind when a database path is given (CENTRE_GEOIP_DB), else the shipped geoip2fast data.

    An empty string counts as unset, as an empty environment variable does.
    """
    if path:
        return MaxMindGeolocator(path)
    return FastGeolocator()
