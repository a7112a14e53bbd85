"""The architecture, checked: the package's import graph (every import, also those inside functions) has no cycle
and no upward import in the declared layer order; imports inside functions are only of heavy dependencies that a
light module must not pay for; no module imports another's private names; nothing in the package depends on test
code; the stage loop stays short; every tool reads YAML through the recipe reader.

Current violations in files that are being moved or rewritten are listed by name below (``KNOWN_*``): each test
fails on a violation that is not listed AND on a listed one that is gone, so a list only shrinks. Run this file
with ``-s`` to print the graph of one module: ``LAYOUT_AROUND=hf_ptjf.runner.records pytest -s tests/test_layout.py``.
"""

from __future__ import annotations

import ast
import fnmatch
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_ptjf"

# ------------------------------------------------------------------ the layer order, lowest first
# A module may import modules of its own layer or of lower ones. A module's layer is that of the longest pattern
# matching its dotted name (so `hf_ptjf.runner.cli` is in `cli`, the rest of the runner in `runner`). To place a
# new module or package, add its pattern to a layer; an unplaced module fails test_every_module_has_a_layer.
LAYERS: list[tuple[str, list[str]]] = [
    # no hf_ptjf imports beyond this layer: errors, shared checks and files, counts, a run's history, figures
    ("foundation", ["hf_ptjf.errors", "hf_ptjf.checks", "hf_ptjf.hints", "hf_ptjf.files", "hf_ptjf.seen",
                    "hf_ptjf.history", "hf_ptjf.figures", "hf_ptjf.metrics", "hf_ptjf.metrics.*"]),
    # the method's maths: mixing rates, the task sequence, optimizers and LR schedules
    ("mixture", ["hf_ptjf.optim", "hf_ptjf.mixture", "hf_ptjf.mixture.*"]),
    # what is trained on and with what: data, the recipe (config parsed once), models, the Hub
    ("data", ["hf_ptjf.data", "hf_ptjf.data.*", "hf_ptjf.recipe", "hf_ptjf.recipe.*",
              "hf_ptjf.modeling", "hf_ptjf.model_spec", "hf_ptjf.shards", "hf_ptjf.written", "hf_ptjf.hub", "hf_ptjf.hub.*",
              # the training arguments are a config dataclass (trl style): the recipe builds them
              "hf_ptjf.train.arguments"]),
    ("trainer", ["hf_ptjf.train", "hf_ptjf.train.*"]),
    # a recipe run: stages, handoff, evaluation, the run directory and its results
    ("runner", ["hf_ptjf.runner", "hf_ptjf.runner.*"]),
    # what reads finished runs (reports, comparisons, fronts) and what runs many (sweeps, plans)
    ("analysis", ["hf_ptjf.analysis", "hf_ptjf.analysis.*", "hf_ptjf.sweep", "hf_ptjf.sweep.*", "hf_ptjf.memory",
                  "hf_ptjf.memory.*"]),
    # the command lines, and the package's public face (nothing inside the package imports it)
    ("cli", ["hf_ptjf.cli", "hf_ptjf.cli.*", "hf_ptjf.runner.cli", "hf_ptjf.runner.__main__", "hf_ptjf.*.__main__",
             "hf_ptjf.__main__",
             # deprecated aliases of moved modules: only users import them (an internal import of one is upward)
             "hf_ptjf.mixing", "hf_ptjf.sampler", "hf_ptjf.mixture_stream", "hf_ptjf.trainer", "hf_ptjf.inspect",
             "hf_ptjf.plan", "hf_ptjf.pareto", "hf_ptjf.analysis.sweep", "hf_ptjf.analysis.plan",
             "hf_ptjf"]),
]

# ------------------------------------------------------------------ imports allowed inside functions
# Optional dependencies, imported where they are used (a run without LoRA, DeepSpeed or plots never needs them),
# and the package modules that import one of them at their top.
OPTIONAL = ("peft", "deepspeed", "matplotlib", "hf_ptjf.figures", "hf_ptjf.runner.curves", "hf_ptjf.analysis.plots")
# Heavy to import (seconds: torch, transformers, accelerate, datasets and what pulls them in; each pulls in the
# others): inside a function only in a module that is itself light, i.e. whose top-level imports (and its
# packages' __init__) import none of them. Which package modules are heavy is read from the graph (heavy_at_import).
# Also allowed: a package's module-level `__getattr__` loading an attribute on first use (PEP 562).
HEAVY = ("torch", "transformers", "accelerate", "datasets", "pyarrow", "evaluate")

