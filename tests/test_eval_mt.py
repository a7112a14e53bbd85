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


# ----------------------------------------------------------------------------------------------- where they go


def _results_with(metrics: dict, samples: dict) -> dict:
    from hf_ptjf.recipe import load_recipe
    from hf_ptjf.runner.records import StageResult
    from hf_ptjf.runner.results import summarize

    from .distributed import ROOT

    cfg = load_recipe(ROOT / "tests" / "recipes" / "tiny_ptjf.yaml", ["output_dir=/nonexistent"])
    stage = StageResult(index=0, name="joint", steps=4, wall_time_s=1.0, tasks=["en-fr", "en-ro"],
                        rates={"en-fr": 0.5, "en-ro": 0.5}, output_dir="x", files_sha256={},
                        metrics=metrics, samples=samples)
    return summarize(cfg, [stage])


def test_results_and_report_give_chrf_and_the_off_target_rate_and_mark_off_target_samples():
    from hf_ptjf.runner.results import render_report

    rows = [{"source": "s", "reference": "r", "hypothesis": TEXT["hi"][0], "language": "hi", "off_target": True},
            {"source": "s", "reference": "r", "hypothesis": TEXT["ro"][0], "language": "ro", "off_target": False},
            {"source": "s", "reference": "r", "hypothesis": "", "language": None, "off_target": True}]
    results = _results_with({"eval_en-fr_loss": 3.0, "eval_en-fr_bleu": 9.5, "eval_en-fr_chrf": 31.25,
                             "eval_en-fr_off_target": 0.0, "eval_en-ro_loss": 4.0, "eval_en-ro_bleu": 0.2,
                             "eval_en-ro_chrf": 8.5, "eval_en-ro_off_target": 0.6667}, {"en-ro": rows})
    assert results["tasks"]["en-ro"]["chrf"] == 8.5 and results["tasks"]["en-ro"]["off_target"] == 0.6667
    assert results["tasks"]["en-fr"]["off_target"] == 0.0 and "off_target_note" not in results["tasks"]["en-fr"]
    report = render_report(results)
    assert "| BLEU | chrF++ | off-target rate |" in report
    assert "| en-ro | 4.0000 | 4.0000 | 4.0000 | 0.2000 | 8.5000 | 0.6667 |" in report
    assert f"| {TEXT['hi'][0]} | **off-target: hi** |" in report and f"| {TEXT['ro'][0]} | ro |" in report
    assert "| **off-target: none (no letters)** |" in report


def test_results_and_report_say_when_the_target_language_is_unknown():
    from hf_ptjf.runner.results import render_report

    note = "not measured: the language detector (py3langid) does not know the target language 'xx' (ISO 639-1 'xx')"
    results = _results_with({"eval_en-fr_loss": 3.0, "eval_en-ro_loss": 4.0, "eval_en-ro_bleu": 0.2,
                             "eval_en-ro_chrf": 8.5, "eval_en-ro_off_target_note": note}, {})
    assert results["tasks"]["en-ro"]["off_target"] is None and results["tasks"]["en-ro"]["off_target_note"] == note
    assert f"| 8.5000 | {note} |" in render_report(results)
    # runs without generation (eval.bleu false) have neither, and the report no explanation of them
    assert results["tasks"]["en-fr"]["chrf"] is None and "off-target rate: the share" not in render_report(
        _results_with({"eval_en-fr_loss": 3.0, "eval_en-ro_loss": 4.0}, {}))


def test_model_card_lists_and_explains_chrf_and_the_off_target_rate(tmp_path):
    from huggingface_hub import ModelCard

    from hf_ptjf.hub import metrics_by_task, write_model_card

    metrics = {"eval_en-ro_bleu": 0.2, "eval_en-ro_chrf": 8.5, "eval_en-ro_off_target": 1.0,
               "eval_en-xx_off_target_note": "not measured: unknown 'xx'"}
    path = write_model_card(tmp_path, repo_id="ns/m", tasks=["en-ro", "en-xx"], rates=[0.5, 0.5], steps=4,
                            metrics=metrics_by_task(metrics, ["en-ro", "en-xx"]), method="ptjf")
    text = ModelCard.load(path).text
    assert "| en-ro | chrf | 8.5 |" in text and "| en-ro | off_target | 1 |" in text
    assert "| en-xx | off_target_note | not measured: unknown 'xx' |" in text
    assert "`chrf`: chrF++" in text and "`off_target`: the share of generated translations not in" in text


