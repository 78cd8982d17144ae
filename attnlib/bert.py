"""A BERT encoder made of attnlib's own layers, able to load pre-trained weights.

BERT (Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional
Transformers for Language Understanding", arXiv:1810.04805) is the encoder of
"Attention Is All You Need" with three learned embeddings summed (token,
position, token type), a LayerNorm after the sum, and post-norm encoder
layers with GELU. :class:`BertEncoder` builds it from
:class:`attnlib.transformer.EncoderLayer` and
:class:`attnlib.positional.LearnedPositionalEmbedding`;
:meth:`BertEncoder.from_huggingface` copies the weights of a Hugging Face
``transformers.BertModel`` (for instance :func:`attnlib.pretrained.minilm`),
after which both compute the same hidden states and attention maps.

:func:`mean_pool` and :func:`sentence_embeddings` turn hidden states into
sentence embeddings the way sentence-transformers does for all-MiniLM-L6-v2
(Reimers and Gurevych, 2019, "Sentence-BERT", arXiv:1908.10084): the mean of
the real tokens' vectors, scaled to unit length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_rank, check_tensor
from .positional import LearnedPositionalEmbedding
from .transformer import EncoderLayer, TransformerEncoder

__all__ = [
    "BertEmbeddings",
    "BertEncoder",
    "BertClassifier",
    "huggingface_names",
    "mean_pool",
    "sentence_embeddings",
]


class BertEmbeddings(nn.Module):
    """Token + position + token-type embeddings, then LayerNorm and dropout.

    Parameters
    ----------
    vocab_size, d_model, max_len, type_vocab_size : int
    dropout : float
    layer_norm_eps : float
    pad_idx : int

    Shape
    -----
    - input_ids, token_type_ids: ``(B, L)``; output: ``(B, L, D)``
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        max_len: int = 512,
        type_vocab_size: int = 2,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        pad_idx: int = 0,
    ) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model, padding_idx=pad_idx)
        self.position = LearnedPositionalEmbedding(d_model, max_len)
        self.token_type = nn.Embedding(type_vocab_size, d_model)
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.position(self.token(input_ids))  # (B, L, D)
        return self.dropout(self.norm(x + self.token_type(token_type_ids)))


