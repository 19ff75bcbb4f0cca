"""Write docs/schemas/report-v1.json from intake/model.py; with `--check`, exit 1 when stale.

    python -m intake.schema_gen [--check]

The file is what companies code against, so CI runs `--check` and the models stay the source.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from intake.model import report_json_schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "report-v1.json"


def render() -> str:
    """The file's exact text: stable key order and a trailing newline keep diffs meaningful."""
    return json.dumps(report_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m intake.schema_gen", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when the file is missing or not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not SCHEMA_FILE.is_file() or SCHEMA_FILE.read_text(encoding="utf-8") != text:
            print(f"{SCHEMA_FILE} is not current: run python -m intake.schema_gen",
                  file=sys.stderr)
            return 1
        print(f"{SCHEMA_FILE} is current")
        return 0
    SCHEMA_FILE.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
