"""Exporting a bank: its entries with every provenance field, as JSON lines or CSV,
written to a side file and moved into place so that the file appears whole or not at all.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import orjson
from sqlalchemy import select

from centre.settings import Settings
from triage.bank_common import _T, FIELDS, BankError, _engine, _entry, check_bank, file_format

# ---------------------------------------------------------------------------------- export


def export_file(
    settings: Settings,
    bank: str,
    path: Path,
    *,
    fmt: str | None = None,
    include_disabled: bool = False,
) -> int:
    """Write a bank's entries with their provenance; returns how many. Disabled entries only
    with include_disabled. The file appears whole or not at all."""
    check_bank(bank)
    fmt = file_format(path, fmt)
    conds = [_T.c.bank == bank] + ([] if include_disabled else [_T.c.enabled.is_(True)])
    part = path.with_name(f".{path.name}.part")
    n = 0
    engine = _engine(settings)
    try:
        with engine.connect() as conn:
            result = conn.execution_options(yield_per=10_000).execute(
                select(_T).where(*conds).order_by(_T.c.id)
            )
            if fmt == "csv":
                with open(part, "w", encoding="utf-8", newline="") as ft:
                    w = csv.writer(ft)
                    w.writerow(FIELDS)
                    for row in result:
                        rec = _entry(row).record()
                        rec["enabled"] = "true" if rec["enabled"] else "false"
                        w.writerow(["" if rec[k] is None else rec[k] for k in FIELDS])
                        n += 1
            else:
                with open(part, "wb") as fb:
                    for row in result:
                        fb.write(orjson.dumps(_entry(row).record()) + b"\n")
                        n += 1
        os.replace(part, path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise BankError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        engine.dispose()
    return n
