"""Write docs/schemas/complaint-v1.json from complaints/model.py; with `--check`, exit 1 when
the file is stale.

    python -m complaints.schema_gen [--check]
"""

from __future__ import annotations

from centre import schema_files
from complaints.model import complaint_json_schema

SCHEMA_FILE = schema_files.SCHEMAS_DIR / "complaint-v1.json"


def render() -> str:
    return schema_files.render(complaint_json_schema())


def main(argv: list[str] | None = None) -> int:
    return schema_files.main(
        "complaints.schema_gen", SCHEMA_FILE.name, complaint_json_schema, __doc__, argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
