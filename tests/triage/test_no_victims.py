"""Triage knows nothing of victims: no module of triage/ imports victims/, by any kind of
import. The victims worker matches new reports itself, as a consumer of reports.triaged."""

from __future__ import annotations

import ast
from pathlib import Path

TRIAGE = Path(__file__).resolve().parents[2] / "triage"


def _victims(name: str | None) -> bool:
    return bool(name) and (name == "victims" or name.startswith(("victims.", "victims:")))


def imports_of_victims(path: Path) -> list[str]:
    """Where `path` imports victims: `import victims…`, `from victims… import`, a relative
    import reaching it from outside the package, or a module named to import_module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if _victims(a.name)]
        elif (
            isinstance(node, ast.ImportFrom)
            and (node.level in (0, 2))
            and _victims(node.module or (node.names[0].name if node.level == 2 else None))
        ):
            found.append(f"{node.lineno}: from {'.' * node.level}{node.module or ''} import …")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if (
                name in ("import_module", "__import__")
                and isinstance(node.args[0].value, str)
                and _victims(node.args[0].value)
            ):
                found.append(f"{node.lineno}: {name}({node.args[0].value!r})")
    return found


def test_triage_imports_nothing_from_victims() -> None:
    files = sorted(TRIAGE.rglob("*.py"))
    assert len(files) > 5 and TRIAGE / "stage.py" in files
    bad = {str(p.relative_to(TRIAGE.parent)): imports_of_victims(p) for p in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import victims.bank\nfrom victims.flow import live_matches\n"
        "from .. import victims\nfrom ..victims import flow\n"
        "import importlib\nimportlib.import_module('victims.flow')\n"
        "from triage.rules import media_items\nimport victimsx\n"
    )
    assert [x.split(":")[0] for x in imports_of_victims(probe)] == ["1", "2", "3", "4", "6"]
