"""The tutorials' trained sentiment classifier: cached in memory and on disk,
reproducible, leaves the RNGs alone; a corrupt or stale cache entry is retrained.
The algorithmic Transformer: reproducible, leaves the RNGs alone, learns its task."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from attnlib import pretrained
from attnlib.decoding import greedy_decode
from attnlib.pretrained import algorithmic_transformer, sentiment_classifier
from attnlib.tasks import algorithmic_batch, exact_match

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


def test_algorithmic_transformer_is_reproducible_and_keeps_the_random_state(monkeypatch):
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    model = algorithmic_transformer("copy", steps=5, batch_size=8)
    assert torch.rand(1) == expected
    assert not model.training and len(model.transformer.encoder.layers) == 1
    again = algorithmic_transformer("copy", steps=5, batch_size=8, seed=0)  # the default seed
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    monkeypatch.setenv("ATTNLIB_SEED", "1")  # the default follows $ATTNLIB_SEED
    other = algorithmic_transformer("copy", steps=5, batch_size=8)
    assert not torch.equal(other.src_embed.embedding.weight, model.src_embed.embedding.weight)
    src = torch.tensor([[3, 4, 5]])
    assert model(src, torch.tensor([[1, 3]])).shape == (1, 2, 13)
    with pytest.raises(ValueError, match="task: expected one of"):
        algorithmic_transformer("shuffle", steps=1)


def test_algorithmic_transformer_learns_to_reverse():
    """300 steps, one layer, sequences of 3-6 symbols: the reverser of the interpretability
    chapter, which decodes more than 0.9 of new sequences exactly on seeds 0-2."""
    model = algorithmic_transformer("reverse", max_len=6, seed=0)
    src, tgt, _ = algorithmic_batch(
        "reverse", 200, 3, 6, generator=torch.Generator().manual_seed(7)
    )
    assert exact_match(greedy_decode(model, src, max_new_tokens=7), tgt) > 0.9
