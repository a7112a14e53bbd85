"""Default tasks that mirror the paper's setting on offline Bible data.

The paper pairs a high-resource task (WMT En->Fr) with low-resource ones (En->Ro, En->Hi) and
uses two high-resource pairs as a control where pre-training joint fine-tuning brings no gain.
Here, with 31k verses per version:

* ``en-fr``: high-resource, every training verse x 2 English x 2 French versions (~120k pairs);
* ``en-ro`` / ``en-hi``: low-resource, subsampled to 2,000 / 1,000 pairs;
* ``en-es``: a second high-resource pair (~120k) for the HR+HR control.
"""

from __future__ import annotations

from typing import Sequence

from .spec import TaskSpec
from .versions import DEFAULT_VERSION, VERSIONS

__all__ = ["paper_default_tasks"]

_HR_ENGLISH = ["WEB", "KJV"]


def paper_default_tasks(
    *,
    ro_size: int | None = 2000,
    hi_size: int | None = 1000,
    include_es: bool = True,
    lm_langs: Sequence[str] = (),
) -> list[TaskSpec]:
    """En->Fr (HR), En->Ro (``ro_size``), En->Hi (``hi_size``), and En->Es (HR, if ``include_es``).

    ``lm_langs`` adds one monolingual span-corruption task per language (``lm-ro`` ...) from that
    language's default Bible version, as in the paper's mT5-style recipe.
    """
    tasks = [
        TaskSpec(name="en-fr", src_versions=list(_HR_ENGLISH), tgt_versions=["Segond", "Ostervald"], lang="fr"),
        TaskSpec(name="en-ro", src_versions=["WEB"], tgt_versions=["Cornilescu"], lang="ro", train_size=ro_size),
        TaskSpec(name="en-hi", src_versions=["WEB"], tgt_versions=["IRV"], lang="hi", train_size=hi_size),
    ]
    if include_es:
        tasks.append(
            TaskSpec(name="en-es", src_versions=list(_HR_ENGLISH), tgt_versions=["RV1909", "RVA1989"], lang="es")
        )
    known = {v.lang for v in VERSIONS}
    for lang in lm_langs:
        if lang not in known:
            raise ValueError(f"`lm_langs`: no Bible version in language {lang!r}; choose among {sorted(known)}.")
        tasks.append(TaskSpec(name=f"lm-{lang}", type="lm", versions=[DEFAULT_VERSION[lang]], lang=lang))
    return tasks
