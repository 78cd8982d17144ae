"""The two families of token models, and what every tool needs from them.

Decoding, training, inference and the interpretability tools work on any
model of these families through the interface below, never by testing for a
concrete class:

- :class:`~attnlib.models.EncoderDecoderModel`: ``forward(src, tgt_in)`` returns
  the logits of every target position (teacher forcing). Subclasses: the recurrent
  :class:`attnlib.seq2seq.Seq2Seq` and :class:`attnlib.transformer.Seq2SeqTransformer`.
- :class:`~attnlib.models.LanguageModel`: ``forward(tokens)`` returns the logits
  of the next token after every position. Subclass: :class:`attnlib.transformer.DecoderLM`.

One return convention for every model: ``forward`` returns **logits only**.
The attention weights of any model, in any mode (training, teacher forcing,
generation), come from :func:`attnlib.capture.record_attention`::

    with record_attention(model) as record:
        logits = model(src, tgt_in)
    record.steps("decoder.attention")   # a recurrent decoder: one call per step

To generate, a model hands :mod:`attnlib.decoding` a
:class:`~attnlib.models.DecodingState`
(:meth:`~attnlib.models.SequenceModel.start_decoding`) that feeds tokens and keeps what the
model remembers between steps (a recurrent state, a key/value cache).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = [
    "DecodingState",
    "SequenceModel",
    "EncoderDecoderModel",
    "LanguageModel",
    "attention_kind_from_name",
]

ATTENTION_KINDS = ("encoder", "decoder", "cross")


def attention_kind_from_name(name: str) -> str:
    """The kind of attention a layer computes, read from its name in the model:
    ``"cross"`` (queries from the output, keys from the source), ``"decoder"``
    (causal self-attention over the output) or ``"encoder"`` (self-attention
    over the input)."""
    if "cross" in name:
        return "cross"
    return "decoder" if "decoder" in name else "encoder"


class DecodingState:
    """What a model keeps between the steps of generation.

    Subclasses implement :meth:`~attnlib.models.DecodingState.feed` and
    :meth:`~attnlib.models.DecodingState.reorder`.

    Attributes
    ----------
    incremental : bool
        ``True``: :meth:`~attnlib.models.DecodingState.feed` receives only the
        tokens not fed before (the
        model carries a recurrent state or a key/value cache); ``False``: it
        receives the whole prefix at every step.
    banned_token : int or None
        A token the decoder must never produce (an encoder-decoder's padding:
        the model would mask it out of its own input).
    """

    incremental: bool = True
    banned_token: int | None = None

    def feed(self, tokens: Tensor, start: int) -> Tensor:
        """Logits after each of ``tokens``, which sit at positions ``start, start + 1, ...``.

        Shape
        -----
        - tokens: ``(B, T)``; output: ``(B, T, V)``
        """
        raise NotImplementedError

    def reorder(self, index: Tensor) -> None:
        """Keep the batch rows ``index`` (beam search reorders its hypotheses).

        Shape
        -----
        - index: ``(B,)``
        """
        raise NotImplementedError


class SequenceModel(nn.Module):
    """Base class of the models that predict tokens (see the module docstring).

    Attributes
    ----------
    pad_idx : int or None
        Padding id of the inputs (``None``: the model has no padding).
    max_len : int or None
        Number of positions the model can read (``None``: unlimited).
    needs_source : bool
        Whether generating needs a source sequence.
    """

    pad_idx: int | None = None
    max_len: int | None = None
    needs_source: bool = False

    def attention_kind(self, name: str) -> str:
        """The kind of attention (one of ``"encoder"``, ``"decoder"``,
        ``"cross"``) computed by the attention layer called ``name``."""
        return attention_kind_from_name(name)

    def start_decoding(self, src: Tensor | None, use_cache: bool) -> DecodingState:
        """A fresh :class:`~attnlib.models.DecodingState` (``src``: the source,
        for encoder-decoders)."""
        raise NotImplementedError

    def teacher_forcing(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The logits a training batch asks for and the tokens they should predict.

        Shape
        -----
        - logits: ``(B, T, V)``; gold: ``(B, T)``
        """
        raise NotImplementedError


class EncoderDecoderModel(SequenceModel):
    """An encoder-decoder: ``forward(src, tgt_in)`` -> logits ``(B, T, V)``.

    ``targets`` of a training batch start with BOS: the model reads
    ``targets[:, :-1]`` and predicts ``targets[:, 1:]``.
    """

    needs_source = True

    def teacher_forcing(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return self(inputs, targets[:, :-1]), targets[:, 1:]


class LanguageModel(SequenceModel):
    """A decoder-only language model: ``forward(tokens)`` -> logits ``(B, L, V)``.

    A training batch's ``inputs`` are token ids; the model predicts each next one.
    """

    def teacher_forcing(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return self(inputs[:, :-1]), inputs[:, 1:]

    def attention_kind(self, name: str) -> str:
        return "decoder"  # every layer is causal self-attention
