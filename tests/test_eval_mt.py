"""chrF++ and the off-target rate beside BLEU: the shipped chrF module equals sacrebleu's, the detector and the
target language of a task, the evaluation step on hypotheses deliberately in another language (rate 1.0), and where
the numbers go (results.json, report.md, model cards, sweep summaries and fronts, compare). The recomputation from
a real run's ``samples_<task>.jsonl`` is in tests/test_bleu.py (its 600-step runs)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import sacrebleu
from sacrebleu.metrics import CHRF

from hf_ptjf.data.spec import TaskSpec
from hf_ptjf.metrics import compute_chrf, load_chrf
from hf_ptjf.metrics.language import (
    LanguageDetector,
    iso639_1,
    language_detector,
    off_target_rate,
    off_target_verdicts,
)
from hf_ptjf.recipe import EvalSpec
from hf_ptjf.runner.evaluation import detector_for, evaluate_stage, target_language

# Not Bible text: sentences written for these tests, a few per language.
TEXT = {
    "fr": ["Le chat dort sur le canapé depuis ce matin.", "Nous irons au marché demain avec nos voisins.",
           "Il fait très froid dans la maison cet hiver."],
    "ro": ["Pisica doarme pe canapea de azi dimineață.", "Mâine mergem la piață cu vecinii noștri.",
           "Este foarte frig în casă în această iarnă."],
    "hi": ["बिल्ली सुबह से सोफे पर सो रही है।", "हम कल अपने पड़ोसियों के साथ बाज़ार जाएंगे।",
           "इस सर्दी में घर में बहुत ठंड है।"],
    "en": ["The cat has been sleeping on the sofa since this morning.", "Tomorrow we go to the market with our "
           "neighbours.", "It is very cold in the house this winter."],
}


# ----------------------------------------------------------------------------------------------- chrF++


@pytest.mark.parametrize("preds, refs", [
    (TEXT["fr"], [[r] for r in TEXT["fr"][::-1]]),
    (["the cat sat", "", "a dog ran home"], [["the cat sat down", "the cat sat"], ["x"], ["a dog ran home"]]),
    (TEXT["ro"][:2], TEXT["ro"][1::-1]),  # flat references: one per prediction
])
def test_chrf_is_sacrebleus_chrf_plus_plus(preds, refs):
    nested = [[r] if isinstance(r, str) else r for r in refs]
    streams = [[seg[i] if i < len(seg) else None for seg in nested] for i in range(max(map(len, nested)))]
    expected = CHRF(word_order=2).corpus_score(preds, streams).score
    assert compute_chrf(preds, refs)["score"] == pytest.approx(expected, abs=1e-9)
    assert compute_chrf(preds, refs)["word_order"] == 2
    plain = sacrebleu.corpus_chrf(preds, streams).score  # chrF without word n-grams differs
    assert compute_chrf(preds, refs, word_order=0)["score"] == pytest.approx(plain, abs=1e-9)
    assert load_chrf(keep_in_memory=True).compute(predictions=preds, references=nested)["score"] == pytest.approx(plain)


def test_chrf_refuses_what_bleu_refuses():
    with pytest.raises(ValueError, match="same length"):
        compute_chrf(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="`path` is fixed by load_chrf"):
        load_chrf(path="x")


# ----------------------------------------------------------------------------------------------- language ID


@pytest.mark.parametrize("code, iso", [("fr", "fr"), ("fr_XX", "fr"), ("fra_Latn", "fr"), ("rum", "ro"),
                                       ("ron_Latn", "ro"), ("hi_IN", "hi"), ("swh_Latn", "sw"), ("pt-BR", "pt"),
                                       ("zho_Hans", "zh"), ("ace_Arab", "ace"), ("xx", "xx")])
def test_iso639_1_maps_the_language_codes_of_tokenizers(code, iso):
    assert iso639_1(code) == iso


def test_a_task_targets_its_language_code_else_its_lang():
    plain = TaskSpec.from_dict({"name": "en-ro", "tgt_versions": ["Cornilescu"]})
    coded = TaskSpec.from_dict({"name": "t", "tgt_versions": ["Segond"], "lang_code": "fra_Latn",
                                "src_lang_code": "eng_Latn"})
    assert target_language(plain) == "ro" and target_language(coded) == "fr"
    detector = detector_for([plain, coded])
    # the shipped Bible languages (and every target) are the detector's choices, nothing else
    assert {"ro", "fr", "hi", "en", "sw", "id"} <= set(detector.languages) and "ms" not in detector.languages


def test_detector_verdicts_and_rate():
    detector = language_detector(["en", "fr", "ro", "hi"])
    assert detector.detect(TEXT["fr"] + TEXT["ro"] + TEXT["hi"] + ["", "12 !"]) == \
        ["fr"] * 3 + ["ro"] * 3 + ["hi"] * 3 + [None, None]
    detected, flags = off_target_verdicts(TEXT["ro"][:2] + TEXT["hi"][:1] + [""], "ro", detector)
    assert detected == ["ro", "ro", "hi", None] and flags == [False, False, True, True]  # blank is not Romanian
    assert off_target_rate(TEXT["ro"] + TEXT["hi"][:1], "ro_RO", detector) == 0.25
    with pytest.raises(ValueError, match="does not know the target language 'xx'"):
        off_target_rate(TEXT["ro"], "xx", detector)
    with pytest.raises(ValueError, match="at least two languages"):
        LanguageDetector(["fr", "xx"])


# ----------------------------------------------------------------------------------------------- the evaluation step


class _Tokenizer:
    """Decodes row ``i`` of the generated ids as the ``i``-th of the fixture's hypotheses."""

    pad_token_id = 0

    def __init__(self, hypotheses):
        self.hypotheses = hypotheses

    def batch_decode(self, ids, skip_special_tokens=True):
        return [self.hypotheses[int(row[1])] for row in ids]


