"""The isolation runtime's boundary: it imports nothing else of isoscribe."""

from __future__ import annotations

import ast
from pathlib import Path

import isoscribe.isolation

PACKAGE = Path(isoscribe.isolation.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_isolation_imports_nothing_else_of_isoscribe() -> None:
    outside = {
        f"{path.name}: {module}"
        for path in PACKAGE.glob("*.py")
        for module in _imported_modules(path)
        if module.split(".")[0] == "isoscribe" and not module.startswith("isoscribe.isolation")
    }
    assert outside == set()
