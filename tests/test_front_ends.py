"""The two front ends, the command line (geospade.cli) and the ArcGIS toolbox
(geospade.arcgis), each build on the library alone: neither imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "geospade"


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions (absolute names)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def front_end_files(name: str) -> list[Path]:
    folder = PACKAGE / name
    return sorted([*folder.glob("*.py"), *folder.glob("*.pyt")])


@pytest.mark.parametrize("front_end, other", [("cli", "arcgis"), ("arcgis", "cli")])
def test_front_ends_do_not_import_each_other(front_end, other):
    files = front_end_files(front_end)
    assert len(files) >= 4
    forbidden = f"geospade.{other}"
    offenders = {path.name: sorted(m for m in imported_modules(path, f"geospade.{front_end}")
                                   if m == forbidden or m.startswith(forbidden + "."))
                 for path in files}
    assert not {name: found for name, found in offenders.items() if found}


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from geospade.cli.train import resolve_config\n"
                      "    from . import tools\n")
    found = imported_modules(module, "geospade.arcgis")
    assert "geospade.cli.train" in found and "geospade.arcgis.tools" in found
