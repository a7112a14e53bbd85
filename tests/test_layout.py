"""The architecture, checked: nothing in the package depends on test code, the stage loop stays short,
and every tool reads YAML through the recipe reader."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_ptjf"


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def test_no_module_imports_test_code():
    for path in _modules():
        bad = [n for n in _imports(path) if n.split(".")[-1] in ("testing", "tests") or n.startswith("tests")]
        assert not bad, (path, bad)
    assert not (PACKAGE / "testing").exists()


def test_longest_function_of_the_runner_is_under_60_lines():
    for path in (PACKAGE / "runner").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 < 60, (path.name, node.name)


def test_yaml_is_read_by_the_recipe_reader_only():
    """`yaml.safe_load` reads `3e-4` as a string; recipes, sweeps and overrides go through hf_ptjf.recipe.reading
    (accelerate's own config files are read as accelerate reads them)."""
    allowed = {PACKAGE / "recipe" / "reading.py", PACKAGE / "memory.py"}
    for path in _modules():
        text = path.read_text()
        if path not in allowed:
            assert "yaml.safe_load" not in text and "yaml.load(" not in text, path
    plan = (PACKAGE / "memory.py").read_text()
    assert plan.count("yaml.safe_load") == 1 and "def read_accelerate_config" in plan
