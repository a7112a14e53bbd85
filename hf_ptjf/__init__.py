"""hf_ptjf: pre-training joint fine-tuning (PTJF) for imbalanced multi-task training with HF Trainer.

Layout: the core a user imports (``mixing``: rates; ``sampler``: the task stream; ``mixture_stream``: streamed
mixtures; ``trainer``: MixtureTrainer;
``optim``, ``modeling``), ``data/`` (corpora, tokenizer, collators), ``recipe/`` (YAML -> stages), ``runner/``
(the stage loop and its records, handoff, evaluation, results), ``hub/`` (client + offline server),
``analysis/`` (sweep, pareto, plots, inspect, plan) and ``metrics/`` (sacreBLEU, offline).
"""

from importlib import import_module
from typing import Any

# (`hf_ptjf.mixing.plan` is not re-exported: `hf_ptjf.analysis.plan` is the memory planner)
from .mixing import RATE_STRATEGIES, MixtureSpec, cap_epochs, mixing_rates, proportional, static, temperature, unimax

__version__ = "0.1.0"

# heavy (torch / transformers) symbols load on first use, so `import hf_ptjf` stays cheap
_LAZY = {
    "TemperatureMixtureSampler": "sampler",
    "TaskSequence": "sampler",
    "MixtureStream": "mixture_stream",
    "MixtureTrainer": "trainer",
    "MixtureTrainingArguments": "trainer",
    "load_recipe": "recipe",
    "run_recipe": "runner",
}

__all__ = [
    "RATE_STRATEGIES",
    "MixtureSpec",
    "cap_epochs",
    "mixing_rates",
    "proportional",
    "static",
    "temperature",
    "unimax",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_ptjf' has no attribute {name!r}")
