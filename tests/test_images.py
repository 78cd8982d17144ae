"""attnlib.data.images: scikit-learn's digits split (stratified, disjoint, scaled) and the cue
images (the cue where cue_patch says, balanced labels independent of the distractors,
reproducible from the generator)."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from attnlib.data.images import (
    CUE_PATTERNS,
    cue_images,
    digit_images,
    digits,
    render_cue_images,
)


def _keys(images: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in images.flatten(1)}


def test_digits_split_sizes_values_and_dtypes():
    data = digits(seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (1297, 250, 250)
    for part in (data.train, data.val, data.test):
        assert part.images.shape[1:] == (1, 8, 8) and part.images.dtype == torch.float32
        assert part.labels.dtype == torch.int64
        assert part.images.min() >= 0 and part.images.max() <= 1
    assert data.train.images.max() == 1.0  # 16 / 16: scaled, not clipped
    reference = load_digits()
    everything = torch.cat([data.train.images, data.val.images, data.test.images])
    assert everything.mul(16).sum() == float(reference.images.sum())


def test_digits_splits_are_disjoint_and_stratified():
    data = digits(seed=3)
    # the 1797 images contain a few exact duplicates: compare row indices through the pixels
    # and labels of the whole set instead of the pixels alone
    reference = digit_images()
    index = {}
    for i, (image, label) in enumerate(zip(reference.images, reference.labels, strict=True)):
        index.setdefault((image.numpy().tobytes(), int(label)), []).append(i)
    counts = {}
    for part in (data.train, data.val, data.test):
        for image, label in zip(part.images, part.labels, strict=True):
            key = (image.numpy().tobytes(), int(label))
            counts[key] = counts.get(key, 0) + 1
    assert all(counts[key] == len(rows) for key, rows in index.items())  # each image once
    assert sum(counts.values()) == 1797
    whole = torch.bincount(reference.labels, minlength=10).double() / 1797
    for part in (data.val, data.test, data.train):
        share = torch.bincount(part.labels, minlength=10).double() / len(part)
        assert (share - whole).abs().max() < 1 / len(part) + 1e-12  # within one image a class


def test_digits_depend_on_the_seed_only():
    a, b, c = digits(seed=1), digits(seed=1), digits(seed=2)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.val.labels, b.val.labels)
    assert not torch.equal(a.test.images, c.test.images)


def test_digits_errors_name_the_argument():
    with pytest.raises(ValueError, match="val_size: expected a positive integer, got 0"):
        digits(val_size=0)
    with pytest.raises(ValueError, match="val_size, test_size: expected together fewer"):
        digits(val_size=900, test_size=900)


def test_cue_is_where_cue_patch_says():
    data = cue_images(200, generator=torch.Generator().manual_seed(0))
    assert data.images.shape == (200, 1, 16, 16) and data.labels.shape == (200,)
    assert data.images.min() >= 0 and data.images.max() <= 1
    for i in range(200):
        row, col = divmod(int(data.cue_patch[i]), 4)
        patch = data.images[i, 0, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4]
        assert torch.equal(patch, CUE_PATTERNS[data.labels[i]])
        # the patch lies in the announced quadrant: rows 0-1 / 2-3, columns 0-1 / 2-3
        assert int(data.quadrant[i]) == (row // 2) * 2 + col // 2
    # every patch of every quadrant is used
    assert set(data.cue_patch.tolist()) == set(range(16))
    assert set(data.quadrant.tolist()) == {0, 1, 2, 3}


def test_distractors_are_the_digits_of_digit_index():
    pool = digit_images().images
    data = cue_images(50, generator=torch.Generator().manual_seed(1))
    corners = ((0, 0), (0, 8), (8, 0), (8, 8))
    for i in range(50):
        for q, (r, c) in enumerate(corners):
            expected = pool[data.digit_index[i, q], 0].clone()
            if int(data.quadrant[i]) == q:  # the cue overwrites one 4 x 4 patch
                row, col = divmod(int(data.cue_patch[i]), 4)
                expected[4 * row - r : 4 * row - r + 4, 4 * col - c : 4 * col - c + 4] = (
                    CUE_PATTERNS[data.labels[i]]
                )
            assert torch.equal(data.images[i, 0, r : r + 8, c : c + 8], expected)


def test_labels_are_balanced_and_independent_of_the_digits():
    data = cue_images(401, generator=torch.Generator().manual_seed(2))
    assert data.labels.sum() in (200, 201)
    # the same distractors and place with the other cue: only the label and the cue change,
    # the ink does not (brightness cannot tell the kinds apart)
    pool = digit_images().images
    flipped = render_cue_images(pool, data.digit_index, data.cue_patch, 1 - data.labels)
    changed = (flipped != data.images).flatten(1)  # (n, 256)
    cue_mask = torch.zeros(401, 16, 16, dtype=torch.bool)
    for i in range(401):
        row, col = divmod(int(data.cue_patch[i]), 4)
        cue_mask[i, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] = True
    assert changed.any(1).all() and not (changed & ~cue_mask.flatten(1)).any()
    torch.testing.assert_close(flipped.sum((1, 2, 3)), data.images.sum((1, 2, 3)))
    # and over a large sample the digits' classes are spread alike under both labels
    big = cue_images(4000, generator=torch.Generator().manual_seed(3))
    classes = digit_images().labels[big.digit_index]  # (n, 4)
    for label in (0, 1):
        share = torch.bincount(classes[big.labels == label].flatten(), minlength=10) / 8000
        assert (share - 0.1).abs().max() < 0.02


def test_cue_images_are_reproducible_from_the_generator():
    a = cue_images(30, generator=torch.Generator().manual_seed(7))
    b = cue_images(30, generator=torch.Generator().manual_seed(7))
    c = cue_images(30, generator=torch.Generator().manual_seed(8))
    for field in ("images", "labels", "cue_patch", "quadrant", "digit_index"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.images, c.images)
    torch.manual_seed(123)  # the global state plays no part
    assert torch.equal(cue_images(30, generator=torch.Generator().manual_seed(7)).images, a.images)


def test_cue_images_from_a_given_pool():
    pool = digits(seed=0).test.images
    data = cue_images(20, generator=torch.Generator().manual_seed(0), digits=pool)
    assert data.digit_index.max() < len(pool)
    assert _keys(pool[data.digit_index[:, 0]]) <= _keys(pool)


def test_cue_errors_name_the_argument():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="n: expected a positive integer, got 0"):
        cue_images(0, generator=g)
    with pytest.raises(TypeError, match="generator: expected a torch.Generator, got int"):
        cue_images(3, generator=0)
    with pytest.raises(ValueError, match=r"digits: expected images of shape \(n, 1, 8, 8\)"):
        cue_images(3, generator=g, digits=torch.zeros(5, 1, 16, 16))
    pool = torch.zeros(3, 1, 8, 8)
    with pytest.raises(ValueError, match=r"cue_patch: expected values in \[0, 16\), got"):
        render_cue_images(pool, torch.zeros(1, 4, dtype=torch.long), torch.tensor([16]),
            torch.tensor([0]))  # fmt: skip
    with pytest.raises(ValueError, match=r"expected shapes \(n, 4\), \(n,\), \(n,\)"):
        render_cue_images(pool, torch.zeros(2, 4, dtype=torch.long), torch.tensor([1]),
            torch.tensor([0]))  # fmt: skip
