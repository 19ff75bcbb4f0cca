"""Writes docs/schemas/report-v1.json from intake/model.py; `--check` fails when it is stale."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from intake.model import report_json_schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "report-v1.json"


def render() -> str:
    return json.dumps(report_json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not SCHEMA_FILE.is_file() or SCHEMA_FILE.read_text() != text:
            print(f"{SCHEMA_FILE} is not current: run python -m intake.schema_gen", file=sys.stderr)
            return 1
        return 0
    SCHEMA_FILE.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_FILE.write_text(text)
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
