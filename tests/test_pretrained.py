"""The tutorials' trained sentiment classifier: cached in memory and on disk,
reproducible, leaves the RNGs alone; a corrupt or stale cache entry is retrained."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from attnlib import pretrained
from attnlib.pretrained import sentiment_classifier

SMALL = {"num_reviews": 300, "epochs": 1, "d_model": 16}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test gets an empty disk cache and an empty memory cache."""
    monkeypatch.setenv("ATTNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ATTNLIB_SEED", raising=False)
    pretrained._sentiment.cache_clear()
    yield tmp_path / "cache"
    pretrained._sentiment.cache_clear()


def entry(cache_folder):
    (path,) = cache_folder.glob("sentiment-*.pt")
    return path


def weights(model):
    return {k: v.clone() for k, v in model.model.state_dict().items()}


def test_sentiment_classifier_is_cached_and_keeps_the_random_state():
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expected = torch.rand(1), np.random.rand(), random.random()
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    trained = sentiment_classifier(**SMALL)
    assert (torch.rand(1), np.random.rand(), random.random()) == expected
    assert sentiment_classifier(**SMALL) is trained  # cached in memory
    assert trained.classes == ["negative", "neutral", "positive"]
    assert len(trained.train) == 240 and not trained.model.training
    logits = trained.model(trained.encode("the plot was good."))
    assert logits.shape == (1, 3)
    assert 0.0 <= trained.test_accuracy <= 1.0


def test_a_new_process_loads_the_same_model_from_disk(cache):
    trained = sentiment_classifier(**SMALL)
    before = weights(trained)
    assert entry(cache).with_suffix(".sha256").exists()
    pretrained._sentiment.cache_clear()  # as a new process would start
    loaded = sentiment_classifier(**SMALL)
    assert loaded is not trained
    assert all(torch.equal(before[k], v) for k, v in weights(loaded).items())
    assert loaded.test_accuracy == trained.test_accuracy
    assert loaded.train_seconds == trained.train_seconds  # not retrained


def test_the_default_seed_follows_attnlib_seed(monkeypatch):
    default = weights(sentiment_classifier(**SMALL))
    monkeypatch.setenv("ATTNLIB_SEED", "1")
    other = sentiment_classifier(**SMALL)
    assert not torch.equal(other.model.head.weight, default["head.weight"])
    explicit = sentiment_classifier(seed=1, **SMALL)
    assert explicit is other


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "drop the checksum"])
def test_a_corrupt_entry_is_retrained_not_used(cache, damage):
    trained = sentiment_classifier(**SMALL)
    path = entry(cache)
    data = bytearray(path.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[:100]))
    else:
        path.with_suffix(".sha256").unlink()
    pretrained._sentiment.cache_clear()
    with pytest.warns(UserWarning, match="is not used and will be retrained"):
        retrained = sentiment_classifier(**SMALL)
    # the same recipe trains the same model again, and the entry is whole again
    assert all(torch.equal(weights(trained)[k], v) for k, v in weights(retrained).items())
    assert entry(cache).read_bytes() and entry(cache).with_suffix(".sha256").exists()


def test_an_entry_whose_weights_do_not_reproduce_its_accuracy_is_retrained(cache):
    """A checksum that matches bytes written by someone else (a stale or foreign
    entry under this key) is caught by the recorded test accuracy."""
    import hashlib
    import io

    sentiment_classifier(**SMALL)
    path = entry(cache)
    saved = torch.load(path, weights_only=True)
    saved["state_dict"] = {k: torch.zeros_like(v) for k, v in saved["state_dict"].items()}
    saved["test_accuracy"] = 2.0  # impossible: no weights reproduce it
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    path.write_bytes(buffer.getvalue())
    path.with_suffix(".sha256").write_text(hashlib.sha256(buffer.getvalue()).hexdigest())
    pretrained._sentiment.cache_clear()
    with pytest.warns(UserWarning, match="test accuracy"):
        retrained = sentiment_classifier(**SMALL)
    assert retrained.test_accuracy <= 1.0


def test_another_recipe_is_another_entry(cache):
    sentiment_classifier(**SMALL)
    sentiment_classifier(**{**SMALL, "d_model": 8})
    assert len(list(cache.glob("sentiment-*.pt"))) == 2


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLIB_CACHE_DIR", str(tmp_path / "moved" / "here"))
    assert pretrained.cache_dir() == tmp_path / "moved" / "here"
    assert pretrained.cache_dir().is_dir()
    monkeypatch.delenv("ATTNLIB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pretrained.cache_dir() == tmp_path / "xdg" / "attnlib"
