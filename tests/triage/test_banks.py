"""Indicator banks on a real database (SQLite, and PostgreSQL when available): import of JSON
lines and CSV with provenance, export, disable/enable, remove, list; and the CLI over them."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import delete
from typer.testing import CliRunner

from app.cli import app
from centre.db import make_engine, make_sessionmaker, upgrade
from centre.settings import Settings
from triage import banks
from triage.bank_common import BankError, Selector
from triage.tables import Indicator


def h(kind: str, seed: object) -> str:
    digest = hashlib.sha256(f"{kind}-{seed}".encode()).hexdigest()
    return digest[:32] if kind == "md5" else digest


def settings_for(url: str, home: Path) -> Settings:
    return Settings(home=home, kafka_bootstrap=None, database_url=url)


@pytest.fixture
def s(db_url: str, tmp_path: Path) -> Settings:
    return settings_for(db_url, tmp_path)


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def entries(s: Settings, bank: str, **kw: object) -> list[banks.Entry]:
    return banks.list_entries(s, bank, limit=None, **kw)[0]  # type: ignore[arg-type]


def by_value(s: Settings, bank: str) -> dict[str, banks.Entry]:
    return {e.value: e for e in entries(s, bank)}


# ----------------------------------------------------------------------------------- import


def test_import_jsonl_takes_provenance_from_each_row_else_the_defaults(
    s: Settings, tmp_path: Path
) -> None:
    f = write_jsonl(
        tmp_path / "h.jsonl",
        [
            {
                "sha256": h("sha256", 1).upper(),
                "source": "NCMEC",
                "added_by": "alice",
                "reason": "confirmed by two analysts",
            },
            {"md5": h("md5", 2), "pdq": h("pdq", 2)},  # two hashes: two entries, defaults apply
            {
                "kind": "pdq",
                "value": h("pdq", 3),
                "added_at": "2026-01-02T03:04:05Z",
                "enabled": False,
                "changed_at": "2026-02-01T00:00:00+01:00",
                "changed_by": "bob",
                "change_reason": "too generic",
            },
        ],
    )
    r = banks.import_file(
        s, "known_material", f, source="hotline-x", added_by="op", reason="weekly list"
    )
    assert r == banks.ImportResult(added=4, already_present=0)
    got = by_value(s, "known_material")
    first = got[h("sha256", 1)]  # normalised to lower case
    assert (first.kind, first.source, first.added_by, first.reason, first.enabled) == (
        "sha256",
        "NCMEC",
        "alice",
        "confirmed by two analysts",
        True,
    )
    assert first.added_at.tzinfo is not None
    assert abs(first.added_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    for kind in ("md5", "pdq"):
        e = got[h(kind, 2)]
        assert (e.kind, e.source, e.added_by, e.reason) == (kind, "hotline-x", "op", "weekly list")
    third = got[h("pdq", 3)]
    assert third.added_at == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert (third.enabled, third.changed_by, third.change_reason) == (False, "bob", "too generic")
    assert third.changed_at == dt.datetime(2026, 1, 31, 23, 0, tzinfo=dt.UTC)


def test_import_csv_with_per_row_provenance(s: Settings, tmp_path: Path) -> None:
    f = tmp_path / "list.csv"
    f.write_text(
        "SHA256,md5,source,added_by,reason,note\n"
        f'{h("sha256", 1)},{h("md5", 1)},partner-a,carol,"seen, twice",ignored\n'
        f"{h('sha256', 2)},,,,,\n"
        "\n"
        f",{h('md5', 3)},partner-b,,,\n"
    )
    r = banks.import_file(s, "grooming", f, source="list.csv", added_by="op", reason=None)
    assert r == (4, 0)
    got = by_value(s, "grooming")
    assert (
        got[h("sha256", 1)].source,
        got[h("sha256", 1)].added_by,
        got[h("sha256", 1)].reason,
    ) == ("partner-a", "carol", "seen, twice")
    assert got[h("md5", 1)].source == "partner-a"
    assert (
        got[h("sha256", 2)].source,
        got[h("sha256", 2)].added_by,
        got[h("sha256", 2)].reason,
    ) == ("list.csv", "op", None)
    assert (got[h("md5", 3)].source, got[h("md5", 3)].added_by) == ("partner-b", "op")


def test_import_csv_saved_by_a_spreadsheet_with_semicolons_and_bom(
    s: Settings, tmp_path: Path
) -> None:
    f = tmp_path / "export.csv"
    f.write_bytes(b"\xef\xbb\xbfsha256;source\r\n" + f"{h('sha256', 9)};hotline-y\r\n".encode())
    assert banks.import_file(s, "false_positive", f, source="x", added_by="op", reason=None) == (
        1,
        0,
    )
    assert entries(s, "false_positive")[0].source == "hotline-y"


def test_format_option_overrides_the_file_name(s: Settings, tmp_path: Path) -> None:
    f = tmp_path / "hashes.txt"
    f.write_text(f"md5\n{h('md5', 1)}\n")
    with pytest.raises(BankError, match="line 1: not a JSON object"):
        banks.import_file(s, "known_material", f, source="x", added_by="op", reason=None)
    assert banks.import_file(
        s, "known_material", f, source="x", added_by="op", reason=None, fmt="csv"
    ) == (1, 0)
    with pytest.raises(BankError, match="unknown format 'xml'; use jsonl or csv"):
        banks.import_file(s, "known_material", f, source="x", added_by="op", reason=None, fmt="xml")


def test_bad_rows_are_named_by_line_and_field_and_nothing_is_imported(
    s: Settings, tmp_path: Path
) -> None:
    # More good rows than one insert chunk before the bad ones: those inserts are undone too.
    good = [{"sha256": h("sha256", i)} for i in range(banks.CHUNK + 10)]
    n = len(good)
    f = write_jsonl(
        tmp_path / "bad.jsonl",
        good
        + [
            {"sha256": "not-a-hash"},
            {"note": "no hash at all"},
            {"md5": h("md5", 1), "source": 7},
            {"pdq": h("pdq", 1), "added_at": "yesterday"},
            {"md5": h("md5", 2), "enabled": "perhaps"},
            {"kind": "sha1", "value": "ab"},
        ],
    )
    with f.open("a") as out:
        out.write("{broken json\n")
    with pytest.raises(BankError) as exc:
        banks.import_file(s, "known_material", f, source="x", added_by="op", reason=None)
    msg = str(exc.value)
    assert "nothing imported" in msg
    for expected in (
        f"line {n + 1}: sha256: sha256 must be 64 hexadecimal characters",
        f"line {n + 2}: needs at least one of sha256, md5, pdq",
        f"line {n + 3}: source: must be text",
        f"line {n + 4}: added_at: 'yesterday' is not a date and time",
        f"line {n + 5}: enabled: must be true or false",
        f"line {n + 6}: kind: must be one of sha256, md5, pdq, not 'sha1'",
        f"line {n + 7}: not a JSON object",
    ):
        assert expected in msg
    assert entries(s, "known_material") == []

    c = tmp_path / "bad.csv"
    c.write_text(f"sha256,md5\n{h('sha256', 1)},\n,{'0' * 31}\n{h('sha256', 2)},,extra\n")
    with pytest.raises(BankError) as exc:
        banks.import_file(s, "known_material", c, source="x", added_by="op", reason=None)
    assert "line 3: md5: md5 must be 32 hexadecimal characters" in str(exc.value)
    assert "line 4: 3 fields but the header names 2" in str(exc.value)
    assert entries(s, "known_material") == []


def test_many_problems_are_summarised(s: Settings, tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "bad.jsonl", [{"md5": "x"}] * 25)
    with pytest.raises(BankError, match=r"line 10: md5: .*\(and 15 more\)$"):
        banks.import_file(s, "known_material", f, source="x", added_by="op", reason=None)


def test_csv_without_a_hash_column_is_refused(s: Settings, tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("hash,source\nabc,x\n")
    with pytest.raises(BankError, match="line 1: the header row must name a column"):
        banks.import_file(s, "known_material", f, source="x", added_by="op", reason=None)


def test_duplicates_are_counted_as_already_present(s: Settings, tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "a.jsonl", [{"sha256": h("sha256", i)} for i in range(3)])
    assert banks.import_file(
        s, "known_material", f, source="first", added_by="op", reason=None
    ) == (3, 0)
    again = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"sha256": h("sha256", 0)},
            {"sha256": h("sha256", 1).upper()},
            {"sha256": h("sha256", 7)},
            {"sha256": h("sha256", 7)},
        ],
    )  # the last repeats a row of the same file
    assert banks.import_file(
        s, "known_material", again, source="second", added_by="op", reason=None
    ) == (1, 3)
    got = by_value(s, "known_material")
    assert len(got) == 4
    assert got[h("sha256", 0)].source == "first"  # an entry already there is left as it was
    # The same hash in another bank is another entry.
    assert banks.import_file(s, "false_positive", f, source="x", added_by="op", reason=None) == (
        3,
        0,
    )


def test_unknown_bank_and_unreadable_file(s: Settings, tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "a.jsonl", [{"md5": h("md5", 1)}])
    with pytest.raises(
        BankError,
        match="unknown bank 'csam'; the banks are known_material, grooming, false_positive",
    ):
        banks.import_file(s, "csam", f, source="x", added_by="op", reason=None)
    with pytest.raises(BankError, match="cannot read .*missing.jsonl: No such file"):
        banks.import_file(
            s, "grooming", tmp_path / "missing.jsonl", source="x", added_by="op", reason=None
        )
    with pytest.raises(BankError, match="cannot read"):
        banks.import_file(s, "grooming", tmp_path, source="x", added_by="op", reason=None)


# ----------------------------------------------------------------------------------- export


def _fill(s: Settings, tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "fill.jsonl",
        [
            {"sha256": h("sha256", 1), "md5": h("md5", 1), "source": "NCMEC", "reason": 'a, "b"'},
            {"pdq": h("pdq", 2), "added_by": "dora"},
            {"md5": h("md5", 3), "source": "partner"},
        ],
    )
    banks.import_file(s, "known_material", f, source="fill", added_by="op", reason="initial")
    banks.disable(
        s, "known_material", Selector(source="partner"), reason="partner withdrew", by="erin"
    )


@pytest.mark.parametrize("name", ["out.jsonl", "out.csv"])
def test_export_then_import_into_an_empty_database_round_trips(
    s: Settings, tmp_path: Path, name: str
) -> None:
    _fill(s, tmp_path)
    before = [e.record() for e in entries(s, "known_material")]
    out = tmp_path / name
    assert banks.export_file(s, "known_material", out, include_disabled=True) == 4
    assert banks.export_file(s, "known_material", tmp_path / f"enabled-{name}") == 3

    fresh = settings_for(f"sqlite:///{tmp_path / 'fresh.db'}", tmp_path)
    upgrade(fresh.database_url)
    assert banks.import_file(
        fresh, "known_material", out, source="ignored", added_by="ignored", reason=None
    ) == (4, 0)
    assert [e.record() for e in entries(fresh, "known_material")] == before

    # and into the same (emptied) database, whatever its backend
    engine = make_engine(s.database_url)
    with make_sessionmaker(engine).begin() as session:
        session.execute(delete(Indicator))
    engine.dispose()
    assert banks.import_file(
        s, "known_material", out, source="ignored", added_by="ignored", reason=None
    ) == (4, 0)
    assert [e.record() for e in entries(s, "known_material")] == before


def test_export_writes_iso_utc_times_and_every_provenance_field(
    s: Settings, tmp_path: Path
) -> None:
    _fill(s, tmp_path)
    out = tmp_path / "x.jsonl"
    banks.export_file(s, "known_material", out, include_disabled=True)
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["kind"] for d in docs] == ["sha256", "md5", "pdq", "md5"]
    assert all(set(d) == set(banks.FIELDS) for d in docs)
    assert all(d["added_at"].endswith("Z") for d in docs)
    dt.datetime.fromisoformat(docs[0]["added_at"])
    assert docs[3]["enabled"] is False and docs[3]["changed_by"] == "erin"
    assert docs[3]["changed_at"].endswith("Z")
    csv_out = tmp_path / "x.data"
    banks.export_file(s, "known_material", csv_out, fmt="csv")
    assert csv_out.read_text().splitlines()[0] == ",".join(banks.FIELDS)
    with pytest.raises(BankError, match="cannot write"):
        banks.export_file(s, "known_material", tmp_path / "no-such-dir" / "x.csv")


# ------------------------------------------------------------------ disable, enable, remove


def test_disable_and_enable_record_who_when_and_why(s: Settings, tmp_path: Path) -> None:
    _fill(s, tmp_path)
    pdq = h("pdq", 2)
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert banks.disable(
        s, "known_material", Selector(value=pdq.upper()), reason="matches a meme", by="frank"
    ) == (1, 0)
    e = by_value(s, "known_material")[pdq]
    assert (e.enabled, e.changed_by, e.change_reason) == (False, "frank", "matches a meme")
    assert e.changed_at is not None and e.changed_at >= t0
    assert e.added_by == "dora" and e.reason == "initial"  # provenance untouched

    # again: nothing changes, and the first record stays
    assert banks.disable(s, "known_material", Selector(value=pdq), reason="again", by="gina") == (
        0,
        1,
    )
    assert by_value(s, "known_material")[pdq].changed_by == "frank"

    assert banks.enable(s, "known_material", Selector(id=e.id), reason="reviewed", by="hana") == (
        1,
        0,
    )
    e2 = by_value(s, "known_material")[pdq]
    assert (e2.enabled, e2.changed_by, e2.change_reason) == (True, "hana", "reviewed")
    assert e2.changed_at is not None and e.changed_at <= e2.changed_at

    # by source: all entries of the source; --kind narrows
    assert banks.disable(
        s, "known_material", Selector(source="NCMEC", kind="md5"), reason="r", by="ivan"
    ) == (1, 0)
    assert banks.disable(s, "known_material", Selector(source="NCMEC"), reason="r", by="ivan") == (
        1,
        1,
    )
    assert not any(e.enabled for e in entries(s, "known_material", source="NCMEC"))


def test_a_disabled_pdq_indicator_is_no_longer_matched(s: Settings, tmp_path: Path) -> None:
    from triage import near

    pdq = h("pdq", 5)
    banks.import_file(
        s,
        "false_positive",
        write_jsonl(tmp_path / "p.jsonl", [{"pdq": pdq}]),
        source="x",
        added_by="op",
        reason=None,
    )
    index = near.IndicatorPDQ(recheck_s=0)
    engine = make_engine(s.database_url)
    with make_sessionmaker(engine)() as session:
        index.refresh(session)
        far = h("pdq", 6)
        assert index.near([pdq, far]) == {pdq: [("false_positive", 0)]}
        assert index.near([far, pdq]) == {pdq: [("false_positive", 0)]}  # answers kept
        banks.disable(s, "false_positive", Selector(value=pdq), reason="r", by="op")
        session.rollback()
        assert index.refresh(session)  # the banks changed: kept answers are dropped
        assert index.near([pdq]) == {}
        banks.import_file(
            s,
            "grooming",
            write_jsonl(tmp_path / "q.jsonl", [{"pdq": far}]),
            source="x",
            added_by="op",
            reason=None,
        )
        session.rollback()
        assert index.refresh(session)
        assert index.near([far, pdq]) == {far: [("grooming", 0)]}
    engine.dispose()


def test_exact_keys_of_the_banks_follow_imports_and_disabling(s: Settings, tmp_path: Path) -> None:
    from triage import near

    sha, md5 = h("sha256", 1), h("md5", 2)
    banks.import_file(
        s,
        "known_material",
        write_jsonl(tmp_path / "e.jsonl", [{"sha256": sha}, {"md5": md5}]),
        source="x",
        added_by="op",
        reason=None,
    )
    index = near.IndicatorPDQ(recheck_s=0)
    engine = make_engine(s.database_url)
    other = ("sha256", h("sha256", 3))
    with make_sessionmaker(engine)() as session:
        index.refresh(session)
        assert len(index.exact) == 2
        assert index.exact.maybe([other, ("sha256", sha), ("md5", md5)]) == [
            ("sha256", sha),
            ("md5", md5),
        ]
        assert index.exact.maybe([("md5", sha)]) == []  # the kind is part of the key
        banks.disable(s, "known_material", Selector(value=sha), reason="r", by="op")
        session.rollback()
        assert index.refresh(session)
        assert index.exact.maybe([("sha256", sha), ("md5", md5)]) == [("md5", md5)]
        banks.import_file(
            s,
            "grooming",
            write_jsonl(tmp_path / "f.jsonl", [{"sha256": other[1]}]),
            source="x",
            added_by="op",
            reason=None,
        )
        session.rollback()
        assert index.refresh(session)
        assert index.exact.maybe([other]) == [other]
    engine.dispose()


def test_exact_keys_never_leave_out_a_member() -> None:
    import random

    from triage.near import ExactKeys

    rng = random.Random(4)
    members = [("sha256", "%064x" % rng.getrandbits(256)) for _ in range(20000)]
    others = [("sha256", "%064x" % rng.getrandbits(256)) for _ in range(20000)]
    keys = ExactKeys(members + members[:50])  # repeats are kept once
    assert len(keys) == 20000
    assert keys.maybe(members) == members
    assert keys.maybe(others) == []  # a 64-bit collision here: about 2e-11
    assert ExactKeys().maybe(members) == []


def test_remove_deletes_the_selected_entries(s: Settings, tmp_path: Path) -> None:
    _fill(s, tmp_path)
    assert (
        banks.remove(s, "known_material", Selector(source="NCMEC"), reason="withdrawn", by="jo")
        == 2
    )
    assert sorted(e.source for e in entries(s, "known_material")) == ["fill", "partner"]
    one = entries(s, "known_material")[0]
    assert banks.remove(s, "known_material", Selector(id=one.id), reason="typo", by="jo") == 1
    assert len(entries(s, "known_material")) == 1


def test_selectors_that_match_nothing_or_are_missing(s: Settings, tmp_path: Path) -> None:
    _fill(s, tmp_path)
    for op in (banks.disable, banks.enable):
        with pytest.raises(
            BankError, match="no entry of known_material matches --source nobody; nothing changed"
        ):
            op(s, "known_material", Selector(source="nobody"), reason="r", by="op")
    with pytest.raises(BankError, match="no entry of grooming matches --id 1; nothing removed"):
        banks.remove(s, "grooming", Selector(id=1), reason="r", by="op")
    with pytest.raises(BankError, match="no entry of known_material matches --value"):
        banks.remove(s, "known_material", Selector(value=h("sha256", 99)), reason="r", by="op")
    # the md5 of entry 1 is not a pdq: a value and a kind that exclude each other
    with pytest.raises(BankError, match="is not a valid pdq hash"):
        banks.disable(
            s, "known_material", Selector(value=h("md5", 1), kind="pdq"), reason="r", by="op"
        )
    with pytest.raises(BankError, match="give a value, a source or an id"):
        banks.disable(s, "known_material", Selector(kind="md5"), reason="r", by="op")
    with pytest.raises(BankError, match="give the reason"):
        banks.remove(s, "known_material", Selector(source="NCMEC"), reason=" ", by="op")
    with pytest.raises(BankError, match="unknown bank"):
        banks.enable(s, "known", Selector(id=1), reason="r", by="op")
    with pytest.raises(BankError, match="unknown kind 'sha1'"):
        banks.list_entries(s, "known_material", kind="sha1")
    assert len(entries(s, "known_material")) == 4  # nothing touched


# ------------------------------------------------------------------------------------- list


def test_list_filters_and_summary(s: Settings, tmp_path: Path) -> None:
    _fill(s, tmp_path)
    banks.import_file(
        s,
        "grooming",
        write_jsonl(tmp_path / "g.jsonl", [{"md5": h("md5", 8)}]),
        source="g",
        added_by="op",
        reason=None,
    )
    got, total = banks.list_entries(s, "known_material", limit=2)
    assert total == 4 and [e.kind for e in got] == ["sha256", "md5"]
    assert [e.source for e in entries(s, "known_material", enabled=False)] == ["partner"]
    assert len(entries(s, "known_material", enabled=True)) == 3
    assert [e.value for e in entries(s, "known_material", kind="pdq")] == [h("pdq", 2)]
    assert banks.summary(s) == [
        banks.SummaryRow("known_material", "sha256", 1, 0),
        banks.SummaryRow("known_material", "md5", 1, 1),
        banks.SummaryRow("known_material", "pdq", 1, 0),
        banks.SummaryRow("grooming", "md5", 1, 0),
    ]
    assert banks.summary(s, kind="md5", source="partner") == [
        banks.SummaryRow("known_material", "md5", 0, 1)
    ]


# -------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = {"CENTRE_DATABASE_URL": db_url, "CENTRE_HOME": str(tmp_path), "USER": "tester"}

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["indicators", *args], env=env)

    return run


def test_cli_import_list_disable_export_remove(
    cli,
    s: Settings,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    f = tmp_path / "in.csv"
    f.write_text(f"sha256,md5,source\n{h('sha256', 1)},{h('md5', 1)},NCMEC\n{h('sha256', 2)},,\n")
    r = cli("import", "--bank", "grooming", "--reason", "pilot", str(f))
    assert r.exit_code == 0, r.output
    assert "3 indicator(s) added to grooming; 0 already there" in r.stdout
    e = by_value(s, "grooming")[h("sha256", 2)]
    assert (e.source, e.added_by, e.reason) == ("in.csv", "tester", "pilot")

    r = cli("list")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert any("grooming" in x and "sha256" in x and "2" in x and "0" in x for x in lines)
    assert any("false_positive" in x and "(none)" in x for x in lines)

    r = cli(
        "disable", "grooming", "--source", "NCMEC", "--reason", "source withdrew", "--by", "kim"
    )
    assert r.exit_code == 0, r.output
    assert "2 indicator(s) of grooming disabled; 0 already disabled" in r.stdout

    r = cli("list", "grooming", "--disabled")
    assert r.exit_code == 0
    assert "2 of 2 entries" in r.stdout and h("sha256", 1) in r.stdout
    assert "by kim: source withdrew" in r.stdout and h("sha256", 2) not in r.stdout
    r = cli("list", "grooming", "--limit", "1")
    assert "1 of 3 entries" in r.stdout and "showing 1 of 3; use --limit" in r.stdout

    out = tmp_path / "out.jsonl"
    r = cli("export", "grooming", str(out))
    assert r.exit_code == 0 and "1 indicator(s) of grooming written to" in r.stdout
    r = cli("export", "grooming", str(out), "--include-disabled", "--format", "csv")
    assert r.exit_code == 0 and "3 indicator(s)" in r.stdout
    assert out.read_text().startswith("kind,value,source")

    r = cli("enable", "grooming", "--value", h("md5", 1), "--reason", "ok", "--by", "kim")
    assert r.exit_code == 0 and "1 indicator(s) of grooming enabled" in r.stdout
    r = cli("remove", "grooming", "--id", str(e.id), "--reason", "typo", "--by", "kim")
    assert r.exit_code == 0 and "1 indicator(s) removed from grooming" in r.stdout
    assert len(entries(s, "grooming")) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["disable", "csam", "--id", "1", "--reason", "r", "--by", "b"], "unknown bank 'csam'"),
        (["disable", "grooming", "--reason", "r", "--by", "b"], "give a value, a source or an id"),
        (
            ["remove", "grooming", "--source", "x", "--reason", "r", "--by", "b"],
            "no entry of grooming matches --source x; nothing removed",
        ),
        (
            ["enable", "grooming", "--value", "xyz", "--reason", "r", "--by", "b"],
            "'xyz' is not a valid sha256 or md5 or pdq hash",
        ),
        (
            ["import", "--bank", "grooming", "/no/such/file.jsonl"],
            "cannot read /no/such/file.jsonl",
        ),
        (["export", "grooming", "x.jsonl", "--format", "xml"], "unknown format 'xml'"),
        (["list", "grooming", "--kind", "sha1"], "unknown kind 'sha1'"),
        (["list", "grooming", "--limit", "0"], "the limit must be at least 1"),
    ],
)
def test_cli_bad_input_is_one_message_on_stderr_and_exit_2(
    cli,
    args: list[str],  # type: ignore[no-untyped-def]
    message: str,
) -> None:
    r = cli(*args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert "Traceback" not in r.output and r.stdout == ""


def test_cli_bad_rows_name_the_lines(
    cli,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    s: Settings,
) -> None:
    f = write_jsonl(tmp_path / "bad.jsonl", [{"md5": h("md5", 1)}, {"sha256": "nothex"}])
    r = cli("import", "--bank", "known_material", str(f))
    assert r.exit_code == 2
    assert "nothing imported; line 2: sha256: sha256 must be 64 hexadecimal" in r.stderr
    assert entries(s, "known_material") == []


def test_cli_on_a_database_without_the_schema_says_so(tmp_path: Path) -> None:
    env = {
        "CENTRE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "CENTRE_HOME": str(tmp_path),
    }
    r = CliRunner().invoke(app, ["indicators", "list"], env=env)
    assert r.exit_code == 1
    assert "database error" in r.stderr and "centre db upgrade" in r.stderr
    assert "Traceback" not in r.output


def test_cli_help_is_plain_prose() -> None:
    r = CliRunner().invoke(app, ["indicators", "--help"])
    for command in ("import", "export", "disable", "enable", "remove", "list"):
        assert command in r.stdout
    r = CliRunner().invoke(app, ["indicators", "import", "--help"])
    assert "nothing is loaded" in " ".join(r.stdout.split())
