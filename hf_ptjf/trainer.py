"""Deprecated: `MixtureTrainer` and its arguments live in :mod:`hf_ptjf.train` now (import them from ``hf_ptjf``);
``hf_ptjf.trainer`` keeps working for a release, with a ``DeprecationWarning``."""

import warnings

from .train import (MIXTURE_STATE_NAME, MixtureTrainer, MixtureTrainingArguments, changed_shards, concatenate_tasks,
                    shard_identity)

__all__ = ["MIXTURE_STATE_NAME", "MixtureTrainer", "MixtureTrainingArguments", "changed_shards", "concatenate_tasks",
           "shard_identity"]

warnings.warn("hf_ptjf.trainer is deprecated: import MixtureTrainer and MixtureTrainingArguments from hf_ptjf (or "
              "hf_ptjf.train).", DeprecationWarning, stacklevel=2)
