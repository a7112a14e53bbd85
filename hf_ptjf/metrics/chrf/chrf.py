# Copyright 2024 The hf_ptjf authors. Licensed under the Apache License, Version 2.0.
"""sacreBLEU's chrF / chrF++ as an `evaluate` metric module, shipped inside ``hf_ptjf`` so it loads offline.

Same inputs, outputs and keyword arguments as the Hub's ``evaluate-metric/chrf`` module, loaded by path
(:func:`hf_ptjf.metrics.load_chrf`), which never touches the Hub. ``word_order=2`` is chrF++ (what NLLB and the
FLORES benchmarks report); the default here stays the Hub module's ``word_order=0`` (chrF).

One deliberate difference, as in the shipped sacrebleu module: predictions may have different numbers of
references (padded with ``None``, which sacrebleu skips).
"""

import datasets
from sacrebleu.metrics import CHRF

import evaluate

_CITATION = """\
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    url = "https://aclanthology.org/W15-3049",
    pages = "392--395",
}
@inproceedings{popovic-2017-chrf,
    title = "chr{F}++: words helping character n-grams",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Second Conference on Machine Translation",
    year = "2017",
    url = "https://aclanthology.org/W17-4770",
    pages = "612--618",
}
"""

_DESCRIPTION = """\
chrF is the F-score of character n-grams (orders 1-6) between hypothesis and references; chrF++ adds word
unigrams and bigrams (``word_order=2``). Computed at corpus level with sacrebleu, so scores are comparable across
papers. See https://github.com/mjpost/sacreBLEU.
"""

_KWARGS_DESCRIPTION = """
Computes corpus-level chrF (or chrF++ with word_order=2) with sacrebleu.
Args:
    predictions (`list` of `str`): system outputs, one per segment (may be empty strings).
    references (`list` of `list` of `str`): references per segment, one or more each.
        A flat `list` of `str` is accepted as one reference per segment.
    char_order (`int`): character n-gram order. Defaults to 6.
    word_order (`int`): word n-gram order; 2 gives chrF++. Defaults to 0 (chrF).
    beta (`int`): recall weight of the F-score. Defaults to 2.
    lowercase (`bool`): lowercase before scoring. Defaults to False.
    whitespace (`bool`): keep whitespace in character n-grams. Defaults to False.
    eps_smoothing (`bool`): sacrebleu's epsilon smoothing instead of the reference implementation's.
        Defaults to False.
Returns:
    'score' (`float`): chrF(++) in [0, 100],
    'char_order' (`int`), 'word_order' (`int`), 'beta' (`int`): the settings used.
Examples:
    >>> from hf_ptjf.metrics import load_chrf
    >>> chrf = load_chrf()
    >>> results = chrf.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]],
    ...                        word_order=2)
    >>> round(results["score"], 1)
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            homepage="https://github.com/mjpost/sacreBLEU#chrf--chrf",
            inputs_description=_KWARGS_DESCRIPTION,
            # Two schemas, as on the Hub: several references per prediction, or exactly one.
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence"), id="references"),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/mjpost/sacreBLEU#chrf--chrf"],
            reference_urls=["https://aclanthology.org/W15-3049", "https://aclanthology.org/W17-4770"],
        )

    def _compute(
        self,
        predictions,
        references,
        char_order=CHRF.CHAR_ORDER,
        word_order=CHRF.WORD_ORDER,
        beta=CHRF.BETA,
        lowercase=False,
        whitespace=False,
        eps_smoothing=False,
    ):
        if len(predictions) == 0:
            raise ValueError("`predictions` is empty: pass at least one prediction to score.")
        references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
        if any(len(refs) == 0 for refs in references):
            raise ValueError("`references` has a segment without any reference: give every prediction at least one.")
        # sacrebleu wants reference *streams* (one list per reference index); pad ragged segments with None
        n_streams = max(len(refs) for refs in references)
        streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(n_streams)]
        metric = CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase,
                      whitespace=whitespace, eps_smoothing=eps_smoothing)
        output = metric.corpus_score(predictions, streams)
        return {"score": output.score, "char_order": output.char_order, "word_order": output.word_order,
                "beta": output.beta}