class BertEncoder(nn.Module):
    """BERT's encoder (no pooler, no pre-training heads) from attnlib's layers.

    Parameters
    ----------
    vocab_size : int
    d_model, nhead, num_layers, dim_feedforward : int
        BERT-base: 768, 12, 12, 3072; all-MiniLM-L6-v2: 384, 12, 6, 1536.
    max_len, type_vocab_size : int
        Number of positions and of token types (segments A and B).
    dropout, attention_dropout : float
        BERT's ``hidden_dropout_prob`` and ``attention_probs_dropout_prob``.
    layer_norm_eps : float
    pad_idx : int

    Attributes
    ----------
    embeddings : BertEmbeddings
    encoder : attnlib.transformer.TransformerEncoder
        ``num_layers`` post-norm :class:`~attnlib.transformer.EncoderLayer`
        with GELU; :func:`attnlib.capture.record_attention` records their
        weights ``(B, H, L, L)`` under ``encoder.layers.<i>.self_attn``.

    Shape
    -----
    - input_ids, attention_mask, token_type_ids: ``(B, L)``
    - output: the last hidden state ``(B, L, D)``

    Examples
    --------
    >>> bert = BertEncoder(100, d_model=16, nhead=2, num_layers=2, dim_feedforward=32)
    >>> ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    >>> bert(ids, attention_mask=ids != 0).shape
    torch.Size([2, 4, 16])
    """

    def __init__(
        self,
        vocab_size: int = 30522,
        d_model: int = 384,
        nhead: int = 12,
        num_layers: int = 6,
        dim_feedforward: int = 1536,
        max_len: int = 512,
        type_vocab_size: int = 2,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        pad_idx: int = 0,
    ) -> None:
        super().__init__()
        self.pad_idx = pad_idx
        self.embeddings = BertEmbeddings(
            vocab_size, d_model, max_len, type_vocab_size, dropout, layer_norm_eps, pad_idx
        )
        layer = EncoderLayer(
            d_model,
            nhead,
            dim_feedforward,
            dropout,
            norm_first=False,
            activation="gelu",
            layer_norm_eps=layer_norm_eps,
        )
        layer.self_attn.dropout = attention_dropout
        self.encoder = TransformerEncoder(layer, num_layers)

    @property
    def layers(self) -> nn.ModuleList:
        """The encoder layers; each ``.self_attn`` is a
        :class:`~attnlib.attention.MultiHeadAttention`."""
        return self.encoder.layers

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """The last hidden state.

        ``attention_mask`` follows Hugging Face's tokenizers: ``(B, L)``, 1 or
        ``True`` for a real token, 0 or ``False`` for padding (default: every
        token is real). It becomes attnlib's ``(B, 1, 1, L)`` boolean key mask.
        """
        check_tensor(input_ids, "input_ids")
        check_rank(input_ids, "input_ids", (2,), "(batch, length) of token ids")
        max_len = self.embeddings.position.max_len
        if input_ids.shape[1] > max_len:
            raise ValueError(
                f"input_ids: expected at most {max_len} positions, got {input_ids.shape[1]}"
            )
        mask = None
        if attention_mask is not None:
            mask = _key_mask(attention_mask, input_ids)  # (B, 1, 1, L)
        if token_type_ids is not None:
            check_tensor(token_type_ids, "token_type_ids")
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(
                    f"token_type_ids: expected the shape of input_ids {tuple(input_ids.shape)}, "
                    f"got {tuple(token_type_ids.shape)}"
                )
        x = self.embeddings(input_ids, token_type_ids)  # (B, L, D)
        return self.encoder(x, mask)  # (B, L, D)

    @classmethod
    def from_huggingface(cls, model: nn.Module) -> BertEncoder:
        """A copy of a Hugging Face ``transformers.BertModel`` (its encoder; the pooler
        is left out), in the model's dtype and training mode.

        Raises
        ------
        ValueError
            If the model is not a BERT this class can represent (another
            activation, relative positions, a decoder).
        """
        config = getattr(model, "config", None)
        if getattr(config, "model_type", None) != "bert":
            raise ValueError(
                f"model: expected a transformers BertModel, got {type(model).__name__}"
            )
        unsupported = {
            "hidden_act": (config.hidden_act, "gelu"),
            "position_embedding_type": (
                getattr(config, "position_embedding_type", "absolute"),
                "absolute",
            ),
            "is_decoder": (config.is_decoder, False),
        }
        for name, (given, expected) in unsupported.items():
            if given != expected:
                raise ValueError(f"model.config.{name}: expected {expected!r}, got {given!r}")
        new = cls(
            vocab_size=config.vocab_size,
            d_model=config.hidden_size,
            nhead=config.num_attention_heads,
            num_layers=config.num_hidden_layers,
            dim_feedforward=config.intermediate_size,
            max_len=config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size,
            dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            layer_norm_eps=config.layer_norm_eps,
            pad_idx=config.pad_token_id if config.pad_token_id is not None else 0,
        )
        dtype = next(model.parameters()).dtype
        new.to(dtype).load_state_dict(_renamed(model.state_dict(), config.num_hidden_layers))
        return new.train(model.training)


class BertClassifier(nn.Module):
    """Sequence classification on a BERT encoder: mean pooling over the real tokens
    (:func:`mean_pool`) and a linear head.

    Devlin et al. (2019, arXiv:1810.04805) classify from ``[CLS]``'s vector
    through the pre-training pooler; a sentence-embedding model such as
    all-MiniLM-L6-v2 was trained on mean-pooled vectors, so the head reads those.

    Parameters
    ----------
    encoder : BertEncoder
        Pre-trained (see :meth:`BertEncoder.from_huggingface`); it is used, not copied.
    num_classes : int

    Shape
    -----
    - input_ids, attention_mask, token_type_ids: ``(B, L)``; output: logits ``(B, C)``

    Examples
    --------
    >>> bert = BertEncoder(100, d_model=16, nhead=2, num_layers=1, dim_feedforward=32)
    >>> BertClassifier(bert, 3)(torch.tensor([[1, 5, 2, 0]])).shape
    torch.Size([1, 3])
    """

    def __init__(self, encoder: BertEncoder, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.pad_idx = encoder.pad_idx
        self.head = nn.Linear(encoder.embeddings.norm.normalized_shape[0], num_classes)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """``attention_mask`` defaults to the non-padding tokens (``input_ids != pad_idx``)."""
        if attention_mask is None:
            check_tensor(input_ids, "input_ids")
            attention_mask = input_ids != self.pad_idx  # (B, L)
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, L, D)
        return self.head(mean_pool(hidden, attention_mask))  # (B, C)


