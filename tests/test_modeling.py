"""hf_ptjf.modeling: arguments, from-scratch / checkpoint builds, untied heads, parameter counts, vocab checks."""

from __future__ import annotations

import time

import pytest
import torch

from hf_ptjf.modeling import (
    ModelArguments,
    build_config,
    build_meta_model,
    build_model,
    check_vocab,
    count_parameters,
)

MT5_XXL = dict(d_model=4096, d_ff=10240, feed_forward_proj="gated-gelu", num_heads=64, d_kv=64, num_layers=24,
               vocab_size=250112, tie_word_embeddings=False)
TINY = dict(num_layers=2, d_model=32, d_ff=64, num_heads=4, vocab_size=100, dropout_rate=0.0)


class FakeTokenizer:
    """Just what build_model/check_vocab read from a tokenizer."""

    def __init__(self, n: int, pad: int = 0, eos: int = 1):
        self.n, self.pad_token_id, self.eos_token_id = n, pad, eos

    def __len__(self) -> int:
        return self.n


def test_mt5_xxl_counts_12_9b_on_meta_fast():
    t0 = time.perf_counter()
    model = build_meta_model(build_config(ModelArguments(**MT5_XXL)))
    n = count_parameters(model)
    assert time.perf_counter() - t0 < 10
    assert all(p.is_meta for p in model.parameters())
    assert n == pytest.approx(12.9e9, rel=0.01)
    assert count_parameters(build_config(ModelArguments(**MT5_XXL))) == n  # config in, same count
    # the untied head is a second 250112 x 4096 matrix; tying drops exactly that
    tied = count_parameters(build_config(ModelArguments(**{**MT5_XXL, "tie_word_embeddings": True})))
    assert n - tied == 250112 * 4096


def test_from_dict_unknown_key_suggests_field():
    with pytest.raises(ValueError, match="d_modle.*Did you mean `d_model`"):
        ModelArguments.from_dict({"d_modle": 512})
    assert ModelArguments.from_dict({"d_model": 256, "num_heads": 4}).resolved_d_kv == 64


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"d_model": 100, "num_heads": 8}, "num_heads"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"feed_forward_proj": "gated-nope"}, "feed_forward_proj"),
        ({"num_layers": 0}, "num_layers"),
        ({"revision": "abc"}, "revision"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelArguments(**kwargs)


def test_build_config_needs_a_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        build_config(ModelArguments())
    cfg = build_config(ModelArguments(vocab_size=10), vocab_size=20, pad_token_id=3, decoder_start_token_id=3)
    assert (cfg.vocab_size, cfg.pad_token_id, cfg.decoder_start_token_id, cfg.num_decoder_layers) == (20, 3, 3, 3)


def test_untied_model_has_its_own_head_and_tied_embeddings():
    model = build_model(ModelArguments(**TINY, tie_word_embeddings=False, feed_forward_proj="gated-gelu"))
    assert model.lm_head.weight is not model.shared.weight
    assert model.encoder.embed_tokens.weight is model.shared.weight
    model.tie_weights()  # a later re-tie (e.g. by resize_token_embeddings) must not re-share the head
    assert model.lm_head.weight is not model.shared.weight
    assert model.config.scale_decoder_outputs is False
    meta = build_meta_model(model.config)
    assert count_parameters(model) == count_parameters(meta)


def test_tied_model_shares_head():
    model = build_model(ModelArguments(**TINY))
    assert model.lm_head.weight is model.shared.weight
    assert model.config.scale_decoder_outputs is True


def test_vocab_and_special_ids_come_from_tokenizer():
    tiny = {k: v for k, v in TINY.items() if k != "vocab_size"}
    model = build_model(ModelArguments(**tiny), tokenizer=FakeTokenizer(77, pad=5, eos=6))
    assert model.config.vocab_size == 77
    assert (model.config.pad_token_id, model.config.eos_token_id, model.config.decoder_start_token_id) == (5, 6, 5)
    with pytest.raises(ValueError, match="vocab_size"):
        build_model(ModelArguments(**tiny))


def test_check_vocab_allows_padding_only():
    model = build_model(ModelArguments(**{**TINY, "vocab_size": 128}))
    check_vocab(model, FakeTokenizer(100))  # 100 rounded up to 128: T5-style padding
    check_vocab(model, FakeTokenizer(128))
    with pytest.raises(ValueError, match="tokenizer has 129 tokens but model .* has 128 embeddings; use the tokenizer"):
        check_vocab(model, FakeTokenizer(129))
    with pytest.raises(ValueError, match="tokenizer has 100 tokens"):  # 100 -> 104, not 128, when padding to 8
        check_vocab(model, FakeTokenizer(100), pad_to_multiple_of=8)


def test_untied_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelArguments(**TINY, tie_word_embeddings=False)).eval()
    model.save_pretrained(tmp_path)
    x = torch.randint(2, 100, (2, 6))
    reloaded = build_model(ModelArguments(name_or_path=str(tmp_path))).eval()
    assert reloaded.lm_head.weight is not reloaded.shared.weight
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=x, labels=x).logits, model(input_ids=x, labels=x).logits)
    with pytest.raises(ValueError, match="tokenizer has 300 tokens"):
        build_model(ModelArguments(name_or_path=str(tmp_path)), tokenizer=FakeTokenizer(300))


def test_untied_head_from_scratch_starts_at_unit_logit_scale():
    import math

    import torch

    from hf_ptjf.modeling import ModelArguments, build_model

    args = ModelArguments(num_layers=1, d_model=256, d_ff=512, num_heads=4, vocab_size=512, dropout_rate=0.0,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    torch.manual_seed(0)
    model = build_model(args)
    assert model.lm_head.weight is not model.shared.weight
    assert model.lm_head.weight.std().item() == pytest.approx(256**-0.5, rel=0.05)
    ids = torch.randint(2, 512, (4, 12))
    loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < 2 * math.log(512)  # near ln(vocab) at init, not the ~sqrt(d_model)-scaled logits of std 1.0
