"""Imports point one way: import-linter (`make lint`) checks the static imports; this checks
the dynamic ones, which it cannot see: no module of the contracts or the kernel names a
service or the tooling in an import by string."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
LOWER_LAYERS = ("contracts", "ragbus")
UPPER_LAYERS = ("services", "ragbus_ops", "deploy")
DYNAMIC_IMPORTS = {"import_module", "__import__", "find_spec", "import_string", "run_module"}


def imported_by_string(tree: ast.AST) -> list[str]:
    """The literal text of the first argument of every dynamic import call."""
    names = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called not in DYNAMIC_IMPORTS:
            continue
        first = node.args[0]
        parts = first.values if isinstance(first, ast.JoinedStr) else [first]
        names.append("".join(p.value for p in parts if isinstance(p, ast.Constant)))
    return names


def test_no_lower_layer_imports_an_upper_one_by_string():
    offenders = [
        f"{path.relative_to(ROOT)}: {name!r}"
        for layer in LOWER_LAYERS
        for path in sorted((ROOT / layer).rglob("*.py"))
        for name in imported_by_string(ast.parse(path.read_text()))
        if name.split(".")[0] in UPPER_LAYERS
    ]
    assert offenders == []


def test_the_check_sees_an_import_by_f_string():
    source = 'import importlib\nstage = "x"\nimportlib.import_module(f"services.{stage}.main")\n'
    assert imported_by_string(ast.parse(source)) == ["services..main"]
