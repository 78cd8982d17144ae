"""Positional information: sinusoidal, learned, rotary (RoPE) and ALiBi.

Attention without positions is permutation-equivariant: shuffle the tokens
and the outputs shuffle the same way. These are the four standard ways to tell
the model where each token is.

The modules take their sizes in one order: the feature size first
(``d_model``, or ``head_dim`` for :class:`RotaryEmbedding`, which works on
each head's queries and keys), then ``max_len`` where there is a table, so
``SinusoidalPositionalEncoding(d_model, max_len)`` and
``LearnedPositionalEmbedding(d_model, max_len)`` are interchangeable; options
such as ``dropout`` and ``base`` follow. The functions take their sizes in
the order of the shape they return: ``sinusoidal_encoding(length, d_model)``,
``rotary_cos_sin(length, head_dim)``, ``alibi_bias(num_heads, query_len,
key_len)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._checks import check_positive_int, check_rank, shape_str

__all__ = [
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "rotary_cos_sin",
    "apply_rotary",
    "RotaryEmbedding",
    "alibi_slopes",
    "alibi_bias",
]


def sinusoidal_encoding(
    length: int,
    d_model: int,
    base: float = 10000.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""The sinusoidal position table of Vaswani et al. (2017), section 3.5.

    .. math::

        PE_{(pos, 2i)} = \sin(pos / 10000^{2i/d_{model}}), \quad
        PE_{(pos, 2i+1)} = \cos(pos / 10000^{2i/d_{model}})

    For any offset :math:`k`, :math:`PE_{pos+k}` is a fixed linear function
    (a rotation per frequency) of :math:`PE_{pos}`.

    Shape
    -----
    - output: ``(L, D)``
    """
    check_positive_int(length, "length")
    check_positive_int(d_model, "d_model")
    if d_model % 2:
        raise ValueError(f"d_model: expected an even number, got {d_model}")
    position = torch.arange(length, device=device, dtype=torch.float64)[:, None]  # (L, 1)
    freq = torch.exp(
        -math.log(base) * torch.arange(0, d_model, 2, device=device, dtype=torch.float64) / d_model
    )  # (D/2,)
    table = torch.zeros(length, d_model, device=device, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return table.to(dtype)


class SinusoidalPositionalEncoding(nn.Module):
    """Add the sinusoidal table to token embeddings (no parameters).

    Parameters
    ----------
    d_model : int
    max_len : int
        Longest sequence.
    dropout : float
        Dropout after the addition, as in the paper.

    Shape
    -----
    - x: ``(B, L, D)``; output: same
    """

    def __init__(self, d_model: int, max_len: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("table", sinusoidal_encoding(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        check_rank(x, "x", (3,), "(batch, length, d_model)")
        _check_offset(offset)
        if offset + x.shape[1] > self.table.shape[0]:
            raise ValueError(
                f"x: expected at most {self.table.shape[0] - offset} positions (max_len "
                f"{self.table.shape[0]}, offset {offset}), got shape {shape_str(x.shape)}"
            )
        return self.dropout(x + self.table[offset : offset + x.shape[1]].to(x.dtype))


class LearnedPositionalEmbedding(nn.Module):
    """Add a learned vector per position (BERT, GPT-2).

    Parameters
    ----------
    d_model : int
    max_len : int
        Longest sequence (one vector per position).
    dropout : float
        Dropout after the addition.

    Shape
    -----
    - x: ``(B, L, D)``; output: same
    """

    def __init__(self, d_model: int, max_len: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        check_positive_int(d_model, "d_model")
        check_positive_int(max_len, "max_len")
        self.d_model, self.max_len = d_model, max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        check_rank(x, "x", (3,), "(batch, length, d_model)")
        _check_offset(offset)
        max_len = self.embedding.num_embeddings
        if offset + x.shape[1] > max_len:
            raise ValueError(
                f"x: expected at most {max_len - offset} positions (max_len {max_len}, "
                f"offset {offset}), got shape {shape_str(x.shape)}"
            )
        positions = torch.arange(offset, offset + x.shape[1], device=x.device)
        return self.dropout(x + self.embedding(positions))


def rotary_cos_sin(
    length: int,
    head_dim: int,
    base: float = 10000.0,
    *,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    r"""Cosines and sines of the rotary embedding (Su et al., 2021, arXiv:2104.09864).

    Feature pairs ``(2i, 2i+1)`` at position ``m`` are rotated by the angle
    :math:`m\theta_i`, :math:`\theta_i = base^{-2i/d}`.

    Shape
    -----
    - cos, sin: ``(L, Dk)`` (each angle repeated for its pair)
    """
    check_positive_int(length, "length")
    check_positive_int(head_dim, "head_dim")
    _check_offset(offset)
    if head_dim % 2:
        raise ValueError(f"head_dim: expected an even number, got {head_dim}")
    theta = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim)
    m = torch.arange(offset, offset + length, device=device, dtype=torch.float64)
    angles = (m[:, None] * theta).repeat_interleave(2, dim=-1)  # (L, head_dim)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the feature pairs of ``x`` by the angles in ``cos``/``sin``.

    Shape
    -----
    - x: ``(..., L, Dk)``; cos, sin: ``(L, Dk)``
    - output: same as ``x``
    """
    if x.shape[-2:] != cos.shape:
        raise ValueError(
            f"x: expected (..., {cos.shape[0]}, {cos.shape[1]}) to match cos/sin, "
            f"got shape {shape_str(x.shape)}"
        )
    pairs = x.unflatten(-1, (-1, 2))  # (..., L, d/2, 2)
    if x.dtype in (torch.float32, torch.float64) and _complex_viewable(pairs):
        # the pair (a, b) as the complex number a + ib, times e^{i angle}: the
        # same rotation in one complex product, several times faster on a CPU
        turn = torch.complex(cos[:, ::2], sin[:, ::2])  # (L, d/2)
        return torch.view_as_real(torch.view_as_complex(pairs) * turn).flatten(-2)
    rotated_half = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * cos + rotated_half * sin


def _complex_viewable(pairs: Tensor) -> bool:
    """Whether :func:`torch.view_as_complex` accepts ``pairs`` without a copy."""
    return (
        pairs.stride(-1) == 1
        and pairs.storage_offset() % 2 == 0
        and all(stride % 2 == 0 for stride in pairs.stride()[:-1])
    )


class RotaryEmbedding(nn.Module):
    r"""Rotary position embedding applied to queries and keys.

    The score :math:`q_m^\top k_n` of rotated vectors depends on the positions
    only through :math:`m - n`. Su et al. (2021), arXiv:2104.09864.

    Parameters
    ----------
    head_dim : int
        The size of each head's queries and keys (even), in the place of the
        other modules' ``d_model``. There is no ``max_len``: the angles are
        computed for any length.
    base : float
        Keyword-only, so that ``RotaryEmbedding(head_dim, max_len)`` cannot
        silently set it.

    Shape
    -----
    - q: ``(..., Lq, Dk)``; k: ``(..., Lk, Dk)``; outputs: same
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0) -> None:
        super().__init__()
        check_positive_int(head_dim, "head_dim")
        if head_dim % 2:
            raise ValueError(f"head_dim: expected an even number, got {head_dim}")
        self.head_dim, self.base = head_dim, base

    def forward(
        self, q: Tensor, k: Tensor, q_offset: int = 0, k_offset: int = 0
    ) -> tuple[Tensor, Tensor]:
        kw = {"device": q.device, "dtype": q.dtype, "base": self.base}
        cos_q, sin_q = rotary_cos_sin(q.shape[-2], self.head_dim, offset=q_offset, **kw)
        cos_k, sin_k = rotary_cos_sin(k.shape[-2], self.head_dim, offset=k_offset, **kw)
        return apply_rotary(q, cos_q, sin_q), apply_rotary(k, cos_k, sin_k)


def alibi_slopes(num_heads: int) -> Tensor:
    r"""Head slopes of ALiBi (Press, Smith and Lewis, 2022, arXiv:2108.12409).

    For :math:`h` a power of two, the geometric sequence
    :math:`2^{-8/h}, 2^{-16/h}, \dots, 2^{-8}`; otherwise the paper's
    interleaving of the two nearest powers of two.

    Shape
    -----
    - output: ``(H,)``
    """
    check_positive_int(num_heads, "num_heads")

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = power_of_two(num_heads)
    else:
        closest = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes)


def alibi_bias(
    num_heads: int,
    query_len: int,
    key_len: int | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""ALiBi's additive score bias :math:`-m_h \, |i - j|` (no position embeddings).

    Add it to the scores (it is an additive float mask); combine with a causal
    mask for a decoder. Queries are aligned with the *last* keys, so query
    ``i`` sits at key position ``i + key_len - query_len`` (as when decoding
    with a key/value cache).

    Shape
    -----
    - output: ``(H, query_len, key_len)``
    """
    check_positive_int(query_len, "query_len")
    key_len = query_len if key_len is None else check_positive_int(key_len, "key_len")
    if key_len < query_len:
        raise ValueError(
            f"key_len: expected at least query_len ({query_len}): queries are the last "
            f"key positions, got {key_len}"
        )
    slopes = alibi_slopes(num_heads).to(device=device, dtype=dtype)
    i = torch.arange(query_len, device=device)[:, None] + (key_len - query_len)
    j = torch.arange(key_len, device=device)[None, :]
    distance = (i - j).abs().to(dtype)  # (Lq, Lk)
    return -slopes[:, None, None] * distance  # (H, Lq, Lk)


def _check_offset(offset: int) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset: expected a non-negative integer, got {offset!r}")
