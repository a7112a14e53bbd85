"""Recipes: the one way a YAML experiment is read, validated and expanded (:func:`load_recipe`).

* :mod:`~hf_ptjf.recipe.reading`: the YAML loader (``3e-4`` is a float) and ``dotted.key=value`` overrides;
* :mod:`~hf_ptjf.recipe.methods`: ``method:`` shorthands -> stages (ptjf, scalarization, restart, transfer);
* :mod:`~hf_ptjf.recipe.training`: the pass-through training arguments (defaults, allowed names, value checks) and
  the one mapping of a stage's optimizer and LR schedule to the Trainer's arguments;
* :mod:`~hf_ptjf.recipe.config`: :class:`RecipeConfig` and its sections (tasks as ``TaskSpec``, the model as
  ``ModelArguments``: parsed once, here), stage budgets and rates.

Runner, sweep, ``hf-ptjf-inspect`` and ``hf-ptjf-plan`` all go through :func:`load_recipe` (or, for a recipe
dict, :func:`parse_recipe`). Only the check of training-argument names imports transformers.
"""

from ..mixture import Mixture, MixtureSpec
from .config import (
    DataSpec,
    EvalSpec,
    HubSpec,
    RecipeConfig,
    StageSpec,
    TokenizerSpec,
    load_recipe,
    parse_recipe,
    with_added_defaults,
)
from .errors import RecipeError
from .methods import METHODS, expand_method
from .reading import apply_overrides, read_recipe, read_yaml
from .training import LR_SCHEDULERS, OPTIMIZERS, TRAINING_DEFAULTS

__all__ = [
    "LR_SCHEDULERS",
    "METHODS",
    "OPTIMIZERS",
    "TRAINING_DEFAULTS",
    "DataSpec",
    "EvalSpec",
    "HubSpec",
    "Mixture",
    "MixtureSpec",
    "RecipeConfig",
    "RecipeError",
    "StageSpec",
    "TokenizerSpec",
    "apply_overrides",
    "expand_method",
    "load_recipe",
    "with_added_defaults",
    "parse_recipe",
    "read_recipe",
    "read_yaml",
]