def _stage_fixture(hypotheses: dict[str, list[str]], references: dict[str, list[str]], specs: list[TaskSpec]):
    """A trainer and recipe data for :func:`evaluate_stage`: each task's "generations" are the given hypotheses."""
    import datasets

    decoded = [h for task in hypotheses for h in hypotheses[task]]
    offsets = dict(zip(hypotheses, np.cumsum([0] + [len(h) for h in hypotheses.values()])))
    corpora, tokenized = {}, {}
    for task, refs in references.items():
        text = datasets.Dataset.from_dict({"source": TEXT["en"][: len(refs)], "target": refs})
        corpora[task] = {"validation": text}
        tokenized[task] = {"validation": text.add_column("task", [task] * len(refs))}

    def predict(ds, metric_key_prefix, **_):
        task = ds["task"][0]
        # [decoder start, the row's index in the decoded list]: the hypotheses of this task
        ids = np.stack([np.zeros(len(ds), int), offsets[task] + np.arange(len(ds))], axis=1)
        return SimpleNamespace(predictions=ids)

    logged = []
    trainer = SimpleNamespace(
        predict=predict, log=logged.append, evaluate=lambda **_: {f"eval_{t}_loss": 1.0 for t in references},
        args=SimpleNamespace(label_smoothing_factor=0.0), state=SimpleNamespace(global_step=1, log_history=[]),
    )
    data = SimpleNamespace(specs=specs, task_type="translation", corpora=corpora, tokenized=tokenized,
                           tokenizer=_Tokenizer(decoded), causal=False, generation_kwargs=lambda task: {})
    return trainer, data, logged


def test_a_task_answering_in_another_language_is_off_target_everywhere():
    """The En->Ro task "translates" into Hindi (what the quickstart's small model did) and the En->Fr one into
    French: the rate is 1.0 for the first, 0.0 for the second, every Hindi row is marked, chrF++ is sacrebleu's."""
    specs = [TaskSpec.from_dict({"name": "en-fr", "tgt_versions": ["Segond"]}),
             TaskSpec.from_dict({"name": "en-ro", "tgt_versions": ["Cornilescu"]})]
    hyps = {"en-fr": TEXT["fr"], "en-ro": TEXT["hi"]}
    trainer, data, logged = _stage_fixture(hyps, {"en-fr": TEXT["fr"][::-1], "en-ro": TEXT["ro"]}, specs)
    metrics, samples = evaluate_stage(trainer, data, EvalSpec(bleu_examples=3))
    assert metrics["eval_en-ro_off_target"] == 1.0 and metrics["eval_en-fr_off_target"] == 0.0
    assert [r["language"] for r in samples["en-ro"]] == ["hi"] * 3 and all(r["off_target"] for r in samples["en-ro"])
    assert not any(r["off_target"] for r in samples["en-fr"])
    for task in hyps:
        expected = CHRF(word_order=2).corpus_score(hyps[task], [[r["reference"] for r in samples[task]]]).score
        assert metrics[f"eval_{task}_chrf"] == round(expected, 2)
        bleu = sacrebleu.corpus_bleu(hyps[task], [[r["reference"] for r in samples[task]]]).score
        assert metrics[f"eval_{task}_bleu"] == round(bleu, 2)
    # logged once, at the stage's end (to TensorBoard and the log history): all of them, numbers only
    assert logged == [{k: v for k, v in metrics.items() if not k.endswith("_loss")}]


def test_a_target_the_detector_does_not_know_says_so_instead_of_a_rate():
    specs = [TaskSpec.from_dict({"name": "en-fr", "tgt_versions": ["Segond"]}),
             TaskSpec.from_dict({"name": "en-xx", "source": "json", "path": "x.jsonl", "lang": "xx"})]
    trainer, data, logged = _stage_fixture({"en-fr": TEXT["fr"], "en-xx": TEXT["ro"]},
                                           {"en-fr": TEXT["fr"], "en-xx": TEXT["ro"]}, specs)
    metrics, samples = evaluate_stage(trainer, data, EvalSpec(bleu_examples=3))
    assert "eval_en-xx_off_target" not in metrics and metrics["eval_en-xx_chrf"] == 100.0
    assert "does not know the target language 'xx'" in metrics["eval_en-xx_off_target_note"]
    assert [r["language"] for r in samples["en-xx"]] == ["ro"] * 3 and "off_target" not in samples["en-xx"][0]
    assert "eval_en-xx_off_target_note" not in logged[0]  # not a scalar: TensorBoard gets none
