"""Small trained models for the tutorials, trained here on generated data
(nothing is downloaded) and kept in memory for the rest of the session.

:func:`sentiment_classifier` is the Transformer classifier of chapter 4,
trained with the same recipe; the interpretability chapter studies it.
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .data.datasets import TextClassificationDataset, make_loader, stratified_split
from .data.synthetic import SENTIMENT_LABELS, sentiment_corpus
from .data.text import WordTokenizer
from .training import Trainer, seed_everything, warmup_cosine_schedule
from .transformer import EncoderClassifier

__all__ = ["SentimentModel", "sentiment_classifier"]


@dataclass
class SentimentModel:
    """A trained classifier with everything needed to use and evaluate it.

    Attributes
    ----------
    model : attnlib.transformer.EncoderClassifier
        In evaluation mode.
    tokenizer : attnlib.data.text.WordTokenizer
    classes : list of str
        Class names in id order.
    train, validation, test : pandas.DataFrame
        The splits of :func:`attnlib.data.synthetic.sentiment_corpus` it
        was trained and evaluated on (with the corpus's ground-truth columns).
    test_accuracy : float
    train_seconds : float
    """

    model: EncoderClassifier
    tokenizer: WordTokenizer
    classes: list[str]
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    test_accuracy: float
    train_seconds: float

    def encode(self, text: str) -> torch.Tensor:
        """Token ids ``(1, L)`` of one text."""
        return torch.tensor([self.tokenizer.encode(text)])


def sentiment_classifier(
    *,
    seed: int = 0,
    num_reviews: int = 4000,
    d_model: int = 48,
    num_layers: int = 2,
    nhead: int = 4,
    epochs: int = 10,
) -> SentimentModel:
    """Train (once per session: the result is cached) a 3-class sentiment
    classifier on :func:`~attnlib.data.synthetic.sentiment_corpus`.

    The recipe of the chapter-4 tutorial: 80/10/10 stratified split, a word
    tokenizer fitted on the training split (words seen at least twice), a
    pre-norm :class:`~attnlib.transformer.EncoderClassifier` with mean
    pooling, feed-forward width ``2 * d_model``, no dropout and 64
    positions, AdamW (peak learning rate 8e-3, weight decay 0.01) warming up
    over half an epoch then decaying along a cosine, batches of 64, for
    ``epochs`` epochs, keeping the weights of the best validation epoch. It
    takes about 10-20 s on one CPU core.

    The global random number generators are left as they were, so a
    tutorial's own randomness does not depend on whether the model came from
    the cache.

    Returns
    -------
    SentimentModel
    """
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        return _train_sentiment(seed, num_reviews, d_model, num_layers, nhead, epochs)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


@functools.cache
def _train_sentiment(
    seed: int, num_reviews: int, d_model: int, num_layers: int, nhead: int, epochs: int
) -> SentimentModel:
    seed_everything(seed)
    corpus = sentiment_corpus(num_reviews, seed=seed)
    train, val, test = stratified_split(corpus, seed=seed)
    tokenizer = WordTokenizer.fit(train["text"], min_freq=2)
    classes = list(SENTIMENT_LABELS)
    index = {c: i for i, c in enumerate(classes)}

    def dataset(df: pd.DataFrame) -> TextClassificationDataset:
        return TextClassificationDataset(df["text"], df["label"].map(index), tokenizer)

    train_loader = make_loader(dataset(train), 64, shuffle=True, seed=seed)
    val_loader = make_loader(dataset(val), 256)
    model = EncoderClassifier(
        len(tokenizer),
        len(classes),
        d_model=d_model,
        nhead=nhead,
        num_layers=num_layers,
        dim_feedforward=2 * d_model,
        dropout=0.0,
        pad_idx=tokenizer.pad_idx,
        norm_first=True,
        max_len=64,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-3, weight_decay=0.01)
    steps = epochs * len(train_loader)
    scheduler = warmup_cosine_schedule(optimizer, len(train_loader) // 2, steps)
    trainer = Trainer(
        model, optimizer, scheduler, patience=3, device="cpu", verbose=False, progress=False
    )
    start = time.perf_counter()
    trainer.fit(train_loader, val_loader, epochs=epochs)
    seconds = time.perf_counter() - start
    accuracy = trainer.evaluate(make_loader(dataset(test), 256))["accuracy"]
    model.eval()
    return SentimentModel(model, tokenizer, classes, train, val, test, accuracy, seconds)