# ------------------------------------------------------------------ known violations (files being moved or rewritten)
# "importer -> imported" (modules); owners in brackets. Remove an entry when its import is gone.
KNOWN_UPWARD: set[str] = set()
# "importer: imported" for function-body imports that are neither optional nor heavy in a light module: move them
# to the top, or (a light module) make the module light first, or say in OPTIONAL why one is optional.
KNOWN_BODY_IMPORTS: set[str] = set()
# "importer: module.name" for private names imported from another module: make the name public (it is shared) or
# move the code that needs it.
KNOWN_PRIVATE: set[str] = set()


# ------------------------------------------------------------------ reading the graph
@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # the module imported: a package module when it is one, else what the statement names
    name: str | None  # `from target import name` (None for `import target`)
    line: int
    function: str | None  # the function or class it is inside (dotted, e.g. "RunDirectory.write_plots"), None: top

    @property
    def in_function(self) -> bool:
        return self.function is not None

    def __str__(self) -> str:
        return f"{self.importer}:{self.line}: {self.target}" + (f".{self.name}" if self.name else "")


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=None)
def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    return {_dotted(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _absolute(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = package_modules()[importer].name == "__init__.py"
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


@lru_cache(maxsize=None)
def imports_of(module: str) -> tuple[Import, ...]:
    """Every import statement of ``module``, at its top (also under ``if``/``try``) or inside a function or class;
    ``from pkg import sub`` of a submodule points at the submodule."""
    modules = package_modules()
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, None, child.lineno, function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, child)
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append(Import(module, sub, None, child.lineno, function) if sub in modules
                                 else Import(module, base, a.name, child.lineno, function))
            inner = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = f"{function}.{child.name}" if function else child.name
            elif isinstance(child, ast.Lambda):
                inner = f"{function}.<lambda>" if function else "<lambda>"
            visit(child, inner)

    visit(ast.parse(modules[module].read_text()), None)
    return tuple(i for i in found if i.target != "__future__")


def _internal(target: str) -> str | None:
    """The package module an import of ``target`` runs (``a.b.c`` not a module: its nearest module parent)."""
    modules = package_modules()
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def internal_edges() -> dict[str, set[str]]:
    """importer -> the package modules it imports (anywhere in its code; a module's own package not counted)."""
    edges: dict[str, set[str]] = {m: set() for m in package_modules()}
    for module in package_modules():
        for imp in imports_of(module):
            target = _internal(imp.target)
            if target is not None and target != module:
                edges[module].add(target)
    return edges


def _parents(module: str) -> list[str]:
    """The packages whose ``__init__`` runs before ``module`` (``hf_ptjf``, ``hf_ptjf.runner``, ...)."""
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


@lru_cache(maxsize=None)
def heavy_at_import(module: str) -> frozenset[str]:
    """The HEAVY packages that importing ``module`` imports: its top-level imports, followed through the package's
    modules (and the ``__init__`` of every package on the way)."""
    heavy: set[str] = set()
    todo, seen = [*_parents(module), module], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for imp in imports_of(current):
            if imp.in_function:
                continue
            if imp.target.split(".")[0] in HEAVY:
                heavy.add(imp.target.split(".")[0])
            target = _internal(imp.target)
            if target is not None:
                todo += [*_parents(target), target]
    return frozenset(heavy)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (pattern length, layer)
    for rank, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if fnmatch.fnmatchcase(module, pattern) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), rank)
    return None if best is None else best[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def _check_known(found: dict[str, str], known: set[str], what: str) -> None:
    """``found``: violation key -> where it is. Fails on an unlisted violation and on a listed one that is gone."""
    new = {k: v for k, v in found.items() if k not in known}
    gone = sorted(known - set(found))
    assert not new, f"{what}:\n" + "\n".join(f"  {k}   ({v})" for k, v in sorted(new.items()))
    assert not gone, f"{what}: fixed, remove from the known list: {gone}"


# ------------------------------------------------------------------ the tests
def test_the_graph_reads_function_body_imports_and_submodules():
    """The reader itself: records.py imports the run's curves inside a function, the cycle this test guards against
    (records -> analysis.plots -> runner.results -> records) is gone, and a module has its package's heavy imports."""
    body = [i for i in imports_of("hf_ptjf.runner.records") if i.in_function]
    assert any(i.target == "hf_ptjf.runner.curves" and i.name == "plot_run" for i in body)
    assert "hf_ptjf.hub" in internal_edges()["hf_ptjf.runner.preflight"]  # `from .. import hub`: the subpackage
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert heavy_at_import("hf_ptjf.runner.records") >= {"torch", "transformers"}  # hf_ptjf/runner/__init__ runs
    assert heavy_at_import("hf_ptjf.mixing") == frozenset()
    if os.environ.get("LAYOUT_AROUND"):
        around = os.environ["LAYOUT_AROUND"]
        print(f"\n{around} imports: {sorted(internal_edges()[around])}")
        print(f"imported by: {sorted(m for m, out in internal_edges().items() if around in out)}")


def test_what_the_graph_calls_light_imports_no_heavy_package():
    """The static reading agrees with a real import, for a light module and a heavy one (fresh interpreters)."""
    import subprocess
    import sys

    probe = "import sys, {0}; print(sorted(h for h in {1!r} if h in sys.modules))"
    for module in ("hf_ptjf.recipe", "hf_ptjf.sampler"):
        out = subprocess.run([sys.executable, "-c", probe.format(module, HEAVY)], capture_output=True, text=True,
                             check=True, cwd=PACKAGE.parent).stdout
        assert bool(ast.literal_eval(out)) == bool(heavy_at_import(module)), (module, out, heavy_at_import(module))
    assert not heavy_at_import("hf_ptjf.recipe") and heavy_at_import("hf_ptjf.sampler") == {"torch"}


def test_every_module_has_a_layer():
    unplaced = [m for m in package_modules() if layer_of(m) is None]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_no_import_cycle_between_modules():
    found = cycles(internal_edges())
    assert not found, "import cycles (every import counted, also inside functions):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_no_module_imports_a_higher_layer():
    found = {}
    for module, targets in internal_edges().items():
        for target in targets:
            if layer_of(target) is not None and layer_of(module) is not None and layer_of(target) > layer_of(module):
                where = next(i for i in imports_of(module) if _internal(i.target) == target)
                found[f"{module} -> {target}"] = (f"line {where.line}: layer {LAYERS[layer_of(module)][0]} imports "
                                                  f"layer {LAYERS[layer_of(target)][0]}")
    _check_known(found, KNOWN_UPWARD, "upward imports")


def _body_import_allowed(imp: Import) -> bool:
    internal = _internal(imp.target)
    target = imp.target if internal is None else internal
    if imp.function == "__getattr__" or any(target == o or target.startswith(f"{o}.") for o in OPTIONAL):
        return True
    heavy = {target.split(".")[0]} & set(HEAVY) if internal is None else heavy_at_import(target)
    return bool(heavy) and not heavy_at_import(imp.importer)


def test_function_body_imports_are_only_of_heavy_optional_dependencies():
    found = {}
    for module in package_modules():
        for imp in imports_of(module):
            if imp.in_function and not _body_import_allowed(imp):
                found.setdefault(f"{module}: {imp.target}", f"line {imp.line}")
    _check_known(found, KNOWN_BODY_IMPORTS, "imports inside functions of what is neither optional nor heavy for a "
                                            "light module (move them to the top)")


def test_no_module_imports_a_private_name_of_another():
    found = {}
    for module in package_modules():
        for imp in imports_of(module):
            private = [p for p in (imp.name or imp.target).split(".") if p.startswith("_") and not p.startswith("__")]
            if private and _internal(imp.target) not in (None, module):
                found[f"{module}: {imp.target}" + (f".{imp.name}" if imp.name else "")] = f"line {imp.line}"
    _check_known(found, KNOWN_PRIVATE, "private names imported from another module (make them public or move them)")


def test_no_module_imports_test_code():
    for module in package_modules():
        bad = [str(i) for i in imports_of(module) if i.target.split(".")[0] == "tests"
               or {i.target.split(".")[-1], i.name} & {"testing", "tests"}]
        assert not bad, bad
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
    for path in package_modules().values():
        text = path.read_text()
        if path not in allowed:
            assert "yaml.safe_load" not in text and "yaml.load(" not in text, path
    plan = (PACKAGE / "memory.py").read_text()
    assert plan.count("yaml.safe_load") == 1 and "def read_accelerate_config" in plan
