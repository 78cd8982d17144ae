"""Small image data sets for the Vision Transformer chapter; nothing is downloaded.

- :func:`digits`: scikit-learn's 1797 handwritten digits (8 x 8 grey images,
  shipped inside the package), scaled to [0, 1] and split into stratified
  train, validation and test sets;
- :func:`cue_images`: 16 x 16 canvases of four distractor digits in which a
  small cue (a hollow square or a plus) decides the label, with the patch that
  holds it: the ground truth of *where a model should look*.

Shapes: images ``(n, 1, H, W)`` (one channel, PyTorch's layout), labels ``(n,)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from .._checks import check_positive_int, check_rank, check_tensor, shape_str

__all__ = [
    "CUE_KINDS",
    "CUE_PATTERNS",
    "CueImages",
    "DigitSplits",
    "LabelledImages",
    "cue_images",
    "digit_images",
    "digits",
    "render_cue_images",
]


@dataclass(frozen=True)
class LabelledImages:
    """Images and their labels.

    Shape
    -----
    - images: ``(n, 1, H, W)`` float in [0, 1]; labels: ``(n,)`` int64
    """

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class DigitSplits:
    """The train, validation and test sets of :func:`digits`."""

    train: LabelledImages
    val: LabelledImages
    test: LabelledImages


@lru_cache(maxsize=1)
def _load_digits() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.as_tensor(data.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8)
    return images, torch.as_tensor(data.target, dtype=torch.int64)


def digit_images() -> LabelledImages:
    """All 1797 of scikit-learn's digits (Alpaydin and Kaynak's UCI set), as
    float images in [0, 1] (the 0..16 grey levels divided by 16), in the
    package's order; a fresh copy on every call.

    Shape
    -----
    - images: ``(1797, 1, 8, 8)``; labels: ``(1797,)``, 0..9
    """
    images, labels = _load_digits()
    return LabelledImages(images.clone(), labels.clone())


def digits(*, seed: int = 0, val_size: int = 250, test_size: int = 250) -> DigitSplits:
    """scikit-learn's digits split into train, validation and test sets.

    Each split keeps the class proportions of the whole set (scikit-learn's
    ``train_test_split`` with ``stratify``); the test set is cut first, then
    the validation set from the rest. The split depends on ``seed`` only
    (``attnlib.data`` sits below :mod:`attnlib.training`, so pass
    ``base_seed()`` yourself to follow ``$ATTNLIB_SEED``).

    Parameters
    ----------
    seed : int
    val_size, test_size : int
        Number of images (default 250 and 250: 1297 remain for training).

    Returns
    -------
    DigitSplits
        ``train``, ``val``, ``test``: :class:`LabelledImages`.

    Shape
    -----
    - images: ``(n, 1, 8, 8)`` float32 in [0, 1]; labels: ``(n,)`` int64
    """
    from sklearn.model_selection import train_test_split

    images, labels = _load_digits()
    check_positive_int(val_size, "val_size")
    check_positive_int(test_size, "test_size")
    if val_size + test_size >= len(labels) - 10:
        raise ValueError(
            f"val_size, test_size: expected together fewer than {len(labels) - 10} of the "
            f"{len(labels)} images, got {val_size} + {test_size}"
        )
    index = torch.arange(len(labels)).numpy()
    rest, test = train_test_split(
        index, test_size=test_size, stratify=labels.numpy(), random_state=seed
    )
    train, val = train_test_split(
        rest, test_size=val_size, stratify=labels.numpy()[rest], random_state=seed
    )

    def part(rows) -> LabelledImages:
        rows = torch.as_tensor(rows)
        return LabelledImages(images[rows].clone(), labels[rows].clone())

    return DigitSplits(part(train), part(val), part(test))


#: The names of the two cue kinds; a cue image's label is the index.
CUE_KINDS = ("square", "plus")

#: The two 4 x 4 cues, a hollow square and a plus two pixels wide, with the
#: same ink, 12 pixels each; brightness alone cannot tell them apart.
CUE_PATTERNS = torch.tensor(
    [
        [[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]],
        [[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 0]],
    ],
    dtype=torch.float32,
)

_CANVAS, _DIGIT, _PATCH = 16, 8, 4  # pixels
_GRID = _CANVAS // _PATCH  # 4 x 4 patches


@dataclass(frozen=True)
class CueImages:
    """Images of :func:`cue_images` and their ground truth.

    Attributes
    ----------
    images : Tensor
        ``(n, 1, 16, 16)`` in [0, 1].
    labels : Tensor
        ``(n,)``: the kind of cue, an index into :data:`CUE_KINDS`.
    cue_patch : Tensor
        ``(n,)``: the patch holding the cue, ``row * 4 + col`` on the 4 x 4
        grid of 4 x 4 patches (row-major, the order of
        :class:`~attnlib.vit.PatchEmbedding` with ``patch_size=4``).
    quadrant : Tensor
        ``(n,)``: the quadrant holding the cue, 0 top left, 1 top right,
        2 bottom left, 3 bottom right.
    digit_index : Tensor
        ``(n, 4)``: the distractor digit of each quadrant, a row of the
        ``digits`` images the set was drawn from.
    """

    images: Tensor
    labels: Tensor
    cue_patch: Tensor
    quadrant: Tensor
    digit_index: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


def _check_digit_pool(digits: Tensor) -> Tensor:
    check_rank(digits, "digits", (4,), "(n, 1, 8, 8) digit images")
    if tuple(digits.shape[1:]) != (1, _DIGIT, _DIGIT) or digits.shape[0] == 0:
        raise ValueError(
            f"digits: expected images of shape (n, 1, 8, 8) with n >= 1, "
            f"got {shape_str(digits.shape)}"
        )
    return digits


def render_cue_images(
    digits: Tensor, digit_index: Tensor, cue_patch: Tensor, labels: Tensor
) -> Tensor:
    """Draw cue images: four distractor digits, one per quadrant, and a cue that
    overwrites the 4 x 4 patch ``cue_patch`` with the pattern of its label.

    :func:`cue_images` draws the choices at random and calls this; call it
    yourself for counterfactuals (the same distractors with the other cue,
    or the cue elsewhere).

    Parameters
    ----------
    digits : Tensor
        The distractor pool ``(m, 1, 8, 8)``, values in [0, 1].
    digit_index : Tensor
        ``(n, 4)`` rows of ``digits``: top left, top right, bottom left, bottom right.
    cue_patch : Tensor
        ``(n,)`` patch indices in 0..15 (row-major, 4 x 4 patches).
    labels : Tensor
        ``(n,)`` cue kinds in 0..1 (:data:`CUE_KINDS`).

    Returns
    -------
    Tensor
        ``(n, 1, 16, 16)``, in the dtype of ``digits``.
    """
    _check_digit_pool(digits)
    for name, value, shape in (
        ("digit_index", digit_index, "(n, 4)"),
        ("cue_patch", cue_patch, "(n,)"),
        ("labels", labels, "(n,)"),
    ):
        check_tensor(value, name)
        if value.is_floating_point():
            raise TypeError(f"{name}: expected an integer tensor {shape}, got {value.dtype}")
    n = cue_patch.shape[0] if cue_patch.dim() == 1 else -1
    if cue_patch.dim() != 1 or labels.shape != (n,) or digit_index.shape != (n, 4):
        raise ValueError(
            f"digit_index, cue_patch, labels: expected shapes (n, 4), (n,), (n,), got "
            f"{shape_str(digit_index.shape)}, {shape_str(cue_patch.shape)}, "
            f"{shape_str(labels.shape)}"
        )
    for name, value, high in (
        ("digit_index", digit_index, digits.shape[0]),
        ("cue_patch", cue_patch, _GRID * _GRID),
        ("labels", labels, len(CUE_KINDS)),
    ):
        if n and (value.min() < 0 or value.max() >= high):
            raise ValueError(
                f"{name}: expected values in [0, {high}), got "
                f"[{int(value.min())}, {int(value.max())}]"
            )
    picked = digits[digit_index.long()]  # (n, 4, 1, 8, 8)
    top = torch.cat([picked[:, 0], picked[:, 1]], dim=-1)  # (n, 1, 8, 16)
    bottom = torch.cat([picked[:, 2], picked[:, 3]], dim=-1)  # (n, 1, 8, 16)
    images = torch.cat([top, bottom], dim=-2).clone()  # (n, 1, 16, 16)
    rows, cols = (cue_patch // _GRID) * _PATCH, (cue_patch % _GRID) * _PATCH
    patterns = CUE_PATTERNS.to(images.dtype)[labels.long()]  # (n, 4, 4)
    for i in range(n):
        r, c = int(rows[i]), int(cols[i])
        images[i, 0, r : r + _PATCH, c : c + _PATCH] = patterns[i]
    return images


def cue_images(n: int, *, generator: torch.Generator, digits: Tensor | None = None) -> CueImages:
    """A 16 x 16 "where is the cue?" task with a known answer.

    Each canvas holds four random digits, one 8 x 8 digit per quadrant, as
    distractors. One quadrant (uniform) holds the cue: a 4 x 4 pattern, a
    hollow square (label 0) or a plus (label 1), both 12 pixels of full ink,
    that overwrites one of the quadrant's four patches of the 4 x 4 patch grid
    (uniform). The label is the kind of cue; it is drawn independently of the
    digits (exactly ``n // 2`` or ``n - n // 2`` of each kind), so the digits
    carry no information about it, and the cue's patch ``cue_patch`` is where
    a model should look.

    Chance levels: 1/2 for the label; 1/16 for a model that picks the cue's
    patch among the 16 (for example the patch of highest attention or
    relevance).

    Parameters
    ----------
    n : int
    generator : torch.Generator
        Every random choice is drawn from it: the same generator state gives
        the same images.
    digits : Tensor, optional
        The pool of distractors ``(m, 1, 8, 8)`` in [0, 1] (default: all of
        :func:`digit_images`). Pass ``digits(...).train.images`` for a
        training set and ``.test.images`` for a test set to keep the
        distractors of the two apart.

    Returns
    -------
    CueImages

    Shape
    -----
    - images: ``(n, 1, 16, 16)``; labels, cue_patch, quadrant: ``(n,)``;
      digit_index: ``(n, 4)``

    Examples
    --------
    >>> data = cue_images(4, generator=torch.Generator().manual_seed(0))
    >>> data.images.shape, data.labels.sum().item()
    (torch.Size([4, 1, 16, 16]), 2)
    """
    check_positive_int(n, "n")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    pool = _load_digits()[0] if digits is None else _check_digit_pool(digits)
    labels = (torch.arange(n) % 2)[torch.randperm(n, generator=generator)]  # (n,) balanced
    quadrant = torch.randint(4, (n,), generator=generator)  # (n,)
    inside = torch.randint(4, (n,), generator=generator)  # (n,) patch within the quadrant
    digit_index = torch.randint(pool.shape[0], (n, 4), generator=generator)  # (n, 4)
    half = _GRID // 2  # patches per quadrant side
    row = (quadrant // 2) * half + inside // 2
    col = (quadrant % 2) * half + inside % 2
    cue_patch = row * _GRID + col  # (n,)
    images = render_cue_images(pool, digit_index, cue_patch, labels)
    return CueImages(images, labels, cue_patch, quadrant, digit_index)
