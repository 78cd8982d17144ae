"""A recurrent (GRU) encoder-decoder whose decoder takes any attention layer, or none.

Without attention the decoder sees the source only through the encoder's last
state (Cho et al., 2014), the "bottleneck" that attention removes; with an
attention layer it looks at every encoder state at every step (Bahdanau et
al., 2015, arXiv:1409.0473).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_rank, shape_str

__all__ = ["Encoder", "AttentionDecoder", "Seq2Seq"]


class Encoder(nn.Module):
    """Embedding and a one-layer GRU, optionally bidirectional.

    A bidirectional encoder (Bahdanau et al., 2015) reads the source both
    ways, so each annotation :math:`h_j` summarises the words before *and*
    after position ``j``; the two directions are projected back to
    ``hidden_dim``.

    Shape
    -----
    - src: ``(batch, S)`` token ids
    - outputs: ``(batch, S, hidden_dim)``; state: ``(1, batch, hidden_dim)``
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
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_idx)
        self.rnn = nn.GRU(emb_dim, hidden_dim, batch_first=True, bidirectional=bidirectional)
        self.bidirectional = bidirectional
        if bidirectional:
            self.project_outputs = nn.Linear(2 * hidden_dim, hidden_dim)
            self.project_state = nn.Linear(2 * hidden_dim, hidden_dim)

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
        if self.bidirectional:
            outputs = self.project_outputs(outputs)  # (B, S, 2H) -> (B, S, H)
            both = torch.cat([state[0], state[1]], -1)  # (B, 2H)
            state = torch.tanh(self.project_state(both))[None]  # (1, B, H)
        return outputs, state  # (B, S, H), (1, B, H)


class AttentionDecoder(nn.Module):
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
    - tokens: ``(batch, T)``; memory: ``(batch, S, hidden_dim)``;
      memory_mask: ``(batch, 1, S)`` boolean
    - logits: ``(batch, T, vocab_size)``; weights: ``(batch, T, S)`` or ``None``
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
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One decoding step: ``token (B,)``, ``state (B, H)`` ->
        ``logits (B, V)``, new ``state (B, H)``, ``weights (B, S)`` or ``None``."""
        emb = self.embedding(token)  # (B, E)
        if self.attention is None:
            context, weights = memory[:, -1], None  # final encoder state: (B, H)
        else:
            extra = {}
            if getattr(self.attention, "uses_positions", False):
                extra["positions"] = torch.full((1,), t, device=memory.device)
            context, weights = self.attention(
                state[:, None, :], memory, memory, memory_mask, **extra
            )  # (B, 1, H), (B, 1, S)
            context, weights = context[:, 0], weights[:, 0]
        state = self.rnn(torch.cat([emb, context], -1), state)  # (B, H)
        logits = self.out(torch.cat([state, context, emb], -1))  # (B, V)
        return logits, state, weights


class Seq2Seq(nn.Module):
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
        Bidirectional encoder (Bahdanau et al., 2015).

    Shape
    -----
    - src: ``(batch, S)``; tgt_in: ``(batch, T)`` (teacher forcing)
    - logits: ``(batch, T, tgt_vocab)``; weights: ``(batch, T, S)`` or ``None``

    Examples
    --------
    >>> from attnlib import AdditiveAttention
    >>> model = Seq2Seq(10, 10, 8, 16, attention=AdditiveAttention(16))
    >>> logits, weights = model(torch.randint(1, 10, (2, 5)), torch.randint(1, 10, (2, 4)))
    >>> logits.shape, weights.shape
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
        self.encoder = Encoder(src_vocab, emb_dim, hidden_dim, pad_idx, bidirectional)
        self.decoder = AttentionDecoder(tgt_vocab, emb_dim, hidden_dim, attention, pad_idx)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``memory (B, S, H)``, ``memory_mask (B, 1, S)``, initial decoder ``state (B, H)``."""
        check_rank(src, "src", (2,), "(batch, source length) of token ids")
        not_pad = src != self.pad_idx  # (B, S)
        lengths = not_pad.sum(1).clamp_min(1)
        memory, state = self.encoder(src, lengths)
        if self.decoder.attention is None:
            # the context is the final state; gather it from the padded outputs
            memory = memory.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, memory.shape[-1]))
        return memory, not_pad[:, None, :], state[0]

    def forward(self, src: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        check_rank(tgt_in, "tgt_in", (2,), "(batch, target length) of token ids")
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"tgt_in: expected batch size {src.shape[0]} like src, "
                f"got shape {shape_str(tgt_in.shape)}"
            )
        memory, memory_mask, state = self.encode(src)
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, state, w = self.decoder.step(tgt_in[:, t], state, memory, memory_mask, t)
            logits.append(step_logits)
            weights.append(w)
        stacked = None if weights[0] is None else torch.stack(weights, 1)  # (B, T, S)
        return torch.stack(logits, 1), stacked  # (B, T, V)

    @torch.no_grad()
    def greedy_decode(
        self, src: Tensor, max_len: int, bos_idx: int, eos_idx: int | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Greedy decoding: ``tokens (B, T)`` (without BOS) and the weights
        ``(B, T, S)`` (``None`` without attention), ``T <= max_len``: decoding
        stops early once every sequence has produced ``eos_idx``, and after its
        EOS a sequence is padded with ``pad_idx``."""
        memory, memory_mask, state = self.encode(src)
        token = torch.full((src.shape[0],), bos_idx, dtype=torch.long, device=src.device)
        done = torch.zeros_like(token, dtype=torch.bool)
        tokens, weights = [], []
        for t in range(max_len):
            logits, state, w = self.decoder.step(token, state, memory, memory_mask, t)
            token = logits.argmax(-1).masked_fill(done, self.pad_idx)
            tokens.append(token)
            weights.append(w)
            if eos_idx is not None:
                done |= token == eos_idx
                if bool(done.all()):
                    break
        stacked = None if weights[0] is None else torch.stack(weights, 1)
        return torch.stack(tokens, 1), stacked
