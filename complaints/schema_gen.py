"""Write docs/schemas/complaint-v1.json from complaints/model.py; with `--check`, exit 1 when
the file is stale.

    python -m complaints.schema_gen [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from complaints.model import complaint_json_schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "complaint-v1.json"


def render() -> str:
    return json.dumps(complaint_json_schema(), indent=2, sort_keys=True,
                      ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m complaints.schema_gen",
                                     description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when the file is missing or not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not SCHEMA_FILE.is_file() or SCHEMA_FILE.read_text(encoding="utf-8") != text:
            print(f"{SCHEMA_FILE} is not current: run python -m complaints.schema_gen",
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
