"""Classification metrics, BLEU and alignment scores against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from attnlib.metrics import (
    alignment_error_rate,
    alignment_matrix,
    alignment_score,
    classification_scores,
    confusion_frame,
    corpus_bleu,
    hard_alignment,
    parse_alignment,
)


def test_classification_scores_by_hand():
    y_true = ["pos", "pos", "pos", "neg", "neg", "neu"]
    y_pred = ["pos", "pos", "neg", "neg", "pos", "neg"]
    scores = classification_scores(y_true, y_pred)
    # pos: P 2/3, R 2/3; neg: P 1/3, R 1/2; neu: P 0 (never predicted), R 0
    p = (2 / 3 + 1 / 3 + 0) / 3
    r = (2 / 3 + 1 / 2 + 0) / 3
    f1 = (2 / 3 + 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2) + 0) / 3
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["precision"] == pytest.approx(p)
    assert scores["recall"] == pytest.approx(r)
    assert scores["f1"] == pytest.approx(f1)
    assert classification_scores([1, 0, 1], [1, 0, 1]) == {
        "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"y_pred: expected one prediction per label \(3\)"):
        classification_scores([1, 0, 1], [1, 0])


def test_confusion_frame():
    table = confusion_frame(["a", "a", "b", "c"], ["a", "b", "b", "a"], labels=["a", "b", "c"])
    assert table.loc["a"].tolist() == [1, 1, 0]
    assert table.loc["c", "a"] == 1 and table.to_numpy().sum() == 4
    assert table.index.name == "true" and table.columns.name == "predicted"
    assert list(confusion_frame([2, 1], [1, 1]).index) == [1, 2]


def test_corpus_bleu():
    assert corpus_bleu(["lo kano grande vida"], ["lo kano grande vida"]) == pytest.approx(100.0)
    assert corpus_bleu(["a b c d"], ["e f g h"]) == pytest.approx(0.0)
    # one hypothesis, 4 tokens, reference 4 tokens, brevity penalty 1:
    hyp, ref = "the cat sat down", "the cat sat up"
    # unigrams 3/4, bigrams 2/3, trigrams 1/2, 4-grams 0/1 -> 'exp' smoothing: 1/(2*1)
    expected = 100 * math.exp(sum(math.log(p) for p in (3 / 4, 2 / 3, 1 / 2, 1 / 2)) / 4)
    assert corpus_bleu([hyp], [ref]) == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match=r"references: expected one reference per hypothesis"):
        corpus_bleu(["a"], ["a", "b"])
    with pytest.raises(TypeError, match="expected lists of strings, got a str"):
        corpus_bleu("a", "a")


def test_parse_alignment_and_matrix():
    pairs = parse_alignment("0-0 2-1 1-2")
    assert pairs == [(0, 0), (2, 1), (1, 2)]
    gold = alignment_matrix(pairs, src_len=3, tgt_len=3)
    assert gold.tolist() == [[True, False, False], [False, False, True], [False, True, False]]
    shifted = alignment_matrix(pairs, 4, 5, offset=(1, 1))
    assert shifted[1, 1] and shifted[2, 3] and shifted.sum() == 3
    with pytest.raises(ValueError, match="text: expected pairs like '3-1'"):
        parse_alignment("0-0 1:2")
    with pytest.raises(ValueError, match=r"alignment: pair \(5, 0\)"):
        alignment_matrix([(5, 0)], 3, 3)


def test_alignment_score_by_hand():
    gold = alignment_matrix([(0, 0), (2, 1), (1, 2)], 3, 4)  # row 3 (EOS) unaligned
    weights = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]])
    # argmax: row0 -> 0 (hit), row1 -> 2 (hit), row2 -> 0 (miss); row3 not counted
    assert alignment_score(weights, gold) == pytest.approx(2 / 3)
    assert alignment_score(weights, gold, method="mass") == pytest.approx((0.7 + 0.6 + 0.4) / 3)
    uniform = torch.full((4, 3), 1 / 3)
    assert alignment_score(uniform, gold, method="mass") == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"gold: expected the shape of weights \(4, 3\)"):
        alignment_score(weights, gold[:3])
    with pytest.raises(ValueError, match="method: expected one of 'argmax', 'mass'"):
        alignment_score(weights, gold, method="max")


def test_alignment_error_rate_by_hand():
    sure = alignment_matrix([(0, 0), (1, 1)], 3, 3)
    possible = alignment_matrix([(0, 0), (1, 1), (2, 2)], 3, 3)
    predicted = alignment_matrix([(0, 0), (2, 2), (0, 1)], 3, 3)
    # |A|=3, |S|=2, |A&S|=1, |A&P|=2 -> 1 - 3/5
    assert alignment_error_rate(predicted, sure, possible) == pytest.approx(1 - 3 / 5)
    assert alignment_error_rate(sure, sure) == 0.0
    weights = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0]])
    assert hard_alignment(weights).tolist() == torch.eye(3, dtype=torch.bool).tolist()


def test_alignment_score_batched_and_hard_alignment_rows():
    gold = alignment_matrix([(0, 0), (1, 1)], 2, 3)  # row 2 (EOS) has no gold link
    weights = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    batched_w, batched_g = torch.stack([weights, weights.flip(-1)]), torch.stack([gold, gold])
    # sentence 1: both right; sentence 2 (flipped): both wrong -> 2 of 4
    assert alignment_score(batched_w, batched_g) == pytest.approx(0.5)
    assert alignment_error_rate(hard_alignment(weights), gold) == pytest.approx(1 - 4 / 5)
    assert alignment_error_rate(hard_alignment(weights, gold.any(-1)), gold) == 0.0
    with pytest.raises(ValueError, match=r"rows: expected shape \(3,\)"):
        hard_alignment(weights, torch.ones(2, dtype=torch.bool))
