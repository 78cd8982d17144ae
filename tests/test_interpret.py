"""attnlib.interpret: capture, statistics, rollout/flow, relevance and faithfulness."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest
import torch

from attnlib.attention import AdditiveAttention
from attnlib.data.text import WordTokenizer
from attnlib.interpret import (
    AttentionMaps,
    attention_flow,
    attention_rollout,
    attention_stats,
    capture_attention,
    evidence_scores,
    evidence_token_positions,
    explanation_table,
    gradient_weighted_attention,
    gradient_x_input,
    head_stats,
    intervene_attention,
    leave_one_out,
    permutation_test,
    plot_attention_received,
    plot_evidence_scores,
    plot_head_across_layers,
    plot_kinds,
    plot_layer,
    plot_token_highlights,
    pooled_relevance,
    rank_agreement,
    uniform_attention_test,
    visualize_attention_weights,
    word_token_positions,
)
from attnlib.seq2seq import Seq2Seq
from attnlib.transformer import DecoderLM, EncoderClassifier, Seq2SeqTransformer

TEXTS = ["the plot was not good, but the acting was great.", "a dull film.", "good music!"]


@pytest.fixture
def tok():
    return WordTokenizer.fit(TEXTS)


@pytest.fixture
def clf(tok):
    torch.manual_seed(0)
    return EncoderClassifier(len(tok), 3, d_model=16, nhead=2, num_layers=3, dropout=0.0).eval()


# -- capture ----------------------------------------------------------------------------


def test_capture_encoder_classifier(clf, tok):
    ids = torch.tensor([tok.encode(TEXTS[1]) + [0]])  # one padding position
    maps = capture_attention(clf, ids, tokenizer=tok)
    assert maps.kinds == ["encoder"]
    assert maps["encoder"].shape == (3, 2, 5, 5)
    assert maps.labels("encoder")[1] == ["a", "dull", "film", ".", "<pad>"]
    assert maps.mask("encoder")[:, -1].tolist() == [False] * 5
    assert maps["encoder"][..., -1].abs().max() == 0  # padding gets no attention
    rows = maps["encoder"].sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-6)
    assert clf.training is False


def test_capture_seq2seq_transformer_kinds_and_labels():
    torch.manual_seed(0)
    model = Seq2SeqTransformer(20, 20, d_model=16, nhead=2, num_encoder_layers=2,
                               num_decoder_layers=3, dim_feedforward=32)  # fmt: skip
    src, tgt = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[2, 9, 10]])
    maps = capture_attention(model, (src, tgt), labels=list("abcd"), target_labels=list("xyz"))
    assert maps.kinds == ["encoder", "decoder", "cross"]
    assert maps["encoder"].shape == (2, 2, 4, 4)
    assert maps["decoder"].shape == (3, 2, 3, 3)
    assert maps["cross"].shape == (3, 2, 3, 4)
    assert maps.labels("cross") == (list("xyz"), list("abcd"))
    assert torch.equal(maps.mask("decoder"), torch.ones(3, 3, dtype=torch.bool).tril())
    assert maps["decoder"].triu(1).abs().max() == 0  # causal
    assert model.training  # restored


def test_capture_recurrent_and_decoder_only():
    torch.manual_seed(0)
    gru = Seq2Seq(20, 20, 8, 16, attention=AdditiveAttention(16))
    maps = capture_attention(gru, (torch.tensor([[5, 6, 7]]), torch.tensor([[2, 9, 10, 11]])))
    assert maps.kinds == ["cross"] and maps["cross"].shape == (1, 1, 4, 3)
    lm = DecoderLM(20, d_model=16, nhead=2, num_layers=2)
    maps = capture_attention(lm, torch.tensor([[5, 6, 7]]))
    assert maps.kinds == ["decoder"] and maps["decoder"].shape == (2, 2, 3, 3)


def test_capture_errors(clf):
    with pytest.raises(ValueError, match=r"inputs: expected one example \(batch size 1\)"):
        capture_attention(clf, torch.tensor([[5, 6], [7, 8]]))
    with pytest.raises(TypeError, match=r"inputs: expected \(src, tgt_in\)"):
        capture_attention(Seq2SeqTransformer(10, 10, d_model=8, nhead=2), torch.tensor([[5]]))
    maps = capture_attention(clf, torch.tensor([[5, 6]]))
    with pytest.raises(ValueError, match="kind: expected one of 'encoder', got 'cross'"):
        maps["cross"]
    with pytest.raises(IndexError, match=r"head: expected an index in \[0, 2\), got 5"):
        maps.head("encoder", 0, 5)
    with pytest.raises(ValueError, match=r"expected 2 and 2 labels, got 1 and 2"):
        AttentionMaps({"encoder": torch.rand(1, 1, 2, 2)}, {"encoder": ["a"]}, {"encoder": "ab"})


transformers = pytest.importorskip("transformers")


@pytest.mark.filterwarnings("ignore")
def test_capture_hugging_face_encoder_and_seq2seq():
    torch.manual_seed(0)
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
        )  # fmt: skip
    )
    before = bert.config._attn_implementation
    inputs = {"input_ids": torch.tensor([[1, 5, 6, 7, 0]]),
              "attention_mask": torch.tensor([[1, 1, 1, 1, 0]])}  # fmt: skip
    maps = capture_attention(bert, inputs, labels=["[CLS]", "a", "b", "c", "[PAD]"])
    assert maps.kinds == ["encoder"] and maps["encoder"].shape == (2, 2, 5, 5)
    assert maps.mask("encoder")[0].tolist() == [True] * 4 + [False]
    assert bert.config._attn_implementation == before  # switched back
    # the maps are the model's own: eager attention reproduces them
    bert.set_attn_implementation("eager")
    bert.eval()  # a model built from a config starts in training mode (dropout)
    out = bert(**inputs, output_attentions=True)
    assert torch.allclose(maps["encoder"][1], out.attentions[1][0], atol=1e-6)

    bart = transformers.BartForConditionalGeneration(
        transformers.BartConfig(
            vocab_size=50,
            d_model=16,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=32,
        )  # fmt: skip
    )
    maps = capture_attention(
        bart,
        {"input_ids": torch.tensor([[0, 5, 6, 2]]), "decoder_input_ids": torch.tensor([[2, 5]])},
    )
    assert maps.kinds == ["encoder", "decoder", "cross"]
    assert maps["cross"].shape == (1, 2, 2, 4) and maps["decoder"].shape == (1, 2, 2, 2)
    with pytest.raises(TypeError, match="inputs: expected the tokenizer's output"):
        capture_attention(bart, torch.tensor([[1, 2]]))


# -- statistics -------------------------------------------------------------------------


def _maps(w, mask=None, tokens=("a", "b", "c")):
    w = torch.as_tensor(w, dtype=torch.float32)
    return AttentionMaps({"encoder": w}, {"encoder": tokens}, {"encoder": tokens},
                         None if mask is None else {"encoder": mask})  # fmt: skip


def test_attention_stats_by_hand():
    a = [[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 0.0]]
    mask = torch.tensor([True, True, False])[None, :].expand(3, 3).clone()
    mask[2] = False  # a padding query
    table = attention_stats(_maps([[a]], mask))
    assert list(table["token"]) == ["a", "b"]  # the padding key is left out
    # key "a" receives 0.5 and 0.2 from the two queries that may attend (not the padding one)
    assert table.loc[0, "mean"] == pytest.approx(0.35)
    assert table.loc[0, "max"] == pytest.approx(0.5) and table.loc[1, "min"] == pytest.approx(0.5)
    assert table["count"].tolist() == [2, 2]
    values = torch.tensor([0.5, 0.8], dtype=torch.float64)
    assert table.loc[1, "std"] == pytest.approx(float(values.std(unbiased=False)))


def test_head_stats_by_hand():
    eye = torch.eye(3)
    prev = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    uniform = torch.full((3, 3), 1 / 3)
    maps = _maps(torch.stack([eye, prev, uniform])[None], tokens=("<bos>", "x", "y"))
    table = head_stats(maps)
    assert table.loc[(0, 0), "diagonal"] == 1 and table.loc[(0, 0), "entropy"] == 0
    assert table.loc[(0, 1), "previous"] == 1 and table.loc[(0, 1), "distance"] == pytest.approx(
        2 / 3
    )
    assert table.loc[(0, 2), "entropy"] == pytest.approx(math.log(3))
    assert table.loc[(0, 2), "special"] == pytest.approx(1 / 3)  # "<bos>"
    assert table.loc[(0, 1), "special"] == pytest.approx(2 / 3)
    assert table.loc[(0, 2), "max"] == pytest.approx(1 / 3)


# -- rollout and flow -------------------------------------------------------------------


def test_rollout_by_hand():
    a1 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    a2 = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    w = torch.stack([a1, a2])[:, None]  # (layers 2, heads 1, 2, 2)
    h1 = torch.tensor([[1.0, 0.0], [0.25, 0.75]])  # 0.5 A + 0.5 I
    h2 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    expected = h2 @ h1
    assert torch.allclose(attention_rollout(w), expected.double())
    assert torch.allclose(attention_rollout(w, residual=False), (a2 @ a1).double())
    # head fusion: max of two heads, then normalised
    two = torch.stack([a1, a1.flip(-1)])[None]  # (1 layer, 2 heads)
    fused = torch.maximum(a1, a1.flip(-1))
    fused = 0.5 * fused + 0.5 * torch.eye(2)
    assert torch.allclose(attention_rollout(two, head_fusion="max"),
                          (fused / fused.sum(-1, keepdim=True)).double())  # fmt: skip
    with pytest.raises(ValueError, match="head_fusion: expected one of 'mean', 'max', 'min'"):
        attention_rollout(w, head_fusion="sum")
    with pytest.raises(ValueError, match="weights: expected self-attention maps"):
        attention_rollout(torch.rand(1, 1, 2, 3))


def test_flow_equals_rollout_for_one_layer_and_is_bounded():
    torch.manual_seed(0)
    one = torch.softmax(torch.randn(1, 2, 5, 5), -1)
    assert torch.allclose(attention_flow(one), attention_rollout(one), atol=1e-9)
    deep = torch.softmax(torch.randn(3, 2, 5, 5), -1)
    flow, roll = attention_flow(deep), attention_rollout(deep)
    assert flow.shape == (5, 5) and (flow >= -1e-12).all()
    # the flow into an output node is at most 1 (its row of capacities sums to 1)
    assert (flow <= 1 + 1e-9).all()
    # flow and rollout rank inputs similarly on random attention
    assert rank_agreement(flow.mean(0), roll.mean(0))["spearman"] > 0.5
    with pytest.raises(ValueError, match="at most max_tokens=4"):
        attention_flow(deep, max_tokens=4)


# -- relevance and faithfulness -------------------------------------------------------


def test_gradient_weighted_attention_by_hand(clf, tok):
    ids = torch.tensor([tok.encode(TEXTS[0])])
    rel = gradient_weighted_attention(clf, ids)
    n = ids.shape[1]
    assert rel.shape == (n, n) and (rel >= 0).all()
    assert torch.all(torch.diagonal(rel) >= 1)  # R starts from the identity
    # recompute the rule by hand from recorded attention and its gradient
    from attnlib.capture import record_attention

    with torch.enable_grad(), record_attention(clf, detach=False) as record:
        logits = clf(ids)
        maps = [record[n_] for n_ in record.names()]
        grads = torch.autograd.grad(logits[0, logits[0].argmax()], maps)
    r = torch.eye(n, dtype=torch.float64)
    for a, g in zip(maps, grads, strict=True):
        r = r + (g * a).clamp_min(0).mean(1)[0].double() @ r
    assert torch.allclose(rel, r.detach())


def test_gradient_x_input_and_leave_one_out(clf, tok):
    ids = torch.tensor([tok.encode(TEXTS[2]) + [0, 0]])
    gxi = gradient_x_input(clf, ids)
    loo = leave_one_out(clf, ids)
    assert gxi.shape == loo.shape == (ids.shape[1],)
    assert loo[-2:].tolist() == [0.0, 0.0]
    # leave-one-out by hand for the first token
    with torch.no_grad():
        full = torch.softmax(clf(ids), -1)[0]
        c = int(full.argmax())
        without = torch.softmax(clf(ids[:, 1:3]), -1)[0, c]
    assert loo[0] == pytest.approx(float(full[c] - without), abs=1e-6)
    assert all(p.grad is None for p in clf.parameters())  # no gradient left behind


def test_pooled_relevance():
    rel = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    mask = torch.tensor([True, True, False])
    assert pooled_relevance(rel, mask=mask).tolist() == [0.75, 0.25, 0.0]
    assert pooled_relevance(rel, pooling="first").tolist() == [1.0, 0.0, 0.0]


def test_rank_agreement_by_hand():
    r = rank_agreement([1, 2, 3, 4], [10, 20, 30, 40], k=2)
    assert r == {"kendall": pytest.approx(1.0), "spearman": pytest.approx(1.0), "top_k": 1.0}
    r = rank_agreement([1, 2, 3, 4], [4, 3, 2, 1], k=1)
    assert r["kendall"] == pytest.approx(-1.0) and r["top_k"] == 0.0
    assert math.isnan(rank_agreement([1, 1, 1], [1, 2, 3])["kendall"])
    with pytest.raises(ValueError, match="b: expected 3 scores like a, got 2"):
        rank_agreement([1, 2, 3], [1, 2])


def test_explanation_table(clf, tok):
    table = explanation_table(clf, tok, TEXTS)
    assert len(table) == 3 * 7
    assert set(table["reference"]) == {"gradient_x_input", "leave_one_out"}
    assert table[["kendall", "spearman"]].abs().max().max() <= 1 + 1e-9


def test_interventions(clf, tok):
    ids = torch.tensor([tok.encode(TEXTS[0])])
    with torch.no_grad():
        base = clf(ids)
        with intervene_attention(clf, lambda w: w):
            same = clf(ids)
        with intervene_attention(clf, lambda w: torch.full_like(w, 1.0 / w.shape[-1])):
            uniform = clf(ids)
    assert torch.allclose(base, same, atol=1e-6)
    assert not torch.allclose(base, uniform, atol=1e-4)
    assert all(m.weights_hook is None for m in clf.modules() if hasattr(m, "weights_hook"))
    table = permutation_test(clf, ids, permutations=5)
    assert len(table) == 5 and table["tvd"].between(0, 1).all() and table["tvd"].max() > 0
    assert permutation_test(clf, ids, permutations=5, seed=0).equals(table)
    batch = (ids, torch.tensor([0]))
    result = uniform_attention_test(clf, [batch])
    assert set(result) == {"accuracy", "uniform_accuracy", "agreement"}


def test_evidence_scores_and_positions(tok):
    assert evidence_scores([0.1, 0.7, 0.9, 0.0], [1, 2]) == {
        "precision": 1.0, "mass": pytest.approx(1.6 / 1.7), "chance": 0.5
    }  # fmt: skip
    assert evidence_scores([0.9, 0.1, 0.8, 0.0], [1, 2])["precision"] == 0.5
    with pytest.raises(ValueError, match=r"evidence: expected positions in \[0, 4\)"):
        evidence_scores([1, 2, 3, 4], [4])
    text = TEXTS[0]  # "the plot was not good, but the acting was great."
    spans = word_token_positions(text, tok)
    assert spans[4] == [4, 5]  # "good," -> "good" ","
    assert evidence_token_positions(text, [3, 4], tok) == [3, 4]
    assert evidence_token_positions(text, [9], tok) == [10]  # "great." -> "great" "."


# -- plots ------------------------------------------------------------------------------


def test_plots_return_what_they_drew(clf, tok):
    ax = visualize_attention_weights(TEXTS[1], clf, tok, layer=-1, head=1)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "dull", "film", "."]
    assert "layer 2, head 1" in ax.get_title()
    maps = capture_attention(clf, torch.tensor([tok.encode(TEXTS[1])]), tokenizer=tok)
    fig = plot_layer(maps, 0)
    assert len([a for a in fig.axes if a.images]) == 2
    fig = plot_head_across_layers(maps, 1)
    assert [a.get_title() for a in fig.axes if a.images] == ["layer 0", "layer 1", "layer 2"]
    assert plot_kinds(maps).axes[0].get_title().startswith("encoder")
    ax = plot_attention_received(maps)
    assert len(ax.patches) == 4
    ax = plot_token_highlights(["a", "dull", "film"], torch.tensor([0.1, 0.9, 0.2]))
    assert [t.get_text() for t in ax.texts] == ["a", "dull", "film"]
    with pytest.raises(ValueError, match=r"scores: expected one score per token \(3\)"):
        plot_token_highlights(["a", "b", "c"], [1.0, 2.0])
    plt.close("all")


def test_plot_evidence_scores_draws_both_bars_and_chance():
    import pandas as pd

    table = pd.DataFrame(
        {"precision": [0.8, 0.4], "mass": [0.5, 0.6], "chance": [0.2, 0.2], "other": [1, 2]},
        index=["rollout", "raw attention, layer 1"],
    )
    ax = plot_evidence_scores(table, title="evidence", rotation=25)
    heights = [p.get_height() for p in ax.patches]
    assert heights == [0.8, 0.4, 0.5, 0.6]  # precision bars, then mass bars
    (line,) = ax.lines
    assert line.get_ydata()[0] == 0.2 and line.get_label() == "chance (0.20)"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(table.index)
    assert ax.get_xticklabels()[0].get_rotation() == 25 and ax.get_title() == "evidence"
    with pytest.raises(ValueError, match=r"missing \['mass'\]"):
        plot_evidence_scores(table.drop(columns="mass"))
    plt.close("all")


def test_flow_closed_form_for_two_layers_equals_networkx():
    import networkx as nx

    torch.manual_seed(1)
    two = torch.softmax(torch.randn(2, 2, 6, 6), -1)
    flow = attention_flow(two)
    a = 0.5 * two.double().mean(1) + 0.5 * torch.eye(6, dtype=torch.float64)
    a = a / a.sum(-1, keepdim=True)
    graph = nx.DiGraph()
    for layer in range(2):
        for i in range(6):
            for j in range(6):
                graph.add_edge((layer, j), (layer + 1, i), capacity=float(a[layer, i, j]))
    for i, j in [(0, 0), (2, 5), (5, 1)]:
        assert flow[i, j] == pytest.approx(nx.maximum_flow_value(graph, (0, j), (2, i)), abs=1e-12)
    assert (flow >= attention_rollout(two) - 1e-12).all()  # sum of mins >= sum of products


def test_shuffle_keeps_each_row_a_permutation_of_its_allowed_weights():
    from attnlib.interpret.faithfulness import _shuffle_allowed

    w = torch.softmax(torch.randn(2, 3, 4, 5), -1)
    w[..., -1] = 0  # a masked key
    w = w / w.sum(-1, keepdim=True)
    out = _shuffle_allowed(w, torch.Generator().manual_seed(0))
    assert (out[..., -1] == 0).all()
    assert torch.allclose(out.sort(-1).values, w.sort(-1).values)
    assert not torch.allclose(out, w)


def test_padding_does_not_change_the_statistics(clf):
    plain = capture_attention(clf, torch.tensor([[5, 6, 7]]))
    padded = capture_attention(clf, torch.tensor([[5, 6, 7, 0, 0]]))
    assert not padded.mask("encoder")[3:].any()  # padding queries are masked rows
    a, b = head_stats(plain), head_stats(padded)
    cols = ["entropy", "distance", "previous", "diagonal", "max"]
    assert ((a[cols] - b[cols]).abs().max().max()) < 1e-5
    sa, sb = attention_stats(plain), attention_stats(padded)
    assert sb["count"].tolist() == sa["count"].tolist()
    assert ((sa["mean"] - sb["mean"]).abs().max()) < 1e-5
