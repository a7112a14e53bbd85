"""Deprecated home of :func:`did_you_mean`: it lives in :mod:`hf_ptjf.checks` now."""

from .checks import did_you_mean

__all__ = ["did_you_mean"]
