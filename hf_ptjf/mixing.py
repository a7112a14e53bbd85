"""Deprecated: the rate strategies and the mixture live in :mod:`hf_ptjf.mixture` now (``hf_ptjf.mixing`` keeps
working for a release, with a ``DeprecationWarning``)."""

import warnings

from .mixture import (RATE_STRATEGIES, SIZE_UNITS, Mixture, MixtureSpec, TaskPlan, cap_epochs, mixing_rates, plan,
                      proportional, rates_by_name, static, temperature, unimax)

__all__ = ["RATE_STRATEGIES", "SIZE_UNITS", "Mixture", "MixtureSpec", "TaskPlan", "cap_epochs", "mixing_rates", "plan",
           "proportional", "rates_by_name", "static", "temperature", "unimax"]

warnings.warn("hf_ptjf.mixing is deprecated: import from hf_ptjf.mixture (or hf_ptjf).", DeprecationWarning,
              stacklevel=2)
