"""The mixture: from a stage's YAML section to the task of every position the model trains on.

* :mod:`~hf_ptjf.mixture.strategies`: rate strategies, pure functions registered by name (``register_strategy``);
* :mod:`~hf_ptjf.mixture.mixture`: :class:`Mixture`, the one object a recipe, the training arguments and explicit
  rates become, and the only place rates are computed;
* :mod:`~hf_ptjf.mixture.online`: online strategies (``odm``), whose rates change while training;
* :mod:`~hf_ptjf.mixture.schedule`: :class:`RateSchedule`, piecewise-constant rates over the stream's positions;
* :mod:`~hf_ptjf.mixture.sequence`: the counter-based task sequence (same on every rank, O(1) resume);
* :mod:`~hf_ptjf.mixture.sampler`: :class:`TemperatureMixtureSampler`, indices of map-style tasks;
* :mod:`~hf_ptjf.mixture.stream`: :class:`MixtureStream`, batches of streamed tasks;
* :mod:`~hf_ptjf.mixture.plan`: what a budget means per task (expected examples and passes).
"""

from .mixture import ONLINE_FIELDS, SIZE_UNITS, Mixture, MixtureSpec, mixture_record
from .online import ODM, OnlineStrategy, exploration_rate
from .plan import TaskPlan, plan, rates_by_name
from .schedule import RateSchedule
from .strategies import (RATE_STRATEGIES, STRATEGIES, Strategy, cap_epochs, mixing_rates, normalise, proportional,
                         register_online_strategy, register_strategy, static, strategy, temperature, unimax)

__all__ = ["ODM", "ONLINE_FIELDS", "RATE_STRATEGIES", "SIZE_UNITS", "STRATEGIES", "Mixture", "MixtureSpec",
           "OnlineStrategy", "RateSchedule", "Strategy", "TaskPlan", "cap_epochs", "exploration_rate", "mixing_rates",
           "mixture_record", "normalise", "plan", "proportional", "rates_by_name", "register_online_strategy",
           "register_strategy", "static", "strategy", "temperature", "unimax"]
