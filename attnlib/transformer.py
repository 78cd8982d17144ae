"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017, arXiv:1706.03762).

Encoder and decoder layers (post-norm as in the paper, pre-norm as an
option), the encoder and decoder stacks and the encoder-decoder
:class:`Transformer`, with the same parameters and computation as
:class:`torch.nn.Transformer` (``from_torch`` copies them). Attention layers
are :class:`attnlib.attention.MultiHeadAttention`, so
:func:`attnlib.capture.record_attention` sees every layer and head.

Masks follow :mod:`attnlib.masks`: boolean, ``True`` = may attend.
"""

from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_choice
from .attention import MultiHeadAttention

__all__ = [
    "EncoderLayer",
    "DecoderLayer",
    "Encoder",
    "Decoder",
    "Transformer",
]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class _FeedForward(nn.Module):
    """Position-wise feed-forward network ``linear2(dropout(act(linear1(x))))``."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float, activation: str):
        super().__init__()
        self.activation = check_choice(activation, "activation", tuple(_ACTIVATIONS))
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(_ACTIVATIONS[self.activation](self.linear1(x))))


class EncoderLayer(nn.Module):
    r"""Self-attention and a feed-forward network, each with a residual and a LayerNorm.

    Post-norm (the paper): :math:`x = \mathrm{LN}(x + \mathrm{SA}(x))`,
    :math:`x = \mathrm{LN}(x + \mathrm{FF}(x))`. Pre-norm
    (``norm_first=True``): :math:`x = x + \mathrm{SA}(\mathrm{LN}(x))`, ...

    Parameters
    ----------
    d_model, nhead, dim_feedforward : int
    dropout : float
    norm_first : bool
    activation : {"relu", "gelu"}
    layer_norm_eps : float

    Shape
    -----
    - x: ``(batch, length, d_model)``; mask: broadcastable to
      ``(batch, nhead, length, length)``
    - output: ``(batch, length, d_model)``
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        norm_first: bool = False,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout)
        self.ff = _FeedForward(d_model, dim_feedforward, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _sa(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return self.dropout1(self.self_attn(x, x, x, mask)[0])

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.norm_first:
            x = x + self._sa(self.norm1(x), mask)
            return x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(x + self._sa(x, mask))
        return self.norm2(x + self.dropout2(self.ff(x)))

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """A copy of a :class:`torch.nn.TransformerEncoderLayer` (``batch_first`` or not)."""
        new = cls(
            layer.self_attn.embed_dim,
            layer.self_attn.num_heads,
            layer.linear1.out_features,
            dropout=layer.dropout.p,
            norm_first=layer.norm_first,
            activation=_activation_name(layer.activation),
            layer_norm_eps=layer.norm1.eps,
        )
        new.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        new.self_attn.batch_first = True
        _copy_ff(new.ff, layer)
        new.norm1.load_state_dict(layer.norm1.state_dict())
        new.norm2.load_state_dict(layer.norm2.state_dict())
        return new.to(layer.linear1.weight.dtype).train(layer.training)


class DecoderLayer(nn.Module):
    r"""Masked self-attention, cross-attention to the encoder output, and a
    feed-forward network, each with a residual and a LayerNorm.

    Parameters
    ----------
    d_model, nhead, dim_feedforward : int
    dropout : float
    norm_first : bool
    activation : {"relu", "gelu"}
    layer_norm_eps : float

    Shape
    -----
    - x: ``(batch, T, d_model)``; memory: ``(batch, S, d_model)``
    - tgt_mask: broadcastable to ``(batch, nhead, T, T)``;
      memory_mask: broadcastable to ``(batch, nhead, T, S)``
    - output: ``(batch, T, d_model)``
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        norm_first: bool = False,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, nhead, dropout=dropout)
        self.ff = _FeedForward(d_model, dim_feedforward, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def _sa(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return self.dropout1(self.self_attn(x, x, x, mask)[0])

    def _ca(self, x: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        return self.dropout2(self.cross_attn(x, memory, memory, mask)[0])

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_mask)
            x = x + self._ca(self.norm2(x), memory, memory_mask)
            return x + self.dropout3(self.ff(self.norm3(x)))
        x = self.norm1(x + self._sa(x, tgt_mask))
        x = self.norm2(x + self._ca(x, memory, memory_mask))
        return self.norm3(x + self.dropout3(self.ff(x)))

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
        """A copy of a :class:`torch.nn.TransformerDecoderLayer`."""
        new = cls(
            layer.self_attn.embed_dim,
            layer.self_attn.num_heads,
            layer.linear1.out_features,
            dropout=layer.dropout.p,
            norm_first=layer.norm_first,
            activation=_activation_name(layer.activation),
            layer_norm_eps=layer.norm1.eps,
        )
        new.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        new.cross_attn = MultiHeadAttention.from_torch(layer.multihead_attn)
        new.self_attn.batch_first = new.cross_attn.batch_first = True
        _copy_ff(new.ff, layer)
        for name in ("norm1", "norm2", "norm3"):
            getattr(new, name).load_state_dict(getattr(layer, name).state_dict())
        return new.to(layer.linear1.weight.dtype).train(layer.training)


class Encoder(nn.Module):
    """A stack of :class:`EncoderLayer` and an optional final LayerNorm.

    Shape
    -----
    - x: ``(batch, S, d_model)``; mask: broadcastable to ``(batch, nhead, S, S)``
    - output: ``(batch, S, d_model)``
    """

    def __init__(self, layer: EncoderLayer, num_layers: int, norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x if self.norm is None else self.norm(x)


class Decoder(nn.Module):
    """A stack of :class:`DecoderLayer` and an optional final LayerNorm.

    Shape
    -----
    - x: ``(batch, T, d_model)``; memory: ``(batch, S, d_model)``
    - output: ``(batch, T, d_model)``
    """

    def __init__(self, layer: DecoderLayer, num_layers: int, norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, memory_mask)
        return x if self.norm is None else self.norm(x)


class Transformer(nn.Module):
    """Encoder-decoder Transformer on embedded inputs, like :class:`torch.nn.Transformer`.

    Parameters
    ----------
    d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward : int
    dropout : float
    norm_first : bool
    activation : {"relu", "gelu"}
    layer_norm_eps : float

    Shape
    -----
    - src: ``(batch, S, d_model)``; tgt: ``(batch, T, d_model)``
    - src_mask: broadcastable to ``(batch, nhead, S, S)``; tgt_mask: to
      ``(batch, nhead, T, T)``; memory_mask: to ``(batch, nhead, T, S)``
    - output: ``(batch, T, d_model)``
    """

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        norm_first: bool = False,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        kw = dict(
            dropout=dropout,
            norm_first=norm_first,
            activation=activation,
            layer_norm_eps=layer_norm_eps,
        )
        self.d_model, self.nhead = d_model, nhead
        self.encoder = Encoder(
            EncoderLayer(d_model, nhead, dim_feedforward, **kw),
            num_encoder_layers,
            nn.LayerNorm(d_model, eps=layer_norm_eps),
        )
        self.decoder = Decoder(
            DecoderLayer(d_model, nhead, dim_feedforward, **kw),
            num_decoder_layers,
            nn.LayerNorm(d_model, eps=layer_norm_eps),
        )

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        memory = self.encoder(src, src_mask)
        return self.decoder(tgt, memory, tgt_mask, memory_mask)

    @classmethod
    def from_torch(cls, model: nn.Transformer) -> Transformer:
        """A copy of a :class:`torch.nn.Transformer` with the same weights.

        The copy is always batch-first: transpose inputs of a model built with
        ``batch_first=False``.
        """
        enc = [EncoderLayer.from_torch(layer) for layer in model.encoder.layers]
        dec = [DecoderLayer.from_torch(layer) for layer in model.decoder.layers]
        new = cls(
            model.d_model,
            model.nhead,
            len(enc),
            len(dec),
            dec[0].ff.linear1.out_features,
            norm_first=dec[0].norm_first,
        )
        new.encoder.layers = nn.ModuleList(enc)
        new.decoder.layers = nn.ModuleList(dec)
        new.encoder.norm = copy.deepcopy(model.encoder.norm)
        new.decoder.norm = copy.deepcopy(model.decoder.norm)
        return new.to(enc[0].ff.linear1.weight.dtype).train(model.training)


def _activation_name(activation) -> str:
    if activation in (F.relu, "relu") or isinstance(activation, nn.ReLU):
        return "relu"
    if activation in (F.gelu, "gelu") or isinstance(activation, nn.GELU):
        return "gelu"
    raise ValueError(f"activation: expected relu or gelu, got {activation!r}")


def _copy_ff(ff: _FeedForward, layer: nn.Module) -> None:
    ff.linear1.load_state_dict(layer.linear1.state_dict())
    ff.linear2.load_state_dict(layer.linear2.state_dict())
    ff.dropout.p = layer.dropout.p
