"""predict and translate on raw strings: unknown words, over-long input, both model kinds."""

from __future__ import annotations

import pytest
import torch

from attnlib.attention import AdditiveAttention
from attnlib.data.text import SubwordTokenizer, WordTokenizer
from attnlib.inference import (
    encode_texts,
    evaluate_translation,
    model_max_length,
    predict,
    translate,
)
from attnlib.metrics import corpus_bleu
from attnlib.seq2seq import Seq2Seq
from attnlib.transformer import EncoderClassifier, Seq2SeqTransformer

TEXTS = ["a good film", "not a good film", "a bad film", "not a bad film"]


@pytest.fixture
def tok():
    return WordTokenizer.fit(TEXTS)


@pytest.fixture
def classifier(tok):
    torch.manual_seed(0)
    return EncoderClassifier(len(tok), 2, d_model=16, nhead=2, num_layers=1, max_len=8).eval()


def test_predict_table(classifier, tok):
    out = predict(classifier, tok, TEXTS + ["a superb film"], classes=["neg", "pos"])
    assert list(out.columns) == [
        "text", "label", "confidence", "p(neg)", "p(pos)", "unknown", "truncated"
    ]  # fmt: skip
    assert out["unknown"].tolist() == ["", "", "", "", "superb"]
    assert set(out["label"]) <= {"neg", "pos"}
    assert ((out["p(neg)"] + out["p(pos)"]) - 1).abs().max() < 1e-6
    # the same numbers as the model on the padded batch
    ids = torch.tensor([tok.encode(TEXTS[1])])
    with torch.no_grad():
        p = torch.softmax(classifier(ids), -1)[0]
    assert out.loc[1, "p(pos)"] == pytest.approx(float(p[1]), abs=1e-6)
    # batching does not change the answer
    single = predict(classifier, tok, TEXTS[1], classes=["neg", "pos"])
    assert single.loc[0, "p(pos)"] == pytest.approx(out.loc[1, "p(pos)"], abs=1e-6)
    one_by_one = predict(classifier, tok, TEXTS, classes=["neg", "pos"], batch_size=1)
    assert (one_by_one["p(pos)"] - out["p(pos)"][:4]).abs().max() < 1e-6


def test_predict_is_deterministic_in_train_mode(classifier, tok):
    classifier.train()
    a = predict(classifier, tok, TEXTS)
    b = predict(classifier, tok, TEXTS)
    assert a.equals(b) and classifier.training  # eval during predict, mode restored


def test_over_long_input(classifier, tok):
    long = " ".join(["good"] * 20)
    assert model_max_length(classifier) == 8
    with pytest.warns(UserWarning, match="1 text"):
        out = predict(classifier, tok, [long, "a good film"])
    assert out["truncated"].tolist() == [True, False]
    with pytest.raises(ValueError, match=r"texts\[0\]: expected at most 8 tokens .* got 20"):
        predict(classifier, tok, [long], overflow="error")
    with pytest.raises(ValueError, match="overflow: expected one of 'truncate', 'error'"):
        predict(classifier, tok, [long], overflow="drop")


def test_predict_errors(classifier, tok):
    with pytest.raises(ValueError, match=r"classes: expected 2 names \(the model's outputs\)"):
        predict(classifier, tok, TEXTS, classes=["a", "b", "c"])
    with pytest.raises(TypeError, match="texts: expected strings, got int"):
        predict(classifier, tok, [1])
    with pytest.raises(ValueError, match="texts: expected at least one text"):
        predict(classifier, tok, [])


def test_encode_texts_with_subwords():
    sub = SubwordTokenizer.fit(TEXTS * 5, vocab_size=40)
    with pytest.warns(UserWarning, match="truncated"):
        ids, unknown, cut = encode_texts(["a good film zz"], sub, max_length=4, add_bos=True)
    assert ids[0][0] == sub.bos_idx and len(ids[0]) == 4 and cut == [True]
    assert unknown == [["<unk>", "<unk>"]]


@pytest.mark.parametrize("kind", ["transformer", "gru"])
def test_translate_learns_a_tiny_mapping(kind, tok):
    """Train on 'reverse the words' for a few hundred steps; translate must then be right."""
    torch.manual_seed(0)
    src_texts = TEXTS
    tgt_texts = [" ".join(reversed(t.split())) for t in TEXTS]
    tgt_tok = WordTokenizer.fit(tgt_texts)
    if kind == "transformer":
        model = Seq2SeqTransformer(
            len(tok), len(tgt_tok), d_model=32, nhead=2, dim_feedforward=64, dropout=0.0
        )
    else:
        model = Seq2Seq(len(tok), len(tgt_tok), 16, 32, attention=AdditiveAttention(32))
    src = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(tok.encode(t)) for t in src_texts], batch_first=True
    )
    tgt = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(tgt_tok.encode(t, add_bos=True, add_eos=True)) for t in tgt_texts],
        batch_first=True,
    )
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        logits = model(src, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1), ignore_index=0
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert translate(model, tok, tgt_tok, src_texts) == tgt_texts
    assert translate(model, tok, tgt_tok, src_texts, beam_size=3) == tgt_texts
    assert model.training  # mode restored
    table, outputs = evaluate_translation(model, tok, tgt_tok, src_texts, tgt_texts, (1, 3))
    assert list(table.index) == ["greedy", "beam search, k=3"] and outputs["greedy"] == tgt_texts
    assert (table["exact match"] == 1.0).all() and (table["BLEU"] > 99.9).all()
    wrong = [tgt_texts[1]] + tgt_texts[1:]  # the first reference replaced by another one
    table, _ = evaluate_translation(model, tok, tgt_tok, src_texts, wrong, (1,))
    assert table.loc["greedy", "exact match"] == (len(TEXTS) - 1) / len(TEXTS)
    assert table.loc["greedy", "BLEU"] == pytest.approx(corpus_bleu(tgt_texts, wrong))
    out = translate(model, tok, tgt_tok, "not a superb film")  # unknown word: still an output
    assert isinstance(out, list) and len(out) == 1 and "<pad>" not in out[0]


def test_translate_rejects_a_classifier(classifier, tok):
    with pytest.raises(TypeError, match="model: expected a Seq2SeqTransformer or a Seq2Seq"):
        translate(classifier, tok, tok, TEXTS)
