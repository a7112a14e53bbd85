"""hf_ptjf: pre-training joint fine-tuning (PTJF) for imbalanced multi-task training with HF Trainer.

Layout: the core a user imports (``mixture/``: strategies, the Mixture, the task sequence, sampler and stream;
``train/``: MixtureTrainer, its arguments, data and meter; ``optim``, ``modeling``), ``data/`` (corpora, tokenizer,
collators), ``recipe/`` (YAML -> stages), ``runner/``
(the stage loop and its records, handoff, evaluation, results), ``hub/`` (client + offline server),
``analysis/`` (sweep, pareto, plots, inspect, plan) and ``metrics/`` (sacreBLEU, offline).
"""

from importlib import import_module
from typing import Any

# (`hf_ptjf.mixture.plan` is not re-exported: it is what a budget means per task, not the memory planner)
from .mixture import (ODM, RATE_STRATEGIES, Mixture, MixtureSpec, cap_epochs, mixing_rates, proportional,
                      register_online_strategy, register_strategy, static, temperature, unimax)

__version__ = "0.1.0"

# heavy (torch / transformers) symbols load on first use, so `import hf_ptjf` stays cheap
_LAZY = {
    "TemperatureMixtureSampler": "mixture.sampler",
    "TaskSequence": "mixture.sequence",
    "MixtureStream": "mixture.stream",
    "MixtureTrainer": "train",
    "MixtureTrainingArguments": "train",
    "load_recipe": "recipe",
    "run_recipe": "runner",
}

__all__ = [
    "ODM",
    "RATE_STRATEGIES",
    "Mixture",
    "MixtureSpec",
    "cap_epochs",
    "mixing_rates",
    "proportional",
    "register_online_strategy",
    "register_strategy",
    "static",
    "temperature",
    "unimax",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_ptjf' has no attribute {name!r}")
