"""Offline-safe evaluation metrics shipped with ``hf_ptjf``.

``evaluate.load("sacrebleu")`` fetches the module script from the Hugging Face Hub, so it
fails on air-gapped clusters. We ship equivalent modules inside the package
(``metrics/sacrebleu/sacrebleu.py`` and ``metrics/chrf/chrf.py``, declared as package data) and load them
*by path*, which never contacts the Hub, whatever ``HF_HUB_OFFLINE`` / ``HF_ENDPOINT`` say. The off-target
rate (hypotheses not in the target language) is :mod:`hf_ptjf.metrics.language`.

    >>> from hf_ptjf.metrics import compute_bleu, compute_chrf
    >>> round(compute_bleu(["the cat sat on the mat"], [["the cat sat on the mat"]])["score"], 1)
    100.0
    >>> round(compute_chrf(["the cat sat on the mat"], [["the cat sat on the mat"]])["score"], 1)  # chrF++
    100.0
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING, Any, Sequence

import evaluate

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+; only needed for the hint
    from importlib.resources.abc import Traversable

__all__ = ["BLEU_MODULE", "CHRF_MODULE", "CHRF_PLUS_PLUS_WORD_ORDER", "compute_bleu", "compute_chrf", "load_bleu",
           "load_chrf"]

#: Name of the shipped sacrebleu module (directory and script share it, as evaluate expects).
BLEU_MODULE = "sacrebleu"
#: Name of the shipped chrF module (sacrebleu's CHRF).
CHRF_MODULE = "chrf"
#: chrF's word n-gram order that makes it chrF++ (Popovic 2017; what NLLB and FLORES report).
CHRF_PLUS_PLUS_WORD_ORDER = 2


def _script(name: str) -> Traversable:
    """The shipped ``hf_ptjf/metrics/<name>/<name>.py``, resolved inside the installed package."""
    script = resources.files(__name__).joinpath(name, f"{name}.py")
    if not script.is_file():
        raise ValueError(
            f"`name`={name!r} is not a metric shipped with hf_ptjf (no {name}/{name}.py in {__name__}); "
            f"use {BLEU_MODULE!r} or {CHRF_MODULE!r}, or reinstall hf_ptjf if its package data is missing."
        )
    return script


def _load(name: str, load_kwargs: dict[str, Any], caller: str) -> evaluate.EvaluationModule:
    if "path" in load_kwargs:
        raise ValueError(f"`path` is fixed by {caller}; call evaluate.load(...) directly to load another module.")
    # as_file gives a real path even from a zipped install; evaluate copies the script into its
    # modules cache, so the temporary file may vanish once loaded.
    with resources.as_file(_script(name)) as script:
        return evaluate.load(str(script), **load_kwargs)


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
    return _load(BLEU_MODULE, load_kwargs, "load_bleu")


def load_chrf(**load_kwargs: Any) -> evaluate.EvaluationModule:
    """Load the shipped chrF metric by path (works offline); ``compute(..., word_order=2)`` is chrF++.

    Args:
        **load_kwargs: forwarded to :func:`evaluate.load`, as for :func:`load_bleu`.

    Returns:
        An ``evaluate`` metric with the same ``compute`` signature and outputs as the Hub's
        ``evaluate-metric/chrf`` (``score``, ``char_order``, ``word_order``, ``beta``).
    """
    return _load(CHRF_MODULE, load_kwargs, "load_chrf")


@functools.lru_cache(maxsize=2)
def _cached(name: str) -> evaluate.EvaluationModule:
    # In-memory: one-shot compute() calls should not leave Arrow cache files behind.
    return _load(name, {"keep_in_memory": True}, name)


def _checked_references(predictions: Sequence[str], references: Sequence[Sequence[str]] | Sequence[str]
                        ) -> list[list[str]]:
    """``references`` as one list of reference strings per prediction, after the checks both metrics share."""
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
    return refs


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
    refs = _checked_references(predictions, references)
    # Always pass the multi-reference schema, so mixed str/list inputs share one feature type.
    return _cached(BLEU_MODULE).compute(predictions=list(predictions), references=refs, **kwargs)


def compute_chrf(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]] | Sequence[str],
    *,
    word_order: int = CHRF_PLUS_PLUS_WORD_ORDER,
    **kwargs: Any,
) -> dict[str, Any]:
    """Corpus chrF++ (sacrebleu's CHRF with ``word_order=2``) of ``predictions`` via the shipped module.

    Args:
        predictions: one detokenized hypothesis per segment (empty strings allowed).
        references: per segment, a list of one or more references (or one string).
        word_order: word n-gram order; the default 2 is chrF++, 0 is plain chrF.
        **kwargs: sacrebleu CHRF options: ``char_order``, ``beta``, ``lowercase``, ``whitespace``,
            ``eps_smoothing``.

    Returns:
        ``{"score", "char_order", "word_order", "beta"}``.
    """
    refs = _checked_references(predictions, references)
    return _cached(CHRF_MODULE).compute(predictions=list(predictions), references=refs, word_order=word_order,
                                        **kwargs)
