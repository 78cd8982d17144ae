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
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_choice, check_rank
from .attention import KVCache, MultiHeadAttention
from .masks import causal_mask, mask_future_tokens, padding_mask
from .models import DecodingState, EncoderDecoderModel, LanguageModel
from .positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding

__all__ = [
    "EncoderLayer",
    "DecoderLayer",
    "TransformerEncoder",
    "TransformerDecoder",
    "Transformer",
    "LayerCache",
    "Seq2SeqTransformer",
    "EncoderClassifier",
    "DecoderLM",
    "build_transformer_model",
]


def _gelu_tanh(x: Tensor) -> Tensor:
    """GELU with the tanh approximation (GPT-2's ``gelu_new``)."""
    return F.gelu(x, approximate="tanh")


_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": _gelu_tanh}


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


@dataclass
class LayerCache:
    """The key/value caches of one decoder layer: self-attention (growing)
    and cross-attention (the memory, projected once)."""

    self_attn: KVCache = field(default_factory=KVCache)
    cross_attn: KVCache = field(default_factory=lambda: KVCache(static=True))

    def reorder(self, index: Tensor) -> None:
        self.self_attn.reorder(index)
        self.cross_attn.reorder(index)


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
    activation : {"relu", "gelu", "gelu_tanh"}
        ``"gelu_tanh"``: the tanh approximation of GELU (GPT-2's ``gelu_new``).
    layer_norm_eps : float
    feedforward : bool
        ``False``: an attention-only layer, with no feed-forward block and no
        second LayerNorm (``ff``, ``norm2`` and ``dropout2`` are ``None``):
        :math:`x = x + \mathrm{SA}(\mathrm{LN}(x))` (pre-norm) or
        :math:`x = \mathrm{LN}(x + \mathrm{SA}(x))` (post-norm), the
        attention-only Transformers of Elhage et al. (2021, "A Mathematical
        Framework for Transformer Circuits") and Olsson et al. (2022,
        arXiv:2209.11895).
    rotary : bool
        Keyword-only: rotary positions in the self-attention
        (:class:`~attnlib.attention.MultiHeadAttention` ``rotary=True``).
    num_kv_heads : int, optional
        Keyword-only: key/value heads of the self-attention, a divisor of
        ``nhead`` (default ``nhead``); fewer is grouped-query attention, one is
        multi-query attention (:class:`~attnlib.attention.MultiHeadAttention`).

    Shape
    -----
    - x: ``(B, L, D)``; mask: broadcastable to
      ``(B, H, L, L)``
    - output: ``(B, L, D)``
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
        feedforward: bool = True,
        *,
        rotary: bool = False,
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model, nhead, dropout=dropout, rotary=rotary, num_kv_heads=num_kv_heads
        )
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        if feedforward:
            self.ff = _FeedForward(d_model, dim_feedforward, dropout, activation)
            self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
            self.dropout2 = nn.Dropout(dropout)
        else:
            check_choice(activation, "activation", tuple(_ACTIVATIONS))
            self.ff = self.norm2 = self.dropout2 = None

    @property
    def feedforward(self) -> bool:
        """Whether the layer has a feed-forward block (``False``: attention only)."""
        return self.ff is not None

    def _sa(self, x: Tensor, mask: Tensor | None, cache: KVCache | None) -> Tensor:
        return self.dropout1(self.self_attn(x, x, x, mask, cache=cache, need_weights=False)[0])

    def forward(
        self, x: Tensor, mask: Tensor | None = None, cache: KVCache | None = None
    ) -> Tensor:
        """``cache`` (a self-attention :class:`~attnlib.attention.KVCache`) is
        for decoder-only language models decoding token by token."""
        if self.norm_first:
            x = x + self._sa(self.norm1(x), mask, cache)
            if self.ff is None:
                return x
            return x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(x + self._sa(x, mask, cache))
        if self.ff is None:
            return x
        return self.norm2(x + self.dropout2(self.ff(x)))

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """A copy of a :class:`torch.nn.TransformerEncoderLayer` (``batch_first`` or not)."""
        new = cls(**_torch_layer_config(layer))
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
    - x: ``(B, T, D)``; memory: ``(B, S, D)``
    - tgt_mask: broadcastable to ``(B, H, T, T)``;
      memory_mask: broadcastable to ``(B, H, T, S)``
    - output: ``(B, T, D)``
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

    def _sa(self, x: Tensor, mask: Tensor | None, cache: KVCache | None) -> Tensor:
        return self.dropout1(self.self_attn(x, x, x, mask, cache=cache, need_weights=False)[0])

    def _ca(self, x: Tensor, memory: Tensor, mask: Tensor | None, cache: KVCache | None):
        return self.dropout2(
            self.cross_attn(x, memory, memory, mask, cache=cache, need_weights=False)[0]
        )

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        """With ``cache``, ``x`` holds only the new target positions and the
        keys and values of earlier ones come from the cache."""
        sc, cc = (None, None) if cache is None else (cache.self_attn, cache.cross_attn)
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_mask, sc)
            x = x + self._ca(self.norm2(x), memory, memory_mask, cc)
            return x + self.dropout3(self.ff(self.norm3(x)))
        x = self.norm1(x + self._sa(x, tgt_mask, sc))
        x = self.norm2(x + self._ca(x, memory, memory_mask, cc))
        return self.norm3(x + self.dropout3(self.ff(x)))

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
        """A copy of a :class:`torch.nn.TransformerDecoderLayer`."""
        new = cls(**_torch_layer_config(layer))
        new.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        new.cross_attn = MultiHeadAttention.from_torch(layer.multihead_attn)
        new.self_attn.batch_first = new.cross_attn.batch_first = True
        _copy_ff(new.ff, layer)
        for name in ("norm1", "norm2", "norm3"):
            getattr(new, name).load_state_dict(getattr(layer, name).state_dict())
        return new.to(layer.linear1.weight.dtype).train(layer.training)


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` and an optional final LayerNorm.

    Like :class:`torch.nn.TransformerEncoder`. With ``cache`` (one
    :class:`~attnlib.attention.KVCache` per layer, :meth:`new_cache`) a
    causally masked stack (a decoder-only language model) reads only the new
    positions and reuses the keys and values of the earlier ones.

    Shape
    -----
    - x: ``(B, L, D)``; mask: broadcastable to ``(B, H, L, L)``
      (``(B, H, L, past + L)`` with a cache)
    - output: ``(B, L, D)``
    """

    def __init__(self, layer: EncoderLayer, num_layers: int, norm: nn.Module | None = None):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.norm = norm

    def forward(
        self, x: Tensor, mask: Tensor | None = None, cache: list[KVCache] | None = None
    ) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, None if cache is None else cache[i])
        return x if self.norm is None else self.norm(x)

    def new_cache(self) -> list[KVCache]:
        """An empty key/value cache, one :class:`~attnlib.attention.KVCache` per layer."""
        return [KVCache() for _ in self.layers]


class TransformerDecoder(nn.Module):
    """A stack of :class:`DecoderLayer` and an optional final LayerNorm, like
    :class:`torch.nn.TransformerDecoder`.

    Shape
    -----
    - x: ``(B, T, D)``; memory: ``(B, S, D)``
    - output: ``(B, T, D)``
    """

    def __init__(self, layer: DecoderLayer, num_layers: int, norm: nn.Module | None = None):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.norm = norm

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: list[LayerCache] | None = None,
    ) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_mask, memory_mask, None if cache is None else cache[i])
        return x if self.norm is None else self.norm(x)

    def new_cache(self) -> list[LayerCache]:
        """An empty key/value cache, one :class:`LayerCache` per layer."""
        return [LayerCache() for _ in self.layers]


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
    - src: ``(B, S, D)``; tgt: ``(B, T, D)``
    - src_mask: broadcastable to ``(B, H, S, S)``; tgt_mask: to
      ``(B, H, T, T)``; memory_mask: to ``(B, H, T, S)``
    - output: ``(B, T, D)``
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
        self.encoder = TransformerEncoder(
            EncoderLayer(d_model, nhead, dim_feedforward, **kw),
            num_encoder_layers,
            nn.LayerNorm(d_model, eps=layer_norm_eps),
        )
        self.decoder = TransformerDecoder(
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
        config = _torch_layer_config(model.decoder.layers[0])
        new = cls(
            num_encoder_layers=len(enc),
            num_decoder_layers=len(dec),
            **config,
        )
        new.encoder.layers = nn.ModuleList(enc)
        new.decoder.layers = nn.ModuleList(dec)
        new.encoder.norm = copy.deepcopy(model.encoder.norm)
        new.decoder.norm = copy.deepcopy(model.decoder.norm)
        return new.to(enc[0].ff.linear1.weight.dtype).train(model.training)


def _clones(layer: nn.Module, n: int) -> nn.ModuleList:
    """``n`` copies of ``layer``, each freshly initialised (deep copies alone
    would start every layer of the stack with the same weights)."""
    layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(n))
    for clone in layers[1:]:
        linears = [m for m in clone.modules() if isinstance(m, nn.Linear)]
        for module in linears:
            module.reset_parameters()
        for module in clone.modules():  # attention re-applies its own initialisation
            if isinstance(module, MultiHeadAttention):
                module.reset_parameters()
    return layers


def _torch_layer_config(layer: nn.Module) -> dict:
    """Constructor arguments of the attnlib layer matching a torch Transformer layer."""
    return {
        "d_model": layer.self_attn.embed_dim,
        "nhead": layer.self_attn.num_heads,
        "dim_feedforward": layer.linear1.out_features,
        "dropout": layer.dropout.p,
        "norm_first": layer.norm_first,
        "activation": _activation_name(layer.activation),
        "layer_norm_eps": layer.norm1.eps,
    }


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


# -- complete models: embeddings, positions, the stacks, an output layer -------------


class _TokenEmbedding(nn.Module):
    """Token embedding scaled by sqrt(d_model) (section 3.4), plus sinusoidal positions."""

    def __init__(self, vocab_size: int, d_model: int, pad_idx: int, max_len: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_idx)
        # std d^-1/2, so that after the sqrt(d) scaling tokens and positions have
        # comparable size (as in tensor2tensor); N(0, 1) would drown the positions.
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.embedding.weight[pad_idx].zero_()
        self.positions = SinusoidalPositionalEncoding(d_model, max_len, dropout)
        self.scale = math.sqrt(d_model)

    def forward(self, tokens: Tensor, offset: int = 0) -> Tensor:
        return self.positions(self.embedding(tokens) * self.scale, offset)  # (B, L, D)


class Seq2SeqTransformer(EncoderDecoderModel):
    """Encoder-decoder Transformer on token ids: embeddings, the stacks, a linear output.

    Parameters
    ----------
    src_vocab, tgt_vocab : int
    d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward : int
    dropout : float
    pad_idx : int
    norm_first : bool
    tie_embeddings : bool
        Share the target embedding with the output layer (and with the source
        embedding when the vocabularies have the same size), as in the paper.
    max_len : int

    Shape
    -----
    - src: ``(B, S)``; tgt_in: ``(B, T)``
    - output: logits ``(B, T, tgt_vocab)``
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        d_model: int = 128,
        nhead: int = 4,
        num_encoder_layers: int = 2,
        num_decoder_layers: int = 2,
        dim_feedforward: int = 256,
        dropout: float = 0.1,
        pad_idx: int = 0,
        norm_first: bool = False,
        tie_embeddings: bool = False,
        max_len: int = 512,
    ) -> None:
        super().__init__()
        self.pad_idx, self.max_len = pad_idx, max_len
        self.src_embed = _TokenEmbedding(src_vocab, d_model, pad_idx, max_len, dropout)
        self.tgt_embed = _TokenEmbedding(tgt_vocab, d_model, pad_idx, max_len, dropout)
        self.transformer = Transformer(
            d_model,
            nhead,
            num_encoder_layers,
            num_decoder_layers,
            dim_feedforward,
            dropout,
            norm_first,
        )
        self.generator = nn.Linear(d_model, tgt_vocab)
        if tie_embeddings:
            self.generator.weight = self.tgt_embed.embedding.weight
            if src_vocab == tgt_vocab:
                self.src_embed.embedding.weight = self.tgt_embed.embedding.weight

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """``memory (B, S, D)`` and the source padding mask ``(B, 1, 1, S)``."""
        check_rank(src, "src", (2,), "(batch, source length) of token ids")
        src_mask = padding_mask(src, self.pad_idx)
        return self.transformer.encoder(self.src_embed(src), src_mask), src_mask

    def decode(
        self,
        tgt_in: Tensor,
        memory: Tensor,
        src_mask: Tensor,
        cache: list[LayerCache] | None = None,
    ) -> Tensor:
        """Logits ``(B, T, V)`` for the target tokens ``tgt_in (B, T)``.

        With ``cache`` (from :meth:`TransformerDecoder.new_cache`), ``tgt_in`` holds only
        the new tokens; positions continue from the cached ones.
        """
        check_rank(tgt_in, "tgt_in", (2,), "(batch, target length) of token ids")
        offset = 0 if cache is None else len(cache[0].self_attn)
        x = self.tgt_embed(tgt_in, offset)  # (B, T, D)
        tgt_mask = None if cache is not None and tgt_in.shape[1] == 1 else self._tgt_mask(tgt_in)
        h = self.transformer.decoder(x, memory, tgt_mask, src_mask, cache)
        return self.generator(h)

    def _tgt_mask(self, tgt_in: Tensor) -> Tensor:
        return padding_mask(tgt_in, self.pad_idx) & mask_future_tokens(tgt_in)  # (B,1,T,T)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)

    def start_decoding(self, src: Tensor | None, use_cache: bool) -> DecodingState:
        return _TransformerDecoding(self, src, use_cache)


class _TransformerDecoding(DecodingState):
    """The encoder's memory, and the decoder's key/value cache when ``use_cache``."""

    def __init__(self, model: Seq2SeqTransformer, src: Tensor, use_cache: bool) -> None:
        self.model, self.incremental, self.banned_token = model, use_cache, model.pad_idx
        self.memory, self.src_mask = model.encode(src)
        self.cache = model.transformer.decoder.new_cache() if use_cache else None

    def feed(self, tokens: Tensor, start: int) -> Tensor:
        return self.model.decode(tokens, self.memory, self.src_mask, self.cache)

    def reorder(self, index: Tensor) -> None:
        self.memory, self.src_mask = self.memory[index], self.src_mask[index]
        for layer_cache in self.cache or []:
            layer_cache.reorder(index)


class EncoderClassifier(nn.Module):
    """A Transformer encoder, pooling and a linear head: sequence classification.

    Parameters
    ----------
    vocab_size, num_classes : int
    d_model, nhead, num_layers, dim_feedforward : int
    dropout : float
    pad_idx : int
    pooling : {"mean", "first"}
        Mean over the non-padding tokens, or the first token (a ``[CLS]``).
    norm_first : bool
    max_len : int

    Shape
    -----
    - tokens: ``(B, L)``; output: logits ``(B, num_classes)``
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        pad_idx: int = 0,
        pooling: str = "mean",
        norm_first: bool = False,
        max_len: int = 512,
    ) -> None:
        super().__init__()
        self.pad_idx, self.max_len = pad_idx, max_len
        self.pooling = check_choice(pooling, "pooling", ("mean", "first"))
        self.embed = _TokenEmbedding(vocab_size, d_model, pad_idx, max_len, dropout)
        layer = EncoderLayer(d_model, nhead, dim_feedforward, dropout, norm_first)
        norm = nn.LayerNorm(d_model) if norm_first else None
        self.encoder = TransformerEncoder(layer, num_layers, norm)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        check_rank(tokens, "tokens", (2,), "(batch, length) of token ids")
        mask = padding_mask(tokens, self.pad_idx)  # (B, 1, 1, L)
        h = self.encoder(self.embed(tokens), mask)  # (B, L, D)
        if self.pooling == "first":
            return self.head(h[:, 0])
        keep = mask[:, 0, 0, :, None].to(h.dtype)  # (B, L, 1)
        return self.head((h * keep).sum(1) / keep.sum(1).clamp_min(1))


_HF_ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
}
"""Hugging Face's ``activation_function`` names and attnlib's equivalent."""


class DecoderLM(LanguageModel):
    r"""Decoder-only (GPT-style) language model: causal self-attention, pre-norm,
    learned positions, output layer tied to the embedding.

    The architecture of GPT-2 (Radford et al., 2019, "Language Models are
    Unsupervised Multitask Learners"): token embedding plus a learned position
    vector, ``num_layers`` pre-norm :class:`EncoderLayer`\ s under a causal
    mask, a final LayerNorm, and an output layer sharing the embedding's
    weights. :meth:`from_huggingface` copies a Hugging Face GPT-2.

    The token embedding is drawn from :math:`\mathcal N(0, 0.02^2)` as in
    GPT-2 (``initializer_range``): with the tied output layer, PyTorch's
    default :math:`\mathcal N(0, 1)` gives logits of standard deviation near
    :math:`\sqrt{d_{model}}` and a loss far above :math:`\log V` before
    training.

    Parameters
    ----------
    vocab_size : int
    d_model, nhead, num_layers, dim_feedforward : int
    dropout : float
        After the embeddings, on the attention weights, on each residual
        branch and inside the feed-forward block.
    max_len : int
        Longest sequence (one learned position vector each).
    activation : {"gelu", "relu", "gelu_tanh"}
        ``"gelu_tanh"`` is GPT-2's ``gelu_new``.
    attention_only : bool
        Layers without the feed-forward block (nor its LayerNorm):
        :math:`x = x + \mathrm{SA}(\mathrm{LN}(x))` only, the attention-only
        Transformers of Elhage et al. (2021, "A Mathematical Framework for
        Transformer Circuits") and Olsson et al. (2022, "In-context Learning
        and Induction Heads", arXiv:2209.11895). ``dim_feedforward`` and
        ``activation`` are then unused.
    layer_norm_eps : float
        Epsilon of every LayerNorm (GPT-2: ``1e-5``).
    positions : {"learned", "rotary"}
        ``"learned"`` (GPT-2): a learned vector per position added to the
        token embedding, at most ``max_len`` positions. ``"rotary"``: no
        position vector; every layer rotates its queries and keys by their
        positions (Su et al., 2021, arXiv:2104.09864), so attention scores
        depend on relative positions only, as in GPT-NeoX and LLaMA; then
        ``max_len`` does not limit the length.
    num_kv_heads : int, optional
        Key/value heads of every layer, a divisor of ``nhead`` (default
        ``nhead``). Fewer is grouped-query attention (Ainslie et al., 2023,
        arXiv:2305.13245), one is multi-query attention (Shazeer, 2019,
        arXiv:1911.02150): the key/value cache of generation shrinks by
        ``nhead / num_kv_heads``.

    Shape
    -----
    - tokens: ``(B, L)``; output: logits ``(B, L, vocab_size)``
    - with ``cache``: tokens ``(B, L_new)``; output ``(B, L_new, vocab_size)``

    Examples
    --------
    >>> import torch
    >>> lm = DecoderLM(11, d_model=16, nhead=2, num_layers=2, attention_only=True).eval()
    >>> lm(torch.tensor([[1, 2, 3]])).shape
    torch.Size([1, 3, 11])
    >>> lm.blocks.layers[0].ff is None
    True
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 256,
        dropout: float = 0.1,
        max_len: int = 256,
        activation: str = "gelu",
        *,
        attention_only: bool = False,
        layer_norm_eps: float = 1e-5,
        positions: str = "learned",
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        check_choice(positions, "positions", ("learned", "rotary"))
        self.max_len = max_len
        self.attention_only = bool(attention_only)
        self.rotary = positions == "rotary"
        self.embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)  # GPT-2's initializer_range
        # learned: a vector per position, then dropout; rotary: dropout only
        self.positions = (
            nn.Dropout(dropout)
            if self.rotary
            else LearnedPositionalEmbedding(d_model=d_model, max_len=max_len, dropout=dropout)
        )
        layer = EncoderLayer(
            d_model,
            nhead,
            dim_feedforward,
            dropout,
            True,
            activation,
            layer_norm_eps,
            feedforward=not attention_only,
            rotary=self.rotary,
            num_kv_heads=num_kv_heads,
        )
        self.blocks = TransformerEncoder(
            layer, num_layers, nn.LayerNorm(d_model, eps=layer_norm_eps)
        )
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.embedding.weight

    @classmethod
    def from_huggingface(cls, model: nn.Module) -> DecoderLM:
        """A copy of a Hugging Face GPT-2 (Radford et al., 2019) with the same weights.

        Token embedding from ``transformer.wte``, positions from
        ``transformer.wpe``; in each block ``ln_1`` → ``norm1``, ``attn.c_attn``
        (a ``Conv1D``: weight ``(D, 3D)``, the transpose of a
        :class:`torch.nn.Linear`'s, query | key | value along its output side)
        → ``self_attn.q_proj``/``k_proj``/``v_proj``, ``attn.c_proj`` →
        ``self_attn.out_proj``, ``ln_2`` → ``norm2``, ``mlp.c_fc``/``mlp.c_proj``
        → ``ff.linear1``/``ff.linear2``; ``ln_f`` → the final LayerNorm; the
        output layer is tied to the embedding. Dropout: ``embd_pdrop`` after
        the embeddings, ``attn_pdrop`` on the attention weights,
        ``resid_pdrop`` on the residual branches (none inside the MLP, as in
        GPT-2). The dtype and the train/eval mode are kept. Every tensor of
        the source is copied exactly once (a strict load: a forgotten one
        raises).

        The copy takes no ``attention_mask``: pad on the right, or decode
        one sequence at a time (GPT-2 shifts its positions under left padding).

        Parameters
        ----------
        model : transformers.GPT2LMHeadModel or transformers.GPT2Model

        Returns
        -------
        DecoderLM

        Raises
        ------
        ValueError
            For a model that is not a GPT-2, or a configuration this class
            cannot represent (the message names the ``model.config`` field):
            ``activation_function`` other than ``gelu_new``,
            ``gelu_pytorch_tanh``, ``gelu`` or ``relu``;
            ``scale_attn_weights=False``; ``scale_attn_by_inverse_layer_idx``;
            ``reorder_and_upcast_attn``; ``add_cross_attention``; an output
            layer not tied to the embedding.

        Shape
        -----
        - the copy maps tokens ``(B, L)`` to logits ``(B, L, vocab_size)``,
          the ``logits`` of ``GPT2LMHeadModel``
        """
        config = getattr(model, "config", None)
        if getattr(config, "model_type", None) != "gpt2":
            raise ValueError(
                "model: expected a transformers GPT2LMHeadModel or GPT2Model "
                f"(config.model_type 'gpt2'), got {type(model).__name__} with "
                f"model_type {getattr(config, 'model_type', None)!r}"
            )
        gpt = getattr(model, "transformer", model)
        if not hasattr(gpt, "wte") or not hasattr(gpt, "h"):
            raise ValueError(
                f"model: expected a GPT2LMHeadModel or GPT2Model, got {type(model).__name__}"
            )
        act = getattr(config, "activation_function", None)
        if act not in _HF_ACTIVATIONS:
            raise ValueError(
                f"model.config.activation_function: expected one of "
                f"{sorted(_HF_ACTIVATIONS)}, got {act!r}"
            )
        for name, bad in (
            ("scale_attn_weights", False),
            ("scale_attn_by_inverse_layer_idx", True),
            ("reorder_and_upcast_attn", True),
            ("add_cross_attention", True),
        ):
            if bool(getattr(config, name, not bad)) == bad:
                raise ValueError(f"model.config.{name}: DecoderLM cannot represent {name}={bad}")
        wte = gpt.wte.weight
        lm_head = getattr(model, "lm_head", None)
        if lm_head is not None and lm_head.weight is not wte:
            if lm_head.weight.shape != wte.shape or not torch.equal(lm_head.weight, wte):
                raise ValueError(
                    "model.config.tie_word_embeddings: DecoderLM ties its output layer "
                    "to the embedding; this model's lm_head differs from transformer.wte"
                )
            if getattr(lm_head, "bias", None) is not None:
                raise ValueError("model.lm_head: expected no bias (GPT-2's has none)")
        d_model, nhead = config.n_embd, config.n_head
        new = cls(
            wte.shape[0],
            d_model=d_model,
            nhead=nhead,
            num_layers=len(gpt.h),
            dim_feedforward=config.n_inner or 4 * d_model,
            dropout=0.0,
            max_len=gpt.wpe.weight.shape[0],
            activation=_HF_ACTIVATIONS[act],
            layer_norm_eps=config.layer_norm_epsilon,
        ).to(device=wte.device, dtype=wte.dtype)
        new.positions.dropout.p = config.embd_pdrop
        for layer in new.blocks.layers:
            layer.self_attn.dropout = config.attn_pdrop
            layer.dropout1.p = layer.dropout2.p = config.resid_pdrop
            layer.ff.dropout.p = 0.0
        source = {k: v.detach() for k, v in gpt.named_parameters()}
        used: set[str] = set()

        def take(name: str) -> Tensor:
            used.add(name)
            return source[name]

        D = d_model
        state = {
            "embedding.weight": take("wte.weight"),
            "lm_head.weight": source["wte.weight"],
            "positions.embedding.weight": take("wpe.weight"),
            "blocks.norm.weight": take("ln_f.weight"),
            "blocks.norm.bias": take("ln_f.bias"),
        }
        for i in range(len(gpt.h)):
            hf, at = f"h.{i}.", f"blocks.layers.{i}."
            w_qkv, b_qkv = take(hf + "attn.c_attn.weight"), take(hf + "attn.c_attn.bias")
            for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                # Conv1D computes x @ W + b with W (D, 3D): a Linear's weight transposed
                state[at + f"self_attn.{proj}.weight"] = w_qkv[:, j * D : (j + 1) * D].t()
                state[at + f"self_attn.{proj}.bias"] = b_qkv[j * D : (j + 1) * D]
            for ours, theirs in (
                ("self_attn.out_proj", "attn.c_proj"),
                ("ff.linear1", "mlp.c_fc"),
                ("ff.linear2", "mlp.c_proj"),
            ):
                state[at + ours + ".weight"] = take(hf + theirs + ".weight").t()
                state[at + ours + ".bias"] = take(hf + theirs + ".bias")
            for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
                state[at + ours + ".weight"] = take(hf + theirs + ".weight")
                state[at + ours + ".bias"] = take(hf + theirs + ".bias")
        left = sorted(set(source) - used)
        if left:
            raise ValueError(f"model: parameters DecoderLM cannot represent: {left}")
        new.load_state_dict(state, strict=True)
        return new.train(model.training)

    def new_cache(self) -> list[KVCache]:
        """An empty key/value cache for :meth:`forward`, one per layer."""
        return self.blocks.new_cache()

    def forward(self, tokens: Tensor, cache: list[KVCache] | None = None) -> Tensor:
        """With ``cache``, ``tokens`` are only the new ones."""
        check_rank(tokens, "tokens", (2,), "(batch, length) of token ids")
        offset = 0 if cache is None else len(cache[0])
        x = self.embedding(tokens)  # (B, L, D)
        # rotary positions are applied inside the attention layers
        x = self.positions(x) if self.rotary else self.positions(x, offset)
        n = tokens.shape[1]
        mask = None if cache is not None and n == 1 else _causal_after(n, offset, tokens.device)
        return self.lm_head(self.blocks(x, mask, cache))  # (B, L, V)

    def start_decoding(self, src: Tensor | None, use_cache: bool) -> DecodingState:
        return _LMDecoding(self, use_cache)


class _LMDecoding(DecodingState):
    """A language model's key/value cache when ``use_cache``."""

    def __init__(self, model: DecoderLM, use_cache: bool) -> None:
        self.model, self.incremental = model, use_cache
        self.cache = model.new_cache() if use_cache else None

    def feed(self, tokens: Tensor, start: int) -> Tensor:
        return self.model(tokens, self.cache)

    def reorder(self, index: Tensor) -> None:
        for layer_cache in self.cache or []:
            layer_cache.reorder(index)


def _causal_after(n: int, offset: int, device) -> Tensor:
    """Causal mask for ``n`` new queries after ``offset`` cached keys: ``(n, offset + n)``."""
    mask = causal_mask(n, device=device)
    if offset:
        mask = torch.cat([torch.ones(n, offset, dtype=torch.bool, device=device), mask], 1)
    return mask


def build_transformer_model(
    vocab_size: int, d_model: int, nhead: int, num_layers: int, dim_feedforward: int
) -> Seq2SeqTransformer:
    """The seed's builder: an encoder-decoder Transformer over one shared vocabulary.

    ``num_layers`` encoder and ``num_layers`` decoder layers, post-norm,
    dropout 0.1, padding id 0, tied embeddings (Vaswani et al., 2017).

    Returns
    -------
    Seq2SeqTransformer
    """
    return Seq2SeqTransformer(
        vocab_size,
        vocab_size,
        d_model=d_model,
        nhead=nhead,
        num_encoder_layers=num_layers,
        num_decoder_layers=num_layers,
        dim_feedforward=dim_feedforward,
        tie_embeddings=True,
    )
