"""Splits, datasets, dynamic padding and masks, loaders, and the Trainer on them."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from attnlib.data.datasets import (
    Batch,
    TextClassificationDataset,
    TranslationDataset,
    make_loader,
    pad_sequences,
    stratified_split,
)
from attnlib.data.text import WordTokenizer
from attnlib.masks import padding_mask
from attnlib.training import Trainer
from attnlib.transformer import EncoderClassifier, Seq2SeqTransformer


@pytest.fixture
def labelled() -> pd.DataFrame:
    labels = ["a"] * 600 + ["b"] * 300 + ["c"] * 100
    return pd.DataFrame({"id": range(1000), "label": labels})


def test_split_proportions_and_stratification(labelled):
    train, val, test = stratified_split(labelled, fractions=(0.8, 0.1, 0.1), seed=0)
    assert (len(train), len(val), len(test)) == (800, 100, 100)
    for part in (train, val, test):
        share = part["label"].value_counts(normalize=True)
        assert share["a"] == pytest.approx(0.6, abs=0.011)
        assert share["c"] == pytest.approx(0.1, abs=0.011)
    ids = pd.concat([train, val, test])["id"]
    assert sorted(ids) == list(range(1000))  # a partition
    again = stratified_split(labelled, seed=0)
    pd.testing.assert_frame_equal(again[0], train)
    assert not stratified_split(labelled, seed=1)[0]["id"].equals(train["id"])


def test_split_without_labels_and_errors(labelled):
    train, val, test = stratified_split(labelled, label_column=None, fractions=(0.5, 0.25, 0.25))
    assert (len(train), len(val), len(test)) == (500, 250, 250)
    with pytest.raises(ValueError, match="fractions: expected three positive numbers summing"):
        stratified_split(labelled, fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="label_column: expected a column of df"):
        stratified_split(labelled, label_column="y")


def test_pad_sequences():
    out = pad_sequences([[5, 6, 7], [8]], pad_idx=0)
    assert out.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert pad_sequences([[5]], length=4).shape == (1, 4)
    with pytest.raises(ValueError, match=r"length: expected at least the longest sequence \(3\)"):
        pad_sequences([[1, 2, 3]], length=2)
    with pytest.raises(ValueError, match="sequences: expected at least one sequence"):
        pad_sequences([])


TEXTS = ["good film", "not a good film at all", "bad", "very very bad acting here"]


def test_classification_batches_are_padded_per_batch_with_masks():
    tok = WordTokenizer.fit(TEXTS)
    data = TextClassificationDataset(TEXTS, [1, 0, 0, 0], tok)
    loader = make_loader(data, batch_size=2)
    first, second = list(loader)
    assert isinstance(first, Batch)
    assert first.inputs.shape == (2, 6) and second.inputs.shape == (2, 5)  # dynamic padding
    assert first.targets.tolist() == [1, 0]
    assert first.lengths.tolist() == [2, 6]
    assert first.mask.shape == (2, 1, 1, 6) and first.mask.dtype == torch.bool
    assert torch.equal(first.mask, padding_mask(first.inputs, tok.pad_idx))
    assert first.mask[0, 0, 0].tolist() == [True, True, False, False, False, False]


def test_truncation_and_label_count():
    tok = WordTokenizer.fit(TEXTS)
    data = TextClassificationDataset(TEXTS, [1, 0, 0, 0], tok, max_length=3)
    assert max(len(ids) for ids, _ in data) == 3
    with pytest.raises(ValueError, match=r"labels: expected one label per text \(4\), got 3"):
        TextClassificationDataset(TEXTS, [1, 0, 0], tok)


def test_translation_batches():
    src, tgt = WordTokenizer.fit(TEXTS), WordTokenizer.fit(["x y", "y z z"])
    data = TranslationDataset(["good film", "bad"], ["x y", "y z z"], src, tgt, max_length=4)
    batch = next(iter(make_loader(data, batch_size=2)))
    assert batch.inputs.shape == (2, 2)
    assert batch.targets[:, 0].tolist() == [tgt.bos_idx] * 2
    # the long target is cut to 4 tokens and keeps its EOS
    assert batch.targets[1].tolist() == [tgt.bos_idx, *tgt.encode("y z"), tgt.eos_idx]
    assert batch.targets[0, -1] == tgt.eos_idx


def test_shuffled_loader_is_reproducible():
    tok = WordTokenizer.fit(TEXTS)
    data = TextClassificationDataset(TEXTS * 5, list(range(20)), tok)
    order = [b.targets.tolist() for b in make_loader(data, 4, shuffle=True, seed=3)]
    assert order == [b.targets.tolist() for b in make_loader(data, 4, shuffle=True, seed=3)]
    assert order != [b.targets.tolist() for b in make_loader(data, 4, shuffle=True, seed=4)]
    assert sorted(sum(order, [])) == list(range(20))


def test_trainer_accepts_batches():
    torch.manual_seed(0)
    tok = WordTokenizer.fit(TEXTS)
    data = TextClassificationDataset(TEXTS * 8, [1, 0, 0, 0] * 8, tok)
    model = EncoderClassifier(len(tok), 2, d_model=16, nhead=2, num_layers=1, dropout=0.0)
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), 1e-2), verbose=False)
    history = trainer.fit(make_loader(data, 8, shuffle=True), epochs=15)
    assert history[-1]["accuracy"] == 1.0

    s2s = Seq2SeqTransformer(len(tok), len(tok), d_model=16, nhead=2, dim_feedforward=32)
    pairs = TranslationDataset(TEXTS, TEXTS, tok, tok)
    trainer = Trainer(s2s, torch.optim.Adam(s2s.parameters(), 1e-3), verbose=False)
    row = trainer.evaluate(make_loader(pairs, 2))
    assert row["loss"] > 0 and 0 <= row["accuracy"] <= 1


def test_label_encoding_round_trip_matches_the_corpus_labels():
    """scikit-learn's LabelEncoder (what the tutorials use) gives the ids of SENTIMENT_LABELS."""
    from sklearn.preprocessing import LabelEncoder

    from attnlib.data.synthetic import SENTIMENT_LABELS, sentiment_corpus

    labels = sentiment_corpus(60, seed=2)["label"]
    encoder = LabelEncoder().fit(labels)
    assert tuple(encoder.classes_) == SENTIMENT_LABELS
    ids = encoder.transform(labels)
    assert ids.tolist() == [SENTIMENT_LABELS.index(y) for y in labels]
    assert encoder.inverse_transform(ids).tolist() == labels.tolist()
