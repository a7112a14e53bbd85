"""Deprecated: the sampler lives in :mod:`hf_ptjf.mixture.sampler`, the task sequence in
:mod:`hf_ptjf.mixture.sequence` (``hf_ptjf.sampler`` keeps working for a release, with a ``DeprecationWarning``)."""

import warnings

from .mixture.sampler import TemperatureMixtureSampler
from .mixture.sequence import TaskSequence, feistel_permute

__all__ = ["TaskSequence", "TemperatureMixtureSampler", "feistel_permute"]

warnings.warn("hf_ptjf.sampler is deprecated: import TemperatureMixtureSampler from hf_ptjf (or "
              "hf_ptjf.mixture.sampler).", DeprecationWarning, stacklevel=2)