# our parameter name -> Hugging Face's, for one layer and for the embeddings
_LAYER_NAMES = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "norm1": "attention.output.LayerNorm",
    "ff.linear1": "intermediate.dense",
    "ff.linear2": "output.dense",
    "norm2": "output.LayerNorm",
}
_EMBEDDING_NAMES = {
    "embeddings.token": "embeddings.word_embeddings",
    "embeddings.position.embedding": "embeddings.position_embeddings",
    "embeddings.token_type": "embeddings.token_type_embeddings",
    "embeddings.norm": "embeddings.LayerNorm",
}


def huggingface_names(num_layers: int, prefix: str = "") -> dict[str, str]:
    """Where each parameter of a :class:`BertEncoder` comes from in a Hugging Face
    ``BertModel``: attnlib's name → Hugging Face's (``prefix`` ``"bert."`` for the
    models with a task head, such as ``BertForSequenceClassification``).

    Examples
    --------
    >>> huggingface_names(1)["encoder.layers.0.norm1.weight"]
    'encoder.layer.0.attention.output.LayerNorm.weight'
    """
    names = dict(_EMBEDDING_NAMES)
    for i in range(num_layers):
        for ours, theirs in _LAYER_NAMES.items():
            names[f"encoder.layers.{i}.{ours}"] = f"encoder.layer.{i}.{theirs}"
    leaves = {}
    for ours, theirs in names.items():
        leaves[f"{ours}.weight"] = f"{prefix}{theirs}.weight"
        if not ours.startswith("embeddings.") or ours == "embeddings.norm":  # no bias
            leaves[f"{ours}.bias"] = f"{prefix}{theirs}.bias"
    return leaves


def _renamed(hf_state: dict[str, Tensor], num_layers: int) -> dict[str, Tensor]:
    """Hugging Face's state dict under attnlib's names (every one of ours is filled:
    ``load_state_dict`` is strict)."""
    prefix = "bert." if any(k.startswith("bert.") for k in hf_state) else ""
    return {
        ours: hf_state[theirs] for ours, theirs in huggingface_names(num_layers, prefix).items()
    }


def _key_mask(attention_mask: Tensor, input_ids: Tensor) -> Tensor:
    check_tensor(attention_mask, "attention_mask")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask: expected the shape of input_ids {tuple(input_ids.shape)} "
            f"(1 = real token, 0 = padding), got {tuple(attention_mask.shape)}"
        )
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        raise TypeError(
            f"attention_mask: expected a bool or integer tensor (1 = real token, 0 = padding), "
            f"got dtype {attention_mask.dtype}"
        )
    return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L)


def mean_pool(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """The mean of the real tokens' vectors (padding left out).

    Parameters
    ----------
    hidden : Tensor
        Hidden states ``(B, L, D)``.
    attention_mask : Tensor, optional
        ``(B, L)``, 1 or ``True`` for a real token (default: all real).

    Returns
    -------
    Tensor
        ``(B, D)``.

    Shape
    -----
    - hidden: ``(B, L, D)``; attention_mask: ``(B, L)``; output: ``(B, D)``
    """
    check_rank(hidden, "hidden", (3,), "(batch, length, d_model)")
    if attention_mask is None:
        return hidden.mean(1)
    keep = _key_mask(attention_mask, hidden[..., 0])[:, 0, 0, :, None]  # (B, L, 1)
    keep = keep.to(hidden.dtype)
    return (hidden * keep).sum(1) / keep.sum(1).clamp_min(1e-9)


@torch.no_grad()
def sentence_embeddings(
    encoder: nn.Module,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    normalize: bool = True,
) -> Tensor:
    """Sentence embeddings: mean-pooled last hidden states, scaled to unit length
    (the recipe of sentence-transformers' all-MiniLM-L6-v2).

    Parameters
    ----------
    encoder : BertEncoder or transformers.BertModel
    tokenizer : transformers.PreTrainedTokenizerBase
        A Hugging Face tokenizer, called as ``tokenizer(texts, padding=True, ...)``.
    texts : sequence of str
    batch_size : int
    normalize : bool
        Scale every embedding to unit L2 norm (cosine similarity becomes a dot product).

    Returns
    -------
    Tensor
        ``(N, D)``, one row per text, in the encoder's dtype.
    """
    if isinstance(texts, str):
        raise TypeError("texts: expected a sequence of strings, got one str")
    rows = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            return_tensors="pt",
        )
        out = encoder(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch.get("token_type_ids"),
        )
        hidden = out if isinstance(out, Tensor) else out.last_hidden_state  # (B, L, D)
        rows.append(mean_pool(hidden, batch["attention_mask"]))
    pooled = torch.cat(rows)  # (N, D)
    return F.normalize(pooled, dim=-1) if normalize else pooled
