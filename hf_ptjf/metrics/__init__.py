"""Offline-safe evaluation metrics shipped with ``hf_ptjf``.

``evaluate.load("sacrebleu")`` fetches the module script from the Hugging Face Hub, so it
fails on air-gapped clusters. We ship an equivalent module inside the package
(``metrics/sacrebleu/sacrebleu.py``, declared as package data) and load it *by path*,
which never contacts the Hub, whatever ``HF_HUB_OFFLINE`` / ``HF_ENDPOINT`` say.

    >>> from hf_ptjf.metrics import compute_bleu
    >>> round(compute_bleu(["the cat sat on the mat"], [["the cat sat on the mat"]])["score"], 1)
    100.0
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING, Any, Sequence

import evaluate

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+; only needed for the hint
    from importlib.resources.abc import Traversable

__all__ = ["BLEU_MODULE", "compute_bleu", "load_bleu"]

#: Name of the shipped sacrebleu module (directory and script share it, as evaluate expects).
BLEU_MODULE = "sacrebleu"


def _script(name: str) -> Traversable:
    """The shipped ``hf_ptjf/metrics/<name>/<name>.py``, resolved inside the installed package."""
    script = resources.files(__name__).joinpath(name, f"{name}.py")
    if not script.is_file():
        raise ValueError(
            f"`name`={name!r} is not a metric shipped with hf_ptjf (no {name}/{name}.py in {__name__}); "
            f"use {BLEU_MODULE!r}, or reinstall hf_ptjf if its package data is missing."
        )
    return script


def load_bleu(**load_kwargs: Any) -> evaluate.EvaluationModule:
    """Load the shipped sacrebleu metric by path (works offline).

    Args:
        **load_kwargs: forwarded to :func:`evaluate.load`, e.g. ``keep_in_memory=True``,
            ``experiment_id``, ``num_process``/``process_id`` for distributed evaluation.

    Returns:
        An ``evaluate`` metric with the same ``compute`` signature and outputs as the Hub's
        ``evaluate-metric/sacrebleu`` (``score``, ``counts``, ``totals``, ``precisions``,
        ``bp``, ``sys_len``, ``ref_len``).
    """
    if "path" in load_kwargs:
        raise ValueError("`path` is fixed by load_bleu; call evaluate.load(...) directly to load another module.")
    # as_file gives a real path even from a zipped install; evaluate copies the script into its
    # modules cache, so the temporary file may vanish once loaded.
    with resources.as_file(_script(BLEU_MODULE)) as script:
        return evaluate.load(str(script), **load_kwargs)


@functools.lru_cache(maxsize=1)
def _cached_bleu() -> evaluate.EvaluationModule:
    # In-memory: one-shot compute() calls should not leave Arrow cache files behind.
    return load_bleu(keep_in_memory=True)


def compute_bleu(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]] | Sequence[str],
    **kwargs: Any,
) -> dict[str, Any]:
    """Corpus BLEU of ``predictions`` against ``references`` via the shipped module.

    Args:
        predictions: one detokenized hypothesis per segment (empty strings allowed).
        references: per segment, a list of one or more references (or one string).
        **kwargs: sacrebleu options: ``tokenize``, ``lowercase``, ``smooth_method``,
            ``smooth_value``, ``force``, ``use_effective_order``.

    Returns:
        ``{"score", "counts", "totals", "precisions", "bp", "sys_len", "ref_len"}``.
    """
    if isinstance(predictions, str) or not all(isinstance(p, str) for p in predictions):
        raise ValueError("`predictions` must be a list of strings (decode token ids first).")
    if isinstance(references, str):
        raise ValueError("`references` must be a list with one entry per prediction, not a single string.")
    if len(predictions) != len(references):
        raise ValueError(
            f"`predictions` and `references` must have the same length, got {len(predictions)} and "
            f"{len(references)}: give one (list of) reference(s) per prediction."
        )
    if len(predictions) == 0:
        raise ValueError("`predictions` is empty: pass at least one prediction to score.")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if not all(isinstance(r, str) for seg in refs for r in seg):
        raise ValueError("`references` must contain strings (a list of reference strings per prediction).")
    # Always pass the multi-reference schema, so mixed str/list inputs share one feature type.
    return _cached_bleu().compute(predictions=list(predictions), references=refs, **kwargs)
