"""The layout's rules, read from the source: who may import whom, and how long a module may grow."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "isoscribe"
MAX_MODULE_LINES = 400
CORE = ("isolation", "pipeline", "stages", "summary", "distributed")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    return _imported_by(path.read_text(), package)


def _imported_by(source: str, package: str) -> set[str]:
    """Every isoscribe module ``source`` (a module of ``package``) imports, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
    return {name for name in names if name == "isoscribe" or name.startswith("isoscribe.")}


def _within(name: str, area: str) -> bool:
    return name == f"isoscribe.{area}" or name.startswith(f"isoscribe.{area}.")


def _area(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _violations(areas: tuple[str, ...], forbidden) -> list[str]:
    return [
        f"{_name(path)} imports {name}"
        for path in _modules()
        if _area(path) in areas
        for name in sorted(_imported(path))
        if forbidden(name)
    ]


def test_the_import_reader_sees_relative_and_nested_imports():
    source = "import os\nfrom ..service import app\nfrom . import vad\n\ndef f():\n    import isoscribe.cli\n"
    assert _imported_by(source, "isoscribe.stages") == {"isoscribe.service", "isoscribe.stages", "isoscribe.cli"}


def test_isolation_imports_nothing_else_of_isoscribe():
    assert _violations(("isolation",), lambda name: not _within(name, "isolation")) == []


def test_stages_import_no_service_cli_or_distributed():
    forbidden = ("service", "cli", "distributed")
    assert _violations(("stages",), lambda name: any(_within(name, area) for area in forbidden)) == []


def test_the_core_imports_no_service():
    assert _violations(CORE, lambda name: _within(name, "service")) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_is_longer_than_the_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines"
