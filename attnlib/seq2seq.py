"""A recurrent (GRU) encoder-decoder whose decoder takes any attention layer, or none.

Without attention the decoder sees the source only through the encoder's last
state (Cho et al., 2014), the "bottleneck" that attention removes; with an
attention layer it looks at every encoder state at every step (Bahdanau et
al., 2015, arXiv:1409.0473).

Like every model of :mod:`attnlib.models`, :class:`Seq2Seq` returns logits;
the decoder's attention weights are recorded with
:func:`attnlib.capture.record_attention` (the layer ``"decoder.attention"``,
one call per target step: ``record.steps("decoder.attention")`` is
``(B, T, S)``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_rank, shape_str
from .models import DecodingState, EncoderDecoderModel

__all__ = ["RecurrentEncoder", "RecurrentDecoder", "Seq2Seq"]


class RecurrentEncoder(nn.Module):
    r"""Embedding and a one-layer GRU, optionally bidirectional.

    With ``bidirectional=True`` it is Bahdanau et al.'s (2015) encoder: two
    GRUs of ``hidden_dim / 2`` features read the source forwards and
    backwards, and each annotation is their concatenation
    :math:`h_j = [\overrightarrow{h}_j; \overleftarrow{h}_j]`, centred on word
    ``j`` with context from both sides. The final state is the concatenation
    of the two directions' last states.

    Parameters
    ----------
    vocab_size, emb_dim, hidden_dim : int
        ``hidden_dim`` must be even when ``bidirectional``.
    pad_idx : int
    bidirectional : bool

    Shape
    -----
    - src: ``(B, S)`` token ids; lengths: ``(B,)``
    - outputs: ``(B, S, hidden_dim)``; state: ``(1, B, hidden_dim)``
    """

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden_dim: int,
        pad_idx: int = 0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        if bidirectional and hidden_dim % 2:
            raise ValueError(
                f"hidden_dim: expected an even number for a bidirectional encoder "
                f"(two GRUs of hidden_dim / 2), got {hidden_dim}"
            )
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_idx)
        width = hidden_dim // 2 if bidirectional else hidden_dim
        self.rnn = nn.GRU(emb_dim, width, batch_first=True, bidirectional=bidirectional)
        self.bidirectional = bidirectional

    def forward(self, src: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        emb = self.embedding(src)  # (B, S, E)
        if lengths is None:
            outputs, state = self.rnn(emb)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                emb, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            outputs, state = self.rnn(packed)
            outputs, _ = nn.utils.rnn.pad_packed_sequence(
                outputs, batch_first=True, total_length=src.shape[1]
            )
        if self.bidirectional:  # state: (2, B, Dh/2), forwards then backwards
            state = torch.cat([state[0], state[1]], -1)[None]  # (1, B, Dh)
        return outputs, state  # (B, S, Dh), (1, B, Dh)


class RecurrentDecoder(nn.Module):
    """GRU decoder that, at every step, attends over the encoder outputs.

    At step ``t`` the previous decoder state is the query; the context vector
    (the attention output) is fed to the GRU with the previous token's
    embedding and to the output layer. With ``attention=None`` the context is
    the encoder's final state at every step.

    Parameters
    ----------
    vocab_size, emb_dim, hidden_dim : int
    attention : attnlib.attention.AttentionModule, optional
        Any single-head attention layer of :mod:`attnlib.attention` taking
        queries and keys of ``hidden_dim`` features.
    pad_idx : int

    Shape
    -----
    - token: ``(B,)``; state: ``(B, hidden_dim)``; memory: ``(B, S, hidden_dim)``;
      memory_mask: ``(B, 1, S)`` boolean
    - logits: ``(B, vocab_size)``
    """

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden_dim: int,
        attention: nn.Module | None = None,
        pad_idx: int = 0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_idx)
        self.attention = attention
        self.rnn = nn.GRUCell(emb_dim + hidden_dim, hidden_dim)
        self.out = nn.Linear(2 * hidden_dim + emb_dim, vocab_size)

    def step(
        self, token: Tensor, state: Tensor, memory: Tensor, memory_mask: Tensor | None, t: int
    ) -> tuple[Tensor, Tensor]:
        """One decoding step at target position ``t``: ``logits (B, V)`` and the
        new ``state (B, Dh)``."""
        emb = self.embedding(token)  # (B, E)
        if self.attention is None:
            context = memory[:, -1]  # final encoder state: (B, Dh)
        else:
            extra = {}
            if getattr(self.attention, "uses_positions", False):
                extra["positions"] = torch.full((1,), t, device=memory.device)
            context, _ = self.attention(
                state[:, None, :], memory, memory, memory_mask, **extra
            )  # (B, 1, Dh); weights (B, 1, S) go to record_attention
            context = context[:, 0]
        state = self.rnn(torch.cat([emb, context], -1), state)  # (B, Dh)
        logits = self.out(torch.cat([state, context, emb], -1))  # (B, V)
        return logits, state


class Seq2Seq(EncoderDecoderModel):
    """GRU encoder-decoder with pluggable attention.

    Parameters
    ----------
    src_vocab, tgt_vocab : int
        Vocabulary sizes.
    emb_dim, hidden_dim : int
    attention : attnlib.attention.AttentionModule, optional
        Attention layer of the decoder (``None`` = no attention).
    pad_idx : int
    bidirectional : bool
        Bahdanau et al.'s bidirectional encoder (see :class:`RecurrentEncoder`).

    Shape
    -----
    - src: ``(B, S)``; tgt_in: ``(B, T)`` (teacher forcing)
    - output: logits ``(B, T, tgt_vocab)``

    Examples
    --------
    >>> from attnlib import AdditiveAttention, record_attention
    >>> model = Seq2Seq(10, 10, 8, 16, attention=AdditiveAttention(16))
    >>> src, tgt_in = torch.randint(1, 10, (2, 5)), torch.randint(1, 10, (2, 4))
    >>> with record_attention(model) as record:
    ...     logits = model(src, tgt_in)
    >>> logits.shape, record.steps("decoder.attention").shape
    (torch.Size([2, 4, 10]), torch.Size([2, 4, 5]))
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        emb_dim: int = 32,
        hidden_dim: int = 64,
        attention: nn.Module | None = None,
        pad_idx: int = 0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.pad_idx = pad_idx
        self.encoder = RecurrentEncoder(src_vocab, emb_dim, hidden_dim, pad_idx, bidirectional)
        self.decoder = RecurrentDecoder(tgt_vocab, emb_dim, hidden_dim, attention, pad_idx)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``memory (B, S, Dh)``, ``memory_mask (B, 1, S)``, initial decoder ``state (B, Dh)``."""
        check_rank(src, "src", (2,), "(batch, source length) of token ids")
        not_pad = src != self.pad_idx  # (B, S)
        lengths = not_pad.sum(1).clamp_min(1)
        memory, state = self.encoder(src, lengths)
        if self.decoder.attention is None:
            # the context is the final state; gather it from the padded outputs
            memory = memory.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, memory.shape[-1]))
        return memory, not_pad[:, None, :], state[0]

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        check_rank(tgt_in, "tgt_in", (2,), "(batch, target length) of token ids")
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"tgt_in: expected batch size {src.shape[0]} like src, "
                f"got shape {shape_str(tgt_in.shape)}"
            )
        return _RecurrentDecoding(self, src).feed(tgt_in, 0)  # (B, T, V)

    def attention_kind(self, name: str) -> str:
        return "cross"  # the decoder's only attention looks at the source

    def start_decoding(self, src: Tensor | None, use_cache: bool) -> DecodingState:
        # a recurrent decoder carries its state: it always feeds only new tokens
        return _RecurrentDecoding(self, src)


class _RecurrentDecoding(DecodingState):
    """The encoder's memory and the decoder's state between steps."""

    def __init__(self, model: Seq2Seq, src: Tensor) -> None:
        self.decoder, self.banned_token = model.decoder, model.pad_idx
        self.memory, self.memory_mask, self.state = model.encode(src)

    def feed(self, tokens: Tensor, start: int) -> Tensor:
        logits = []
        for i in range(tokens.shape[1]):
            step_logits, self.state = self.decoder.step(
                tokens[:, i], self.state, self.memory, self.memory_mask, start + i
            )
            logits.append(step_logits)
        return torch.stack(logits, 1)  # (B, T, V)

    def reorder(self, index: Tensor) -> None:
        self.memory, self.memory_mask = self.memory[index], self.memory_mask[index]
        self.state = self.state[index]
