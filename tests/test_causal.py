"""Decoder-only (causal) models through the same data, sampler, trainer and runner as the encoder-decoder:
the Llama architecture from sizes, causal checkpoints, packed next-token LM, prompted translation."""

from __future__ import annotations

import json
import logging

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_ptjf.data import CausalLMCollator, set_task_meta, tokenize_tasks
from hf_ptjf.modeling import ModelArguments, build_config, build_model, count_parameters, is_causal
from hf_ptjf.train import MIXTURE_STATE_NAME, MixtureTrainer, MixtureTrainingArguments

from .fixtures.recipe_runs import error_line, run_cli
from .distributed import ROOT

CAUSAL = ROOT / "tests" / "recipes" / "tiny_causal_ptjf.yaml"
TEXTS = {
    "lm-a": [f"In the beginning number {i} was the word and the word was {i % 7}." for i in range(120)],
    "lm-b": [f"Au commencement {i}, la parole etait {i % 5} et encore une phrase." for i in range(30)],
}


@pytest.fixture(scope="module")
def tok(tokenizer):
    """The tiny recipe's SentencePiece tokenizer, loaded (``tokenizer`` is its directory)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer)


def tiny_llama(vocab_size: int, seed: int = 0, **sizes) -> torch.nn.Module:
    torch.manual_seed(seed)
    args = ModelArguments(family="llama", num_layers=1, d_model=32, d_ff=64, num_heads=2, dropout_rate=0.0,
                          vocab_size=vocab_size, max_position_embeddings=128, **sizes)
    return build_model(args)


def lm_corpora() -> dict[str, datasets.DatasetDict]:
    out = {}
    for name, texts in TEXTS.items():
        rows = {"id": [f"{name}-{i}" for i in range(len(texts))], "text": texts}
        dsd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                                    "validation": datasets.Dataset.from_dict({k: v[:8] for k, v in rows.items()})})
        out[name] = set_task_meta(dsd, name=name, type="lm", lang=None)
    return out


def translation_corpus(name: str = "en-fr") -> dict[str, datasets.DatasetDict]:
    src = [f"God said {i} things to the people." for i in range(24)]
    tgt = [f"Dieu dit {i} choses au peuple." for i in range(24)]
    rows = {"id": [str(i) for i in range(24)], "source": src, "target": tgt}
    dsd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                                "validation": datasets.Dataset.from_dict({k: v[:6] for k, v in rows.items()})})
    return {name: set_task_meta(dsd, name=name, type="translation", lang="fr")}


# ------------------------------------------------------------------ models
def test_family_llama_builds_a_pre_norm_rope_swiglu_decoder():
    args = ModelArguments(family="llama", num_layers=2, d_model=64, d_ff=128, num_heads=4, num_kv_heads=2,
                          vocab_size=500, tie_word_embeddings=False)
    config = build_config(args)
    assert type(config).__name__ == "LlamaConfig" and is_causal(config)
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (64, 128, 2)
    assert (config.num_attention_heads, config.num_key_value_heads, config.hidden_act) == (4, 2, "silu")
    model = build_model(args)
    assert type(model).__name__ == "LlamaForCausalLM"
    layer = model.model.layers[0]
    assert type(layer.input_layernorm).__name__ == "LlamaRMSNorm"  # pre-norm: normalised before attention
    assert hasattr(layer.mlp, "gate_proj") and hasattr(model.model, "rotary_emb")  # SwiGLU, RoPE
    assert model.lm_head.weight is not model.model.embed_tokens.weight  # untied as asked
    tied = build_model(ModelArguments(family="llama", num_layers=2, d_model=64, d_ff=128, num_heads=4, num_kv_heads=2,
                                      vocab_size=500))
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert count_parameters(config) - count_parameters(tied.config) == 500 * 64  # the separate head
    assert count_parameters(config) == sum(p.numel() for p in model.parameters())


def test_a_checkpoint_loads_as_what_its_config_says(tmp_path):
    model = tiny_llama(300)
    model.save_pretrained(tmp_path / "llama")
    assert (tmp_path / "llama" / "model.safetensors").is_file()
    args = ModelArguments(name_or_path=str(tmp_path / "llama"))
    assert args.causal
    loaded = build_model(args)
    assert type(loaded).__name__ == "LlamaForCausalLM"
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)
    from .toy import tiny_t5

    tiny_t5().save_pretrained(tmp_path / "t5")
    assert not ModelArguments(name_or_path=str(tmp_path / "t5")).causal


@pytest.mark.parametrize("bad, message", [
    ({"family": "lama"}, "Did you mean `llama`?"),
    ({"family": "llama", "d_kv": 8}, "model.d_kv is a size of the t5 family"),
    ({"family": "t5", "num_kv_heads": 2}, "model.num_kv_heads is a size of the llama family"),
    ({"family": "llama", "num_heads": 4, "num_kv_heads": 3}, "not a multiple of model.num_kv_heads=3"),
])
def test_model_sizes_of_the_wrong_family_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelArguments(**bad)


# ------------------------------------------------------------------ packed next-token LM
def test_lm_rows_are_packed_per_task_and_lossless(tok):
    out = tokenize_tasks(lm_corpora(), tok, max_source_length=32, causal=True)
    collator = CausalLMCollator(tok)
    for name, texts in TEXTS.items():
        rows = out[name]["train"]["input_ids"][:]
        assert max(len(r) for r in rows) == 32  # rows of exactly the sequence length...
        documents = [ids for ids in tok(texts)["input_ids"]]
        assert [t for r in rows for t in r] == [t for d in documents for t in d]  # ...holding this task's text only
        batch = collator([{"input_ids": r} for r in rows])
        real = (batch["labels"] != -100).float().mean().item()
        assert real >= 0.97, real  # the non-padding share the issue asks for
        assert torch.equal(batch["labels"][batch["labels"] != -100], batch["input_ids"][batch["labels"] != -100])


def test_position_ids_restart_at_each_document_and_attention_stays_inside_it(tok):
    collator = CausalLMCollator(tok)
    eos = tok.eos_token_id
    first, second = tok(["God said light.", "And there was light over the water."])["input_ids"]
    batch = collator([{"input_ids": first + second}])
    assert batch["position_ids"][0].tolist() == list(range(len(first))) + list(range(len(second)))
    assert first[-1] == eos and "attention_mask" not in batch
    model = tiny_llama(len(tok)).eval()
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0, len(first):]
        alone = model(input_ids=torch.tensor([second])).logits[0]
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)  # the second document never sees the first


# ------------------------------------------------------------------ prompted translation
def test_prompted_translation_scores_the_target_tokens_only(tok):
    out = tokenize_tasks(translation_corpus(), tok, max_source_length=24, max_target_length=16, causal=True)
    train, dev = out["en-fr"]["train"], out["en-fr"]["validation"]
    row = train[0]
    prompt = tok("<2fr> God said 0 things to the people.")["input_ids"]
    target = tok("Dieu dit 0 choses au peuple.")["input_ids"]
    assert row["input_ids"] == prompt + target
    assert row["labels"] == [-100] * len(prompt) + target
    assert dev[0]["prompt_ids"] == prompt and "prompt_ids" not in train.column_names
    collator = CausalLMCollator(tok)
    batch = collator([train[i] for i in range(4)])
    model = tiny_llama(len(tok))
    loss = model(**batch).loss
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    scored = labels != -100
    manual = torch.nn.functional.cross_entropy(logits[scored], labels[scored])
    torch.testing.assert_close(loss, manual)
    assert scored.sum() == sum(len(tok(f"Dieu dit {i} choses au peuple.")["input_ids"]) for i in range(4))
    with collator.prompts():  # generation: prompts alone, padded on the left
        prompts = collator([{"input_ids": dev[i]["prompt_ids"]} for i in range(3)])
    lengths = [len(dev[i]["prompt_ids"]) for i in range(3)]
    width = max(lengths)
    for i, n in enumerate(lengths):
        assert prompts["input_ids"][i, width - n:].tolist() == dev[i]["prompt_ids"]
        assert prompts["attention_mask"][i].tolist() == [0] * (width - n) + [1] * n
    assert "labels" not in prompts


# ------------------------------------------------------------------ the trainer
def causal_trainer(out, tok, max_steps=8, save_steps=500):
    tokenized = tokenize_tasks(lm_corpora(), tok, max_source_length=32, causal=True)
    args = MixtureTrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=5e-3, warmup_steps=2,
        logging_steps=1, save_steps=save_steps, eval_strategy="no", report_to=[], use_cpu=True, seed=3,
        mixture_strategy="temperature", mixture_tau=1.0, disable_tqdm=True,
    )
    return MixtureTrainer(model=tiny_llama(len(tok), seed=1), args=args, data_collator=CausalLMCollator(tok),
                          train_datasets={n: d["train"] for n, d in tokenized.items()})


def test_causal_counts_equal_the_sampler_and_loss_tokens(tmp_path, tok):
    t = causal_trainer(tmp_path, tok)
    t.train()
    last = [h for h in t.state.log_history if "loss" in h][-1]
    consumed = 8 * 4
    expected = t.mixture_sampler.task_counts(consumed)
    assert [last["examples_seen_lm-a"], last["examples_seen_lm-b"]] == expected.tolist() and expected[1] > 0
    idx = t.mixture_sampler.indices(0, consumed)
    tasks = t.mixture_sampler.task_of(idx)
    scored = np.array([len(t.train_dataset[int(i)]["input_ids"]) - 1 for i in idx])  # token t + 1 from position t
    assert last["target_tokens_seen_lm-b"] == scored[tasks == 1].sum()
    assert "train_lm-a_loss" in last  # the per-task training loss, for a causal model too


def test_causal_resume_reproduces_the_uninterrupted_run(tmp_path, tok):
    full = causal_trainer(tmp_path / "full", tok, max_steps=8, save_steps=3)
    full.train()
    ckpt = tmp_path / "full" / "checkpoint-3"
    assert json.loads((ckpt / MIXTURE_STATE_NAME).read_text())["sampler"]["position"] == 3 * 4
    resumed = causal_trainer(tmp_path / "resumed", tok, max_steps=8, save_steps=3)
    resumed.train(resume_from_checkpoint=str(ckpt))
    a = {h["step"]: h["loss"] for h in full.state.log_history if "loss" in h}
    b = {h["step"]: h["loss"] for h in resumed.state.log_history if "loss" in h and h["step"] > 3}
    assert sorted(b) == list(range(4, 9))
    for step, loss in b.items():
        assert loss == pytest.approx(a[step], rel=1e-5), step
    wa = load_file(tmp_path / "full" / "checkpoint-8" / "model.safetensors")
    wb = load_file(tmp_path / "resumed" / "checkpoint-8" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the recipe, end to end
@pytest.mark.slow
def test_the_causal_ptjf_recipe_runs_with_bleu_through_the_hub(tmp_path, tokenizer):
    out = tmp_path / "run"
    code, err = run_cli([CAUSAL, f"output_dir={out}", f"tokenizer.path={tokenizer}", "hub.mode=local"])
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    pre, joint = results["stages"]
    assert joint["init"] == "previous" and len(pre["hub_sha"]) == 40
    assert set(results["tasks"]) == {"en-fr", "en-ro"}
    for task in results["tasks"].values():  # BLEU through the same reporting path as the seq2seq model
        assert task["bleu"] is not None and task["final_loss"] is not None and task["target_tokens_seen"] > 0
    assert json.loads((out / "stages" / "1-joint" / "final" / "config.json").read_text())["model_type"] == "llama"
    samples = [json.loads(line) for line in (out / "stages" / "1-joint" / "samples_en-fr.jsonl").read_text().splitlines()]
    assert samples and all(s["source"] not in s["hypothesis"] for s in samples)  # the prompt is not echoed back


# ------------------------------------------------------------------ bad input, before any work
def test_span_corruption_on_a_causal_model_is_refused(tmp_path, tokenizer):
    out = tmp_path / "run"
    code, err = run_cli([CAUSAL, f"output_dir={out}", f"tokenizer.path={tokenizer}",
                         "tasks=[{name: lm-ro, type: lm, source: bible, versions: [Cornilescu], lang: ro, "
                         "objective: span_corruption}]", "method=scalarization", "method_args={total_steps: 2}"])
    assert code == 2
    line = error_line(err)
    for text in ("`tasks.0.objective`", "span_corruption cannot be learned", "decoder-only", "next_token",
                 "model.family: t5"):
        assert text in line, line
    assert not out.exists()


def test_sequences_longer_than_the_positions_are_refused(tmp_path, tokenizer):
    out = tmp_path / "run"
    code, err = run_cli([CAUSAL, f"output_dir={out}", f"tokenizer.path={tokenizer}", "model.max_position_embeddings=48"])
    assert code == 2
    line = error_line(err)
    for text in ("`data.max_source_length + data.max_target_length` = 64", "48 positions", "model.max_position_embeddings"):
        assert text in line, line
    assert not out.exists()


def test_a_causal_checkpoint_with_another_vocabulary_is_refused(tmp_path, tokenizer, tok):
    tiny_llama(len(tok) + 300).save_pretrained(tmp_path / "other")
    code, err = run_cli([CAUSAL, f"output_dir={tmp_path / 'run'}", f"tokenizer.path={tokenizer}",
                         f"model.name_or_path={tmp_path / 'other'}", "model={name_or_path: " + str(tmp_path / "other") + "}"])
    assert code == 2
    assert "embeddings" in error_line(err) and "tokenizer" in error_line(err)
    assert not list((tmp_path / "run").rglob("checkpoint-*"))


def test_a_tokenizer_without_a_pad_token_pads_with_eos_and_says_so_once(tmp_path, tokenizer, caplog):
    from transformers import AutoTokenizer

    from hf_ptjf.data.prepare import prepare_recipe_data
    from hf_ptjf.recipe import load_recipe

    nopad = AutoTokenizer.from_pretrained(tokenizer)
    nopad.pad_token = None
    nopad.save_pretrained(tmp_path / "nopad")
    assert AutoTokenizer.from_pretrained(tmp_path / "nopad").pad_token is None
    cfg = load_recipe(CAUSAL, [f"output_dir={tmp_path / 'run'}", f"tokenizer.path={tmp_path / 'nopad'}"])
    with caplog.at_level(logging.WARNING, logger="hf_ptjf.data.prepare"):
        data = prepare_recipe_data(cfg, tmp_path / "unused")
    assert data.tokenizer.pad_token_id == data.tokenizer.eos_token_id
    assert sum("no pad token" in r.getMessage() for r in caplog.records) == 1
    batch = data.collator([data.tokenized["en-ro"]["train"][i] for i in range(4)])
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()  # padding never carries loss


def test_causal_per_task_training_loss_is_the_training_loss_split_by_task(tmp_path, tok):
    t = causal_trainer(tmp_path, tok, max_steps=6)
    t.train()
    previous: dict = {}
    logs = [h for h in t.state.log_history if "loss" in h]
    for h in logs:  # logging_steps=1: one batch per window; weights: the tokens the loss scored
        tokens = {k: h.get(f"target_tokens_seen_{k}", 0) - previous.get(f"target_tokens_seen_{k}", 0)
                  for k in ("lm-a", "lm-b")}
        previous = h
        mixed = sum(h[f"train_{k}_loss"] * n for k, n in tokens.items() if n) / sum(tokens.values())
        assert mixed == pytest.approx(h["loss"], abs=2e-3), h


def test_plain_packing_attends_across_the_row(tok):
    """`data.packed_attention: row`: the classic packing (an attention mask, no position reset): the second document
    of a row then sees the first, unlike the default per-document attention."""
    first, second = tok(["God said light.", "And there was light over the water."])["input_ids"]
    plain = CausalLMCollator(tok, per_document=False)([{"input_ids": first + second}])
    assert "position_ids" not in plain and plain["attention_mask"].tolist() == [[1] * (len(first) + len(second))]
    model = tiny_llama(len(tok)).eval()
    with torch.no_grad():
        packed = model(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits[0, len(first):]
        alone = model(input_ids=torch.tensor([second])).logits[0]
    assert not torch.allclose(packed, alone, atol=1e-3)
