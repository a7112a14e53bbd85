"""Training on a mixture: the arguments, the data behind one interface, the per-task meter, and `MixtureTrainer`.

* :mod:`~hf_ptjf.train.arguments`: :class:`MixtureTrainingArguments`;
* :mod:`~hf_ptjf.train.data`: :class:`MixtureData` (map-style :class:`MapMixtureData`, streamed
  :class:`StreamMixtureData`);
* :mod:`~hf_ptjf.train.meter`: :class:`TaskMeter`, what each task consumed and its training loss;
* :mod:`~hf_ptjf.train.trainer`: :class:`MixtureTrainer`, Trainer hooks that delegate to the above.
"""

from .arguments import MixtureTrainingArguments
from .data import MapMixtureData, MixtureData, StreamMixtureData, changed_shards, concatenate_tasks, shard_identity
from .meter import TaskMeter
from .trainer import MIXTURE_STATE_NAME, MixtureTrainer, tied_copies

__all__ = ["MIXTURE_STATE_NAME", "MapMixtureData", "MixtureData", "MixtureTrainer", "MixtureTrainingArguments",
           "StreamMixtureData", "TaskMeter", "changed_shards", "concatenate_tasks", "shard_identity", "tied_copies"]
