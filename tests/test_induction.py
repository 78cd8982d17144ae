"""Induction heads: the repeated-segment batches say where the repeat is; the circuit
scores find a hand-made previous-token head, prefix-matching head and copying head;
the ablation touches the heads it names; the trained model is cached, reproducible
and leaves the random number generators alone."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from attnlib import pretrained
from attnlib.interpret.circuits import (
    ablate_head,
    attention_maps,
    copying_score,
    in_context_loss,
    phase_change_step,
    prefix_matching_score,
    previous_token_score,
)
from attnlib.pretrained import induction_transformer
from attnlib.tasks import repeated_segment_batch
from attnlib.transformer import DecoderLM

SMALL = {"steps": 20, "d_model": 16, "nhead": 2, "log_every": 10}


def batch(n=64, length=32, vocab=20, seed=0, **kwargs):
    return repeated_segment_batch(
        n, length, vocab, generator=torch.Generator().manual_seed(seed), **kwargs
    )


def test_the_second_copy_repeats_the_first_and_offsets_vary():
    b = batch(256, min_segment=3, max_segment=10)
    assert b.tokens.shape == b.predictable.shape == b.source.shape == (256, 32)
    for i in range(256):
        f, s, n = int(b.first[i]), int(b.second[i]), int(b.segment[i])
        assert 3 <= n <= 10 and f + n <= s and s + n <= 32
        assert b.tokens[i, s : s + n].tolist() == b.tokens[i, f : f + n].tolist()
        assert b.predictable[i].nonzero().flatten().tolist() == list(range(s + 1, s + n))
        assert b.first_copy[i].nonzero().flatten().tolist() == list(range(f + 1, f + n))
        for j in range(s + 1, s + n):  # the source holds the same token, one after the prefix
            k = int(b.source[i, j])
            assert b.tokens[i, k] == b.tokens[i, j] and b.tokens[i, k - 1] == b.tokens[i, j - 1]
    assert (b.source[~b.predictable] == -1).all()
    # nothing a model could memorise: lengths and both offsets take many values
    assert len(set(b.segment.tolist())) == 8 and len(set(b.second.tolist())) > 10
    assert len(set(b.first.tolist())) > 10
    assert int(b.tokens.max()) < 20 and int(b.tokens.min()) >= 0


def test_bad_segment_bounds_are_named():
    with pytest.raises(ValueError, match="min_segment"):
        batch(min_segment=1)
    with pytest.raises(ValueError, match="max_segment"):
        batch(max_segment=17)


def _hand_made_weights(b, kind):
    """Attention weights ``(B, 1, L, L)`` of an ideal head of one kind."""
    n, length = b.tokens.shape
    w = torch.zeros(n, 1, length, length)
    w[:, 0, 0, 0] = 1
    for i in range(1, length):
        w[:, 0, i, i - 1 if kind == "previous" else i] = 1
    if kind == "induction":
        rows, targets = b.predictable.nonzero(as_tuple=True)
        w[rows, 0, targets - 1] = 0
        w[rows, 0, targets - 1, b.source[rows, targets]] = 1
    return w


def test_scores_find_ideal_heads_and_not_others():
    b = batch()
    previous, induction = _hand_made_weights(b, "previous"), _hand_made_weights(b, "induction")
    assert previous_token_score(previous).item() == pytest.approx(1.0)
    assert previous_token_score(induction).item() < 0.2
    assert prefix_matching_score(induction, b).item() == pytest.approx(1.0)
    assert prefix_matching_score(previous, b).item() < 0.2
    uniform = torch.tril(torch.ones(32, 32))
    uniform = (uniform / uniform.sum(-1, keepdim=True)).expand(64, 1, 32, 32)
    assert prefix_matching_score(uniform, b).item() < 0.2


def _copying_model():
    """A one-layer, two-head model whose head 0 copies (OV = identity) and head 1
    anti-copies (OV = -identity)."""
    torch.manual_seed(0)
    model = DecoderLM(12, 8, 2, 1, dropout=0.0, max_len=8, attention_only=True).eval()
    attn = model.blocks.layers[0].self_attn
    with torch.no_grad():
        model.embedding.weight.copy_(torch.randn(12, 8))
        attn.v_proj.weight.copy_(torch.eye(8))
        attn.out_proj.weight.copy_(torch.diag(torch.tensor([1.0] * 4 + [-1.0] * 4)))
        attn.v_proj.bias.zero_()
        attn.out_proj.bias.zero_()
        for norm in (model.blocks.layers[0].norm1, model.blocks.norm):
            norm.weight.fill_(1.0)
            norm.bias.zero_()
    return model


def test_copying_score_tells_a_copying_head_from_an_anti_copying_one():
    # head 0 writes dimensions 0-3 of the embedding back, head 1 minus dimensions 4-7
    scores = copying_score(_copying_model())
    assert scores.shape == (1, 2)
    assert scores[0, 0] > 0.8 and scores[0, 1] < 0.2


def test_ablating_one_head_changes_only_that_head():
    torch.manual_seed(0)
    model = DecoderLM(20, 16, 2, 2, dropout=0.0, max_len=32, attention_only=True).eval()
    b = batch(8)
    before = attention_maps(model, b.tokens)
    with ablate_head(model, 1, 0):
        after = attention_maps(model, b.tokens)
        loss = in_context_loss(model, b)
    # (B, layers, H, L, L): layer 0 and head 1 of layer 1 are untouched
    assert torch.equal(before[:, 0], after[:, 0]) and torch.equal(before[:, 1, 1], after[:, 1, 1])
    assert not torch.equal(before[:, 1, 0], after[:, 1, 0])
    causal = torch.tril(torch.ones(32, 32))
    uniform = (causal / causal.sum(-1, keepdim=True)).expand(8, 32, 32)
    torch.testing.assert_close(after[:, 1, 0], uniform)
    assert model.blocks.layers[1].self_attn.weights_hook is None  # restored
    assert set(loss) == {"second", "first", "in_context"}
    assert loss["in_context"] == pytest.approx(loss["second"] - loss["first"])
    with ablate_head(model, 0, 1, mode="zero"):
        assert (attention_maps(model, b.tokens)[:, 0, 1] == 0).all()


def test_phase_change_step_is_where_half_the_drop_is_covered():
    steps = [0, 10, 20, 30, 40, 50]
    assert phase_change_step(steps, [0.0, -0.1, -0.2, -1.8, -2.0, -2.0]) == 30
    assert phase_change_step(steps, [0.0, -1.5, -1.8, -1.9, -2.0, -2.0]) == 10
    assert phase_change_step(steps, [0.0, 0.1, 0.0, 0.1, 0.0, 0.2]) == 50  # no drop
    with pytest.raises(ValueError, match="fraction"):
        phase_change_step(steps, steps, fraction=1.0)


def test_copying_score_on_tokens_reads_the_residual_stream():
    torch.manual_seed(3)
    model = DecoderLM(12, 8, 2, 2, dropout=0.0, positions="rotary", attention_only=True).eval()
    every_token = torch.arange(12)[None]  # each token once: layer 0 reads the embedding only
    static, on_tokens = copying_score(model), copying_score(model, every_token)
    torch.testing.assert_close(on_tokens[0], static[0])
    # layer 1 reads layer 0's output as well: another score ...
    assert not torch.allclose(on_tokens[1], static[1])
    # ... unless layer 0 writes nothing
    with torch.no_grad():
        model.blocks.layers[0].self_attn.out_proj.weight.zero_()
        model.blocks.layers[0].self_attn.out_proj.bias.zero_()
    torch.testing.assert_close(copying_score(model, every_token), copying_score(model))


def test_ablating_several_heads_of_a_layer_together():
    torch.manual_seed(0)
    model = DecoderLM(20, 16, 4, 2, dropout=0.0, max_len=32, attention_only=True).eval()
    b = batch(8)
    before = attention_maps(model, b.tokens)
    with ablate_head(model, 1, [0, 2], mode="zero"):
        after = attention_maps(model, b.tokens)
    assert (after[:, 1, [0, 2]] == 0).all()
    assert torch.equal(after[:, 1, [1, 3]], before[:, 1, [1, 3]])
    with pytest.raises(ValueError, match=r"head: expected heads in 0..3 of layer 1, got \[0, 4\]"):
        with ablate_head(model, 1, [0, 4]):
            pass
    with pytest.raises(RuntimeError, match="already has a weights_hook"):
        with ablate_head(model, 1, 0), ablate_head(model, 1, 1):
            pass
    assert model.blocks.layers[1].self_attn.weights_hook is None


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ATTNLIB_SEED", raising=False)
    pretrained._induction.cache_clear()
    yield tmp_path / "cache"
    pretrained._induction.cache_clear()


def test_induction_transformer_is_cached_reproducible_and_keeps_the_rngs(cache):
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expected = torch.rand(1), np.random.rand(), random.random()
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    trained = induction_transformer(2, seed=0, **SMALL)
    assert (torch.rand(1), np.random.rand(), random.random()) == expected
    assert induction_transformer(2, seed=0, **SMALL) is trained  # in memory
    assert trained.history["step"].tolist() == [0, 10, 20]
    assert not trained.model.training and trained.model.attention_only and trained.model.rotary
    assert set(trained.history) == {
        "step",
        "second_loss",
        "first_loss",
        "in_context_loss",
        "previous_token",
        "prefix_matching",
    }
    q0, q1 = (layer.self_attn.q_proj.weight for layer in trained.model.blocks.layers)
    assert not torch.equal(q0, q1)  # the layers started apart
    # the loss fell during training: the history records a model that learns
    assert trained.history["second_loss"].iloc[-1] < trained.history["second_loss"].iloc[0]
    (entry,) = cache.glob("induction-*.pt")
    assert entry.with_suffix(".sha256").exists()
    pretrained._induction.cache_clear()  # as a new process
    loaded = induction_transformer(2, seed=0, **SMALL)
    assert loaded is not trained and loaded.train_seconds == trained.train_seconds
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, trained.model.state_dict()[k])
    assert loaded.history.equals(trained.history)
    # another seed, another model; a damaged entry is retrained
    other = induction_transformer(2, seed=1, **SMALL)
    assert not torch.equal(other.model.embedding.weight, trained.model.embedding.weight)
    entry.write_bytes(entry.read_bytes()[:100])
    pretrained._induction.cache_clear()
    with pytest.warns(UserWarning, match="is not used and will be retrained"):
        again = induction_transformer(2, seed=0, **SMALL)
    assert torch.equal(again.model.embedding.weight, trained.model.embedding.weight)
