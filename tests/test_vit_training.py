"""Training image classifiers: ``train_image_classifier`` makes any images -> logits model
learn a trivially separable toy set, reproducibly, leaving the global RNGs alone; the cached
``digits_vit`` of chapter 9 is cached on disk and in memory, reproducible, and retrained when
its entry is damaged."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from attnlib import pretrained
from attnlib.data.images import DigitSplits, LabelledImages
from attnlib.pretrained import digits_vit, train_image_classifier
from attnlib.vit import VisionTransformer


def toy_split(n: int, seed: int) -> LabelledImages:
    """4 x 4 images: class 0 has ink in the top half, class 1 in the bottom half."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = 0.1 * torch.rand(n, 1, 4, 4, generator=g)
    images[labels == 0, :, :2] += 0.8
    images[labels == 1, :, 2:] += 0.8
    return LabelledImages(images, labels)


TOY = DigitSplits(toy_split(128, 1), toy_split(64, 2), toy_split(64, 3))


def tiny_vit() -> VisionTransformer:
    return VisionTransformer(4, 2, 2, d_model=8, nhead=2, num_layers=1, dim_feedforward=16)


def rng_draws():
    return torch.rand(1).item(), np.random.rand(), random.random()


def seed_all(value: int) -> None:
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


@pytest.mark.parametrize(
    "build",
    [tiny_vit, lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 2))],
    ids=["vit", "linear"],
)
def test_train_image_classifier_learns_a_separable_set_and_keeps_the_rngs(build):
    torch.manual_seed(0)
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seed_all(123)
    expected = rng_draws()
    seed_all(123)
    result = train_image_classifier(model, TOY, epochs=8, lr=1e-2, batch_size=16, seed=5)
    assert rng_draws() == expected  # the global generators are as they were
    assert len(result.history) == 8
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(result.history[0])
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.test_accuracy >= 0.95 and result.history[-1]["val_accuracy"] >= 0.95
    assert result.train_seconds > 0 and not model.training
    # warm-up over the first epoch (8 batches), then a cosine down to 0 at the last batch
    assert result.history[0]["lr"] == pytest.approx(1e-2)
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_train_image_classifier_is_reproducible_and_follows_the_seed():
    def run(seed):
        torch.manual_seed(0)  # the same initial weights every time
        model = tiny_vit()
        torch.manual_seed(99)  # the global state must not matter
        train_image_classifier(model, TOY, epochs=2, lr=1e-2, batch_size=16, seed=seed)
        return model.state_dict()

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # another batch order


SMALL = dict(d_model=16, nhead=2, num_layers=1, dim_feedforward=32, epochs=3, lr=1e-2)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ATTNLIB_SEED", raising=False)
    pretrained._digits_vit.cache_clear()
    yield tmp_path / "cache"
    pretrained._digits_vit.cache_clear()


def test_digits_vit_is_cached_reproducible_and_keeps_the_rngs(cache):
    seed_all(123)
    expected = rng_draws()
    seed_all(123)
    trained = digits_vit(seed=0, **SMALL)
    assert rng_draws() == expected
    assert digits_vit(seed=0, **SMALL) is trained  # in memory
    model = trained.model
    assert not model.training and model.grid_size == (4, 4) and model.cls_token.shape == (1, 1, 16)
    assert len(trained.history) == 3 and len(trained.splits.train) == 1297
    with torch.no_grad():
        predictions = model(trained.splits.test.images).argmax(-1)
    accuracy = (predictions == trained.splits.test.labels).double().mean().item()
    assert trained.test_accuracy == pytest.approx(accuracy)
    assert trained.test_accuracy > 0.25  # three epochs learn something (chance: 0.1)
    (entry,) = cache.glob("digits-vit-*.pt")
    assert entry.with_suffix(".sha256").exists()
    pretrained._digits_vit.cache_clear()  # as a new process
    loaded = digits_vit(seed=0, **SMALL)
    assert loaded is not trained and loaded.train_seconds == trained.train_seconds
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, trained.model.state_dict()[k])
    assert loaded.history == trained.history and loaded.test_accuracy == trained.test_accuracy
    assert torch.equal(loaded.splits.test.images, trained.splits.test.images)
    # another seed: another split and other weights; a damaged entry is retrained
    other = digits_vit(seed=1, **SMALL)
    assert not torch.equal(other.splits.test.labels, trained.splits.test.labels)
    assert not torch.equal(other.model.cls_token, trained.model.cls_token)
    entry.write_bytes(entry.read_bytes()[:100])
    pretrained._digits_vit.cache_clear()
    with pytest.warns(UserWarning, match="is not used and will be retrained"):
        again = digits_vit(seed=0, **SMALL)
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, trained.model.state_dict()[k])
