"""Reading recipe files: the one YAML loader and the ``dotted.key=value`` overrides (torch-free).

Every tool (runner, sweep, inspect, plan) reads YAML through :func:`read_yaml`, so ``3e-4`` is a float
everywhere (PyYAML's YAML 1.1 resolver would make it a string) and a broken file gives one clear line.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..checks import did_you_mean
from .errors import RecipeError

__all__ = ["apply_overrides", "parse_value", "read_recipe", "read_yaml"]


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``3e-4`` / ``1E5`` as floats (YAML 1.1 wants a dot in them)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$|^[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?$"
               r"|^[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def read_yaml(path: str | Path, what: str = "recipe") -> dict[str, Any]:
    """A YAML file holding a mapping (``{}`` when empty), read with the recipe loader."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{what} file not found: {path}")
    text = path.read_text()
    try:
        raw = yaml.load(text, Loader=_Loader) or {}  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise RecipeError(_yaml_problem(path, text, e)) from None
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{path} must hold a YAML mapping at the top level.")
    return dict(raw)


def read_recipe(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """A recipe file as a dict with ``key=value`` overrides applied: the light first half of
    :func:`hf_ptjf.recipe.load_recipe` (no validation, no defaults), for tools that need one section or the raw
    mapping (``hf-ptjf-plan`` reads ``model:``, a sweep edits its base recipe before validating each trial)."""
    return apply_overrides(read_yaml(path), overrides or [])


def _yaml_problem(path: Path, text: str, e: yaml.YAMLError) -> str:
    """One line: where the YAML breaks, what is wrong, and the usual fix."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    line = text.splitlines()[mark.line] if mark is not None and mark.line < len(text.splitlines()) else ""
    hint = ("indent with spaces, not tabs" if "\t" in line or "tab" in str(problem)
            else "check the indentation and that every `key: value` has a space after the colon")
    return f"{path}: not valid YAML at {where}: {problem}; {hint}."


def parse_value(text: str) -> Any:
    """An override's value, parsed as YAML (numbers like ``3e-4`` are floats)."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise RecipeError(f"override value `{text}` is not valid YAML ({getattr(e, 'problem', e)}); quote it or "
                          "write a list as [a, b] and a mapping as {k: v}.") from None


def apply_overrides(raw: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML); list items by index or stage name."""
    raw = copy.deepcopy(dict(raw))
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override `{item}` must look like key=value (e.g. learning_rate=1e-3).")
        path, value = item.split("=", 1)
        keys = path.split(".")
        node: Any = raw
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                idx = _list_index(node, key, path)
                if last:
                    node[idx] = parse_value(value)
                else:
                    node = node[idx]
            else:
                if last:
                    node[key] = parse_value(value)
                else:
                    node = node.setdefault(key, {})
    return raw


def _list_index(items: list[Any], key: str, path: str) -> int:
    names = [item.get("name") for item in items if isinstance(item, Mapping) and item.get("name")]
    if key.lstrip("-").isdigit():
        if not -len(items) <= int(key) < len(items):
            raise RecipeError(f"override `{path}`: there is no item {key}; the list has {len(items)} "
                              f"(0 to {len(items) - 1}{', or by name: ' + ', '.join(names) if names else ''}).")
        return int(key)
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and item.get("name") == key:
            return i
    raise RecipeError(f"override `{path}`: no list item named `{key}`.{did_you_mean(key, names)} "
                      f"Names: {', '.join(names) or 'none'}.")