def _sweep_record(trial, method, rate, final, chrf, off):
    return {"trial": trial, "method": method, "rate": rate, "lr": None, "seed": 0, "wall_time_s": 1.0,
            "final": dict(zip(("en-fr", "en-ro"), final)), "final_ce": {}, "best": dict(zip(("en-fr", "en-ro"), final)),
            "chrf": dict(zip(("en-fr", "en-ro"), chrf)), "off_target": dict(zip(("en-fr", "en-ro"), off)),
            "examples_seen": {"en-ro": 10}, "history": []}


def test_a_sweep_summarizes_and_draws_its_fronts_on_chrf_or_the_off_target_rate(tmp_path):
    from hf_ptjf.recipe import RecipeError
    from hf_ptjf.sweep import SweepConfig
    from hf_ptjf.sweep.gathering import _metric_front_figure, summary_markdown

    records = [_sweep_record("s-0.1", "scalarization", 0.1, (3.0, 5.0), (40.0, 10.0), (0.0, 0.8)),
               _sweep_record("s-0.5", "scalarization", 0.5, (3.5, 4.5), (35.0, 20.0), (0.0, 0.5)),
               _sweep_record("p-0.1", "ptjf", 0.1, (3.0, 4.6), (41.0, 25.0), (0.0, 0.2)),
               _sweep_record("p-0.5", "ptjf", 0.5, (3.2, 4.4), (38.0, 22.0), (0.1, 0.1))]
    common = dict(recipe="r.yaml", output_dir=str(tmp_path), hr_task="en-fr", lr_task="en-ro",
                  total_steps=10, first_stage_steps=5)
    loss = summary_markdown(SweepConfig(**common), records)
    assert "| en-ro chrF++ | en-ro off-target | en-fr off-target |" in loss and "## Fronts on" not in loss
    assert "| 10 | 25.000 | 0.200 | 0.000 |" in loss  # p-0.1's row
    cfg = SweepConfig(**common, front_metric="off_target")
    assert _metric_front_figure(cfg, records) == "fronts_off_target.png"
    assert (tmp_path / "fronts_off_target.png").stat().st_size > 1000
    summary = summary_markdown(cfg, records, "fronts_off_target.png")
    assert "## Fronts on off-target rate (lower is better)" in summary and "](fronts_off_target.png)" in summary
    # scalarization's s-0.5 dominates s-0.1 (same hr rate, lower lr rate); ptjf's two trials trade off
    assert "| scalarization | s-0.5 | 0.5 | 0.0000 | 0.5000 | 1 |" in summary and "| s-0.1 |" not in summary
    assert "| ptjf | p-0.1 | 0.1 | 0.0000 | 0.2000 | 2 |" in summary and "| ptjf | p-0.5 | 0.5 | 0.1000 |" in summary
    chrf = summary_markdown(SweepConfig(**common, front_metric="chrf"), records)
    assert "## Fronts on chrF++ (higher is better)" in chrf
    assert "| ptjf | p-0.1 | 0.1 | 41.0000 | 25.0000 | 1 |" in chrf and "| p-0.5 |" not in chrf  # dominated
    with pytest.raises(RecipeError, match="front_metric.*got 'chrF'"):
        SweepConfig(**common, front_metric="chrF")


def test_the_report_keeps_an_off_target_sample_when_the_first_ones_are_not():
    from hf_ptjf.runner.loop import report_samples

    rows = [{"hyp": f"ro {i}", "off_target": False} for i in range(6)] + [{"hyp": "और प", "off_target": True}]
    kept = report_samples(rows, 3)
    assert [r["hyp"] for r in kept] == ["ro 0", "ro 1", "और प"]
    assert report_samples(rows[:6], 3) == rows[:3]  # none off-target: the first three
    wrong_first = [rows[-1]] + rows[:6]
    assert report_samples(wrong_first, 3) == wrong_first[:3]
