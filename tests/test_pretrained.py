"""Starting from a pretrained seq2seq checkpoint and its own tokenizer: the recipe adds the language tags it lacks,
the model's embeddings grow to match (new rows at the mean of the trained ones), and the pinned-sha reload of
the next stage keeps both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_ptjf.data import load_tasks, train_tokenizer
from hf_ptjf.data.spec import TaskSpec
from hf_ptjf.modeling import ModelArguments, build_model

from .fixtures.recipe_runs import run_cli
from .distributed import ROOT

TINY = ROOT / "tests" / "recipes" / "tiny_ptjf.yaml"


SIZES = {"t5": dict(num_layers=1, d_model=32, d_ff=64, num_heads=2, dropout_rate=0.0),
         "llama": dict(family="llama", num_layers=1, d_model=32, d_ff=64, num_heads=2, dropout_rate=0.0,
                       max_position_embeddings=128)}


@pytest.fixture(scope="module", params=["t5", "llama"])
def pretrained(request, tmp_path_factory):
    """A 'pretrained' tiny T5 or decoder-only Llama saved with its own SentencePiece tokenizer, which has no <2fr> /
    <2ro> tags. Returns (folder, tokenizer size)."""
    out = tmp_path_factory.mktemp("pretrained") / request.param
    specs = [TaskSpec.from_dict({"name": "en-fr", "src_versions": ["WEB"], "tgt_versions": ["Segond"], "lang": "fr",
                                 "train_size": 600})]
    corpora = load_tasks(specs, num_dev=20, num_test=20)
    tok = train_tokenizer(corpora, vocab_size=400, max_sentences=2000, extra_tokens=[], num_sentinels=20,
                          output_dir=str(out))
    assert "<2fr>" not in tok.get_vocab()
    model = build_model(ModelArguments(**SIZES[request.param]), tok)
    model.save_pretrained(out)
    return out, len(tok)


def test_language_tags_are_added_and_get_mean_rows(pretrained):
    from transformers import AutoTokenizer

    from hf_ptjf.data import add_language_tags, set_task_meta

    path, n = pretrained
    tok = AutoTokenizer.from_pretrained(path)
    corpora = {name: set_task_meta(load_tasks([TaskSpec.from_dict({"name": name, "src_versions": ["WEB"],
                                                                   "tgt_versions": [v], "lang": lang,
                                                                   "train_size": 20})], num_dev=5, num_test=5)[name],
                                   name=name, type="translation", lang=lang)
               for name, v, lang in (("en-fr", "Segond", "fr"), ("en-ro", "Cornilescu", "ro"))}
    added = add_language_tags(tok, corpora)
    assert added == ["<2fr>", "<2ro>"] and len(tok) == n + 2
    assert tok("<2ro> God", add_special_tokens=False)["input_ids"][0] == tok.convert_tokens_to_ids("<2ro>")
    original = build_model(ModelArguments(name_or_path=str(path)))
    grown = build_model(ModelArguments(name_or_path=str(path)), tok, added)
    emb, old = grown.get_input_embeddings().weight, original.get_input_embeddings().weight
    assert emb.shape[0] == n + 2
    torch.testing.assert_close(emb[:n], old)  # the trained rows are untouched
    for token in added:
        torch.testing.assert_close(emb[tok.convert_tokens_to_ids(token)], old.mean(dim=0))
    assert grown.config.hf_ptjf_added_tokens == added


@pytest.mark.slow
def test_a_ptjf_recipe_from_a_pretrained_checkpoint_keeps_the_tags_through_the_hub(tmp_path, pretrained):
    path, n = pretrained
    out = tmp_path / "run"
    recipe = TINY if "t5" in path.name else TINY.with_name("tiny_causal_ptjf.yaml")
    code, err = run_cli([recipe, f"output_dir={out}", f"model={{name_or_path: {path}}}", f"tokenizer.path={path}",
                         "hub.mode=local"])
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    pre, joint = results["stages"]
    assert len(pre["hub_sha"]) == 40 and results["tasks"]["en-ro"]["bleu"] is not None
    for stage in (pre, joint):
        final = Path(stage["output_dir"])
        config = json.loads((final / "config.json").read_text())
        assert config["vocab_size"] == n + 2 and config["hf_ptjf_added_tokens"] == ["<2fr>", "<2ro>"]
        added = json.loads((final / "tokenizer.json").read_text())["added_tokens"]
        assert {"<2fr>", "<2ro>"} <= {t["content"] for t in added}
    # the tag rows trained in stage 1; loading that output again (as stage 2 does) keeps them: no second reset
    from transformers import AutoTokenizer

    weights = load_file(Path(pre["output_dir"]) / "model.safetensors")
    trained = weights["shared.weight" if "shared.weight" in weights else "model.embed_tokens.weight"]
    assert not torch.allclose(trained[n], trained[:n].mean(dim=0))
    tok = AutoTokenizer.from_pretrained(pre["output_dir"])
    again = build_model(ModelArguments(name_or_path=pre["output_dir"]), tok, ["<2fr>", "<2ro>"])
    torch.testing.assert_close(again.get_input_embeddings().weight, trained)


# ------------------------------------------------------------------ mBART-50-style language codes
def _spm(tokenizer) -> "ModelProto":
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString((Path(tokenizer) / "spm.model").read_bytes())
    return proto


def _nllb_tokenizer(out: Path):
    """An NLLB tokenizer over a SentencePiece-style BPE trained on Bible text (NLLB's own is a BPE too)."""
    from tokenizers import SentencePieceBPETokenizer
    from transformers import NllbTokenizer

    corpora = load_tasks([TaskSpec.from_dict({"name": "en-fr", "src_versions": ["WEB"], "tgt_versions": ["Segond"],
                                              "lang": "fr", "train_size": 600})], num_dev=5, num_test=5)
    bpe = SentencePieceBPETokenizer()
    bpe.train_from_iterator([*corpora["en-fr"]["train"]["source"], *corpora["en-fr"]["train"]["target"]],
                            vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return NllbTokenizer(vocab=model["vocab"], merges=merges, src_lang="eng_Latn", tgt_lang="fra_Latn")


@pytest.fixture(scope="module", params=["mbart50", "m2m100", "nllb"])
def coded(request, tmp_path_factory, tokenizer):
    """A tiny randomly initialised mBART (with an mBART-50 tokenizer), M2M100 or NLLB-200 model (with its tokenizer),
    each tokenizer built from Bible text (the tiny recipe's SentencePiece model, or a BPE for NLLB), saved locally:
    no downloads. Returns (folder, {task: (source code, target code)})."""
    from transformers import (M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer, MBart50Tokenizer,
                              MBartConfig, MBartForConditionalGeneration)

    from hf_ptjf.modeling import token_rows

    out = tmp_path_factory.mktemp(request.param) / "model"
    out.mkdir()
    proto = _spm(tokenizer)
    sizes = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                 encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128, dropout=0.0)
    if request.param == "mbart50":
        tok = MBart50Tokenizer(vocab=[(p.piece, p.score) for p in proto.pieces], src_lang="en_XX", tgt_lang="fr_XX",
                               _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap or None)
        config_cls, model_cls, codes = MBartConfig, MBartForConditionalGeneration, ("en_XX", "fr_XX", "ro_RO")
    elif request.param == "nllb":  # NLLB-200: the M2M100 architecture with its own tokenizer
        tok = _nllb_tokenizer(out)
        config_cls, model_cls, codes = M2M100Config, M2M100ForConditionalGeneration, ("eng_Latn", "fra_Latn", "ron_Latn")
    else:
        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        for piece in (p.piece for p in proto.pieces):
            vocab.setdefault(piece, len(vocab))
        (out / "vocab.json").write_text(json.dumps(vocab))
        (out / "sentencepiece.bpe.model").write_bytes((Path(tokenizer) / "spm.model").read_bytes())
        tok = M2M100Tokenizer(vocab_file=str(out / "vocab.json"), spm_file=str(out / "sentencepiece.bpe.model"),
                              src_lang="en", tgt_lang="fr")
        config_cls, model_cls, codes = M2M100Config, M2M100ForConditionalGeneration, ("en", "fr", "ro")
    torch.manual_seed(0)
    config = config_cls(vocab_size=token_rows(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                        bos_token_id=tok.bos_token_id, decoder_start_token_id=tok.eos_token_id, **sizes)
    model_cls(config).save_pretrained(out)
    tok.save_pretrained(out)
    src, fr, ro = codes
    return out, {"en-fr": (src, fr), "en-ro": (src, ro)}


def code_overrides(codes: dict) -> list[str]:
    return [f"tasks.{i}.{key}={codes[task][j]}" for i, task in enumerate(("en-fr", "en-ro"))
            for j, key in enumerate(("src_lang_code", "lang_code"))]


CODES = code_overrides({"en-fr": ("en_XX", "fr_XX"), "en-ro": ("en_XX", "ro_RO")})  # mBART-50's


def test_language_codes_mark_sources_labels_and_the_first_generated_token(tmp_path, coded):
    from hf_ptjf.data.prepare import prepare_recipe_data
    from hf_ptjf.data.tokenizer import language_code_id
    from hf_ptjf.recipe import load_recipe

    folder, codes = coded
    cfg = load_recipe(TINY, [f"output_dir={tmp_path / 'run'}", f"model={{name_or_path: {folder}}}",
                             f"tokenizer.path={folder}", *code_overrides(codes)])
    data = prepare_recipe_data(cfg, tmp_path / "unused")
    tok = data.tokenizer
    assert data.added_tokens == []  # the codes replace the <2xx> tags: nothing added
    for task, (src, tgt) in codes.items():
        row = data.tokenized[task]["train"][0]
        # mBART-50 and M2M100: [src code] X </s> and labels [tgt code] Y </s>
        assert row["input_ids"][0] == language_code_id(tok, src) and row["labels"][0] == language_code_id(tok, tgt)
        assert data.generation_kwargs(task) == {"forced_bos_token_id": language_code_id(tok, tgt)}
    model = build_model(ModelArguments(name_or_path=str(folder)), tok)
    batch = data.collator([data.tokenized["en-ro"]["validation"][i] for i in range(2)])
    out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=4,
                         num_beams=2, **data.generation_kwargs("en-ro"))
    assert (out[:, 1] == language_code_id(tok, codes["en-ro"][1])).all()  # after the decoder start, the forced code


@pytest.mark.slow
def test_a_ptjf_recipe_from_a_checkpoint_with_language_codes_with_bleu(tmp_path, coded):
    folder, codes = coded
    out = tmp_path / "run"
    code, err = run_cli([TINY, f"output_dir={out}", f"model={{name_or_path: {folder}}}", f"tokenizer.path={folder}",
                         "hub.mode=local", *code_overrides(codes)])
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert [s["init"] for s in results["stages"]] == ["scratch", "previous"] and len(results["stages"][0]["hub_sha"]) == 40
    assert all(t["bleu"] is not None for t in results["tasks"].values())
    model_type = json.loads((Path(results["stages"][1]["output_dir"]) / "config.json").read_text())["model_type"]
    assert model_type == json.loads((folder / "config.json").read_text())["model_type"]  # mbart / m2m_100


@pytest.mark.parametrize("coded", ["mbart50"], indirect=True)  # the messages name mBART-50's codes
@pytest.mark.parametrize("overrides, expected", [
    (["tasks.0.src_lang_code=en_XX", "tasks.0.lang_code=fr_FR"],
     ["`tasks.0.lang_code` (task `en-fr`)", "'fr_FR' is not a language code", "Did you mean `fr_XX`?"]),
    (["tasks.0.lang_code=fr_XX"], ["`tasks.0`", "`lang_code` and `src_lang_code` go together"]),
])
def test_bad_language_codes_are_one_line_before_any_work(tmp_path, coded, overrides, expected):
    from .fixtures.recipe_runs import error_line

    folder, codes = coded
    code, err = run_cli([TINY, f"output_dir={tmp_path / 'run'}", f"model={{name_or_path: {folder}}}",
                         f"tokenizer.path={folder}", *overrides])
    assert code == 2
    line = error_line(err)
    for text in expected:
        assert text in line, line
    assert not (tmp_path / "run").exists()


def test_language_codes_need_a_tokenizer_that_has_them(tmp_path, tokenizer):
    from .fixtures.recipe_runs import error_line

    code, err = run_cli([TINY, f"output_dir={tmp_path / 'run'}", f"tokenizer.path={tokenizer}", *CODES[:2]])
    assert code == 2
    assert "has no language codes" in error_line(err) and "<2xx> tag" in error_line(err)
