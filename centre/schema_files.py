"""The JSON Schema files in docs/schemas that outsiders code against, generated from the
pydantic models: written by `python -m <package>.schema_gen`, checked by `--check` (CI), so the
models stay the single source."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def render(schema: dict[str, Any]) -> str:
    """The file's exact text: stable key order and a trailing newline keep diffs meaningful."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(
    module: str,
    file_name: str,
    schema: Callable[[], dict[str, Any]],
    doc: str | None,
    argv: list[str] | None = None,
) -> int:
    """Write the schema file; with `--check`, exit 1 when it is missing or stale."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc)
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 when the file is missing or not current",
    )
    args = parser.parse_args(argv)
    path, text = SCHEMAS_DIR / file_name, render(schema())
    if args.check:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(f"{path} is not current: run python -m {module}", file=sys.stderr)
            return 1
        print(f"{path} is current")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0
