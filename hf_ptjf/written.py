"""What a spec read from a recipe keeps of it: the mapping the user wrote (the run's record, not what layers read).

Every layer reads the typed spec (:class:`~hf_ptjf.data.spec.TaskSpec`, :class:`~hf_ptjf.model_spec.ModelArguments`).
A run directory records the recipe *as written* (``recipe.resolved.json``) and the data caches are keyed by it, so
that a default a later version adds or changes does not read as a change the user made (a run continues after an
upgrade, and its caches stay valid): :meth:`WrittenMapping.as_written` is that record.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Any, Mapping

__all__ = ["WrittenMapping"]


class WrittenMapping:
    """Mixin of a dataclass spec built from a recipe mapping (``from_dict`` calls :meth:`remember_written`)."""

    def remember_written(self, mapping: Mapping[str, Any]) -> None:
        """Keep (a copy of) the mapping this spec was read from."""
        object.__setattr__(self, "_written", copy.deepcopy(dict(mapping)))

    def as_written(self) -> dict[str, Any]:
        """The mapping this spec was read from; a spec built in code: all its fields."""
        written = getattr(self, "_written", None)
        return copy.deepcopy(written) if written is not None else dataclasses.asdict(self)  # type: ignore[call-overload]

    # Until 0.1 a recipe's tasks and model section were plain dicts: reading them as mappings still works, with a
    # warning (the attributes are typed and have their defaults filled in).
    def __getitem__(self, key: str) -> Any:
        _warn_mapping_read(type(self).__name__, key)
        if key not in {f.name for f in dataclasses.fields(self)}:  # type: ignore[arg-type]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Deprecated: read the attribute (``spec.name``) instead."""
        _warn_mapping_read(type(self).__name__, key)
        return getattr(self, key, default)


def _warn_mapping_read(kind: str, key: str) -> None:
    warnings.warn(f"{kind} is a typed spec now, not a dict: read `.{key}` instead of `[{key!r}]` / `.get({key!r})`.",
                  DeprecationWarning, stacklevel=3)
