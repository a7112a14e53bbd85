# Copyright 2024 The hf_ptjf authors. Licensed under the Apache License, Version 2.0.
"""SacreBLEU as an `evaluate` metric module, shipped inside ``hf_ptjf`` so it loads offline.

Same inputs, outputs and keyword arguments as the Hub's ``evaluate-metric/sacrebleu``
module. Loading the Hub copy by name needs network access; this file is loaded by path
(:func:`hf_ptjf.metrics.load_bleu`), which never touches the Hub.

One deliberate difference: predictions may have different numbers of references. Missing
references are padded with ``None``, which sacrebleu skips (the Hub module raises instead).
"""

import datasets
import sacrebleu as scb

import evaluate

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_DESCRIPTION = """\
SacreBLEU provides hassle-free computation of shareable, comparable, and reproducible BLEU scores.
It computes corpus-level BLEU on detokenized text with sacrebleu's own tokenizers
(default ``13a``), so scores are comparable across papers. See https://github.com/mjpost/sacreBLEU.
"""

_KWARGS_DESCRIPTION = """
Computes corpus-level BLEU with sacrebleu.
Args:
    predictions (`list` of `str`): system outputs, one per segment (may be empty strings).
    references (`list` of `list` of `str`): references per segment, one or more each.
        A flat `list` of `str` is accepted as one reference per segment.
    smooth_method (`str`): 'none', 'floor', 'add-k' or 'exp'. Defaults to 'exp'.
    smooth_value (`float`): value for 'floor' (default 0.1) and 'add-k' (default 1).
    tokenize (`str`): sacrebleu tokenizer, e.g. '13a' (default), 'none', 'zh', 'intl',
        'char', 'ja-mecab', 'flores200'.
    lowercase (`bool`): lowercase before scoring. Defaults to False.
    force (`bool`): do not warn about seemingly tokenized input. Defaults to False.
    use_effective_order (`bool`): ignore n-gram orders with no matches (sentence-level BLEU).
        Defaults to False.
Returns:
    'score' (`float`): BLEU in [0, 100],
    'counts' (`list` of `int`): matching n-grams per order,
    'totals' (`list` of `int`): hypothesis n-grams per order,
    'precisions' (`list` of `float`): n-gram precisions (percent) per order,
    'bp' (`float`): brevity penalty,
    'sys_len' (`int`): hypothesis length,
    'ref_len' (`int`): effective reference length.
Examples:
    >>> from hf_ptjf.metrics import load_bleu
    >>> bleu = load_bleu()
    >>> results = bleu.compute(
    ...     predictions=["hello there general kenobi", "foo bar foobar"],
    ...     references=[["hello there general kenobi", "hello there !"], ["foo bar foobar", "foo bar foobar"]],
    ... )
    >>> round(results["score"], 1)
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sacrebleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            homepage="https://github.com/mjpost/sacreBLEU",
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
            codebase_urls=["https://github.com/mjpost/sacreBLEU"],
            reference_urls=["https://github.com/mjpost/sacreBLEU", "https://www.aclweb.org/anthology/W18-6319"],
        )

    def _compute(
        self,
        predictions,
        references,
        smooth_method="exp",
        smooth_value=None,
        force=False,
        lowercase=False,
        tokenize=None,
        use_effective_order=False,
    ):
        if len(predictions) == 0:
            raise ValueError("`predictions` is empty: pass at least one prediction to score.")
        # One reference per prediction is allowed as a flat list of strings.
        references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
        if any(len(refs) == 0 for refs in references):
            raise ValueError("`references` has a segment without any reference: give every prediction at least one.")
        # sacrebleu wants reference *streams* (one list per reference index); pad ragged
        # segments with None, which sacrebleu skips.
        n_streams = max(len(refs) for refs in references)
        streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(n_streams)]
        kwargs = {} if tokenize is None else {"tokenize": tokenize}
        output = scb.corpus_bleu(
            predictions,
            streams,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            force=force,
            lowercase=lowercase,
            use_effective_order=use_effective_order,
            **kwargs,
        )
        return {
            "score": output.score,
            "counts": output.counts,
            "totals": output.totals,
            "precisions": output.precisions,
            "bp": output.bp,
            "sys_len": output.sys_len,
            "ref_len": output.ref_len,
        }
