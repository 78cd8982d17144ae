"""The tutorials' trained sentiment classifier: cached, reproducible, leaves the RNGs alone."""

from __future__ import annotations

import random

import numpy as np
import torch

from attnlib.pretrained import sentiment_classifier


def test_sentiment_classifier_is_cached_and_keeps_the_random_state():
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expected = torch.rand(1), np.random.rand(), random.random()
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    small = {"num_reviews": 300, "epochs": 1, "d_model": 16}
    trained = sentiment_classifier(**small)
    assert (torch.rand(1), np.random.rand(), random.random()) == expected
    assert sentiment_classifier(**small) is trained  # cached
    assert trained.classes == ["negative", "neutral", "positive"]
    assert len(trained.train) == 240 and not trained.model.training
    logits = trained.model(trained.encode("the plot was good."))
    assert logits.shape == (1, 3)
    assert 0.0 <= trained.test_accuracy <= 1.0
