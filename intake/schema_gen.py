"""Write docs/schemas/report-v1.json from intake/model.py; with `--check`, exit 1 when stale.

    python -m intake.schema_gen [--check]

The file is what companies code against, so CI runs `--check` and the models stay the source.
"""

from __future__ import annotations

from centre import schema_files
from intake.model import report_json_schema

SCHEMA_FILE = schema_files.SCHEMAS_DIR / "report-v1.json"


def render() -> str:
    return schema_files.render(report_json_schema())


def main(argv: list[str] | None = None) -> int:
    return schema_files.main(
        "intake.schema_gen", SCHEMA_FILE.name, report_json_schema, __doc__, argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
