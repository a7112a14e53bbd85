"""Deprecated: streamed mixtures live in :mod:`hf_ptjf.mixture.stream` (``hf_ptjf.mixture_stream`` keeps working for
a release, with a ``DeprecationWarning``)."""

import warnings

from .mixture.stream import STREAM_STATE, MixtureStream

__all__ = ["STREAM_STATE", "MixtureStream"]

warnings.warn("hf_ptjf.mixture_stream is deprecated: import MixtureStream from hf_ptjf (or hf_ptjf.mixture.stream).",
              DeprecationWarning, stacklevel=2)
