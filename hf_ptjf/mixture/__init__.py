"""The mixture: from a stage's YAML section to the task of every position the model trains on.

* :mod:`~hf_ptjf.mixture.strategies`: rate strategies, pure functions registered by name (``register_strategy``);
* :mod:`~hf_ptjf.mixture.mixture`: :class:`Mixture`, the one object a recipe, the training arguments and explicit
  rates become, and the only place rates are computed;
* :mod:`~hf_ptjf.mixture.sequence`: the counter-based task sequence (same on every rank, O(1) resume);
* :mod:`~hf_ptjf.mixture.sampler`: :class:`TemperatureMixtureSampler`, indices of map-style tasks;
* :mod:`~hf_ptjf.mixture.stream`: :class:`MixtureStream`, batches of streamed tasks;
* :mod:`~hf_ptjf.mixture.plan`: what a budget means per task (expected examples and passes).
"""

from .mixture import SIZE_UNITS, Mixture, MixtureSpec
from .plan import TaskPlan, plan, rates_by_name
from .strategies import (RATE_STRATEGIES, STRATEGIES, Strategy, cap_epochs, mixing_rates, normalise, proportional,
                         register_strategy, static, strategy, temperature, unimax)

__all__ = ["RATE_STRATEGIES", "SIZE_UNITS", "STRATEGIES", "Mixture", "MixtureSpec", "Strategy", "TaskPlan",
           "cap_epochs", "mixing_rates", "normalise", "plan", "proportional", "rates_by_name", "register_strategy",
           "static", "strategy", "temperature", "unimax"]
