"""Capture every attention map of one input, from attnlib or Hugging Face models.

:func:`capture_attention` runs a model once and returns an
:class:`AttentionMaps`: for each *kind* of attention (``"encoder"``
self-attention, ``"decoder"`` self-attention, ``"cross"``-attention) a
``(layers, H, Lq, Lk)`` tensor, the token labels of its queries and
keys, and the mask that was applied (``True`` = may attend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .._checks import check_choice, shape_str
from ..capture import record_attention
from ..models import EncoderDecoderModel, SequenceModel, attention_kind_from_name

__all__ = ["KINDS", "AttentionMaps", "capture_attention", "token_labels"]

#: The kinds of attention, in display order.
KINDS = ("encoder", "decoder", "cross")


class AttentionMaps:
    """The attention of one input, by kind, layer and head.

    Parameters
    ----------
    weights : dict
        Kind (one of :data:`KINDS`) to a ``(layers, H, Lq, Lk)`` tensor.
    query_tokens, key_tokens : dict
        Kind to the token labels of the queries and of the keys.
    masks : dict, optional
        Kind to a boolean ``(Lq, Lk)`` mask, ``True`` where a real query
        may attend to a key (the rows of padding queries are all ``False``:
        their outputs are thrown away, and statistics leave them out).

    Shape
    -----
    - ``maps[kind]``: ``(layers, H, Lq, Lk)``
    - ``maps.head(kind, layer, head)``: ``(Lq, Lk)``
    """

    def __init__(
        self,
        weights: Mapping[str, Tensor],
        query_tokens: Mapping[str, Sequence[str]],
        key_tokens: Mapping[str, Sequence[str]],
        masks: Mapping[str, Tensor | None] | None = None,
    ) -> None:
        if not weights:
            raise ValueError("weights: expected at least one kind of attention, got none")
        self.weights: dict[str, Tensor] = {}
        self.query_tokens: dict[str, list[str]] = {}
        self.key_tokens: dict[str, list[str]] = {}
        self.masks: dict[str, Tensor | None] = {}
        for kind in KINDS:
            if kind not in weights:
                continue
            w = weights[kind].detach().float().cpu()
            if w.dim() != 4:
                raise ValueError(
                    f"weights[{kind!r}]: expected a (layers, heads, query, key) tensor, "
                    f"got shape {shape_str(w.shape)}"
                )
            q, k = list(query_tokens[kind]), list(key_tokens[kind])
            if (len(q), len(k)) != tuple(w.shape[2:]):
                raise ValueError(
                    f"query_tokens[{kind!r}], key_tokens[{kind!r}]: expected {w.shape[2]} and "
                    f"{w.shape[3]} labels, got {len(q)} and {len(k)}"
                )
            mask = None if masks is None else masks.get(kind)
            if mask is not None:
                mask = mask.bool().cpu().expand(w.shape[2:]).clone()
            self.weights[kind], self.query_tokens[kind], self.key_tokens[kind] = w, q, k
            self.masks[kind] = mask
        unknown = set(weights) - set(KINDS)
        if unknown:
            raise ValueError(f"weights: expected kinds among {KINDS}, got {sorted(unknown)}")

    @property
    def kinds(self) -> list[str]:
        """The kinds present, in :data:`KINDS` order."""
        return list(self.weights)

    def _kind(self, kind: str | None) -> str:
        if kind is None:
            return self.kinds[0]
        check_choice(kind, "kind", self.kinds)
        return kind

    def __getitem__(self, kind: str) -> Tensor:
        return self.weights[self._kind(kind)]

    def __contains__(self, kind: str) -> bool:
        return kind in self.weights

    def num_layers(self, kind: str | None = None) -> int:
        return self[self._kind(kind)].shape[0]

    def num_heads(self, kind: str | None = None) -> int:
        return self[self._kind(kind)].shape[1]

    def head(self, kind: str | None, layer: int, head: int) -> Tensor:
        """One map ``(Lq, Lk)``; negative ``layer``/``head`` count from the end."""
        w = self[self._kind(kind)]
        for name, value, size in (("layer", layer, w.shape[0]), ("head", head, w.shape[1])):
            if not -size <= value < size:
                raise IndexError(f"{name}: expected an index in [0, {size}), got {value}")
        return w[layer, head]

    def mask(self, kind: str | None = None) -> Tensor | None:
        return self.masks[self._kind(kind)]

    def labels(self, kind: str | None = None) -> tuple[list[str], list[str]]:
        """``(query_tokens, key_tokens)`` of one kind."""
        kind = self._kind(kind)
        return self.query_tokens[kind], self.key_tokens[kind]

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {tuple(w.shape)}" for k, w in self.weights.items())
        return f"AttentionMaps({parts})"


def token_labels(ids: Sequence[int], tokenizer) -> list[str]:
    """Readable labels for token ids, from an attnlib tokenizer or
    :class:`~attnlib.data.text.Vocabulary` (their ``id_to_token``) or a Hugging
    Face tokenizer (its ``convert_ids_to_tokens``); duplicates stay as they are."""
    ids = [int(i) for i in ids]
    if hasattr(tokenizer, "convert_ids_to_tokens"):  # Hugging Face
        return list(tokenizer.convert_ids_to_tokens(ids))
    if callable(getattr(tokenizer, "id_to_token", None)):  # attnlib's shared interface
        return [tokenizer.id_to_token(i) for i in ids]
    raise TypeError(
        f"tokenizer: expected an attnlib or Hugging Face tokenizer, got {type(tokenizer).__name__}"
    )


def _one(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(
            f"{name}: expected a (1, length) tensor of token ids, got "
            f"{shape_str(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
        )
    if x.shape[0] != 1:
        raise ValueError(
            f"{name}: expected one example (batch size 1), got shape {shape_str(x.shape)}; "
            f"select one with {name}[i : i + 1]"
        )
    return x


def _labels(ids: Tensor, tokenizer, given: Sequence[str] | None) -> list[str]:
    if given is not None:
        return list(given)
    if tokenizer is not None:
        return token_labels(ids[0].tolist(), tokenizer)
    return [str(int(i)) for i in ids[0]]


def _record_weights(model, args: tuple) -> dict[str, Tensor]:
    """Run ``model(*args)`` once in eval mode; every attention layer's weights,
    stacked per kind: ``(layers, H, Lq, Lk)`` (a single-head layer gets ``H = 1``)."""
    was_training = model.training
    model.eval()
    try:
        with record_attention(model) as record:
            model(*args)
    finally:
        model.train(was_training)
    if not len(record):
        raise ValueError(f"model: no attention layer ran in {type(model).__name__}")
    kind_of = (
        model.attention_kind if isinstance(model, SequenceModel) else attention_kind_from_name
    )
    per_kind: dict[str, list[Tensor]] = {}
    for name in record.names():
        w = record.steps(name)  # (1, H, Lq, Lk) or (1, Lq, Lk) for single-head layers
        w = w[:, None] if w.dim() == 3 else w
        per_kind.setdefault(kind_of(name), []).append(w[0])
    return {k: torch.stack(v) for k, v in per_kind.items()}


def _one_input(x: Tensor, name: str) -> Tensor:
    """One example of any layout (an image ``(1, C, H, W)``, ...)."""
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] != 1:
        got = shape_str(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"{name}: expected one example (batch size 1) for a model that labels its own "
            f"positions, got {got}; select one with {name}[i : i + 1]"
        )
    return x


@torch.no_grad()
def _capture_self_labelled(model, inputs, labels):
    """A model whose positions are not token ids labels them itself (``token_labels()``);
    every position is real (no padding)."""
    weights = _record_weights(model, (_one_input(inputs, "inputs"),))  # (layers, H, L, L)
    names = list(labels) if labels is not None else list(model.token_labels())
    masks = {}
    for kind, w in weights.items():
        lq, lk = w.shape[2:]
        full = torch.ones(lq, lk, dtype=torch.bool)
        masks[kind] = full.tril() if kind == "decoder" else full
    return AttentionMaps(
        weights, dict.fromkeys(weights, names), dict.fromkeys(weights, names), masks
    )


@torch.no_grad()
def _capture_attnlib(model, inputs, tokenizer, target_tokenizer, labels, target_labels):
    if callable(getattr(model, "token_labels", None)):
        return _capture_self_labelled(model, inputs, labels)
    if isinstance(model, EncoderDecoderModel):
        if not (isinstance(inputs, tuple | list) and len(inputs) == 2):
            raise TypeError(
                "inputs: expected (src, tgt_in) for an encoder-decoder model, "
                f"got {type(inputs).__name__}"
            )
        src, tgt = _one(inputs[0], "inputs[0]"), _one(inputs[1], "inputs[1]")
        args = (src, tgt)
    else:
        src, tgt = _one(inputs, "inputs"), None
        args = (src,)
    weights = _record_weights(model, args)  # per kind: (layers, H, Lq, Lk)
    pad = getattr(model, "pad_idx", None)
    src_labels = _labels(src, tokenizer, labels)
    tgt_labels = (
        None if tgt is None else _labels(tgt, target_tokenizer or tokenizer, target_labels)
    )
    keep_src = torch.ones(src.shape[1], dtype=torch.bool) if pad is None else src[0] != pad
    q, k, masks = {}, {}, {}
    keep_tgt = None
    if tgt is not None:
        keep_tgt = torch.ones(tgt.shape[1], dtype=torch.bool) if pad is None else tgt[0] != pad
    for kind in weights:
        if kind == "encoder":
            q[kind], k[kind] = src_labels, src_labels
            masks[kind] = keep_src[:, None] & keep_src[None, :]
        elif kind == "cross":
            q[kind], k[kind] = tgt_labels, src_labels
            masks[kind] = keep_tgt[:, None] & keep_src[None, :]
        else:
            keep = keep_tgt if tgt is not None else keep_src
            labels_ = tgt_labels if tgt is not None else src_labels
            n = keep.shape[0]
            q[kind], k[kind] = labels_, labels_
            masks[kind] = torch.ones(n, n, dtype=torch.bool).tril() & keep[:, None] & keep[None, :]
    return AttentionMaps(weights, q, k, masks)


@contextmanager
def _eager(model):
    """Switch a Hugging Face model to eager attention (which can return weights)."""
    before = getattr(model.config, "_attn_implementation", None)
    if before not in (None, "eager"):
        model.set_attn_implementation("eager")
    try:
        yield before
    finally:
        if before not in (None, "eager"):
            model.set_attn_implementation(before)


def _main_output(out) -> Tensor:
    for name in ("logits", "last_hidden_state"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    return out[0]


@torch.no_grad()
def _capture_hf(model, inputs, tokenizer, labels, target_labels, atol):
    if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
        raise TypeError(
            "inputs: expected the tokenizer's output (a mapping with input_ids) for a "
            f"Hugging Face model, got {type(inputs).__name__}"
        )
    _one(inputs["input_ids"], "inputs['input_ids']")
    was_training = model.training
    model.eval()
    try:
        reference = _main_output(model(**inputs))
        with _eager(model) as before:
            out = model(**inputs, output_attentions=True)
        diff = float((_main_output(out) - reference).abs().max())
        if diff > atol:
            raise RuntimeError(
                f"model: eager attention changed the outputs by {diff:.2e} (more than "
                f"atol={atol}) compared with {before!r}; the captured maps would not be "
                "the ones the model uses"
            )
    finally:
        model.train(was_training)
    src_ids = inputs["input_ids"]
    src = _labels(src_ids, tokenizer, labels)
    n = src_ids.shape[1]
    keep = inputs.get("attention_mask")
    keep = torch.ones(n, dtype=torch.bool) if keep is None else keep[0].bool().cpu()
    weights, q, k, masks = {}, {}, {}, {}
    groups = {
        "encoder": getattr(out, "encoder_attentions", None),
        "decoder": getattr(out, "decoder_attentions", None),
        "cross": getattr(out, "cross_attentions", None),
    }
    if groups["encoder"] is None and groups["decoder"] is None:
        # one stack: a decoder-only model if no query ever attends to a later key
        future = max(float(a[0].triu(1).abs().max()) for a in out.attentions)
        groups["decoder" if future == 0 else "encoder"] = out.attentions
    tgt = None
    if groups["decoder"] is not None and "decoder_input_ids" in inputs:
        tgt_ids = inputs["decoder_input_ids"]
        tgt = _labels(tgt_ids, tokenizer, target_labels)
    for kind, maps in groups.items():
        if not maps:
            continue
        weights[kind] = torch.stack([m[0] for m in maps])  # (layers, H, Lq, Lk)
        lq, lk = weights[kind].shape[2:]
        if kind == "encoder":
            q[kind], k[kind], masks[kind] = src, src, keep[:, None] & keep[None, :]
        elif kind == "cross":
            q[kind], k[kind], masks[kind] = tgt, src, keep[None, :].expand(lq, lk)
        else:
            labels_ = tgt if tgt is not None else src
            causal = torch.ones(lq, lk, dtype=torch.bool).tril()
            masks[kind] = causal if tgt is not None else causal & keep[:, None] & keep[None, :]
            q[kind], k[kind] = labels_, labels_
    return AttentionMaps(weights, q, k, masks)


def capture_attention(
    model: nn.Module,
    inputs,
    *,
    tokenizer=None,
    target_tokenizer=None,
    labels: Sequence[str] | None = None,
    target_labels: Sequence[str] | None = None,
    atol: float = 1e-4,
) -> AttentionMaps:
    """Run ``model`` on one input and capture every attention map.

    Works with every attnlib model (attention layers are found by
    :func:`attnlib.capture.record_attention`) and with Hugging Face
    ``transformers`` models: a model using a fused attention kernel
    (``sdpa``, flash) is switched to ``eager`` attention for the capture and
    back afterwards, and the capture fails if that changed its output by more
    than ``atol``.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : Tensor, tuple or mapping
        attnlib encoder or decoder-only models: token ids ``(1, L)``;
        encoder-decoder models: ``(src, tgt_in)``; Hugging Face models: the
        tokenizer's output for one text (``input_ids``, ``attention_mask``,
        and ``decoder_input_ids`` for encoder-decoder models); a model whose
        positions are not tokens and that labels them itself with a
        ``token_labels()`` method (a :class:`~attnlib.vit.VisionTransformer`:
        ``"[CLS]"``, ``"r0c0"``, ...): its one input with a batch of one,
        such as an image ``(1, C, H, W)``; all its positions are real (no
        padding mask).
    tokenizer, target_tokenizer : optional
        Used to label the tokens (default: the ids as strings, or the
        model's ``token_labels()``).
    labels, target_labels : sequence of str, optional
        Explicit token labels instead.
    atol : float

    Returns
    -------
    AttentionMaps

    Shape
    -----
    - maps per kind: ``(layers, H, Lq, Lk)``; a single-head layer
      (the recurrent :class:`~attnlib.seq2seq.Seq2Seq`'s) has one head.

    Examples
    --------
    >>> from attnlib.transformer import EncoderClassifier
    >>> model = EncoderClassifier(20, 2, d_model=16, nhead=2, num_layers=3)
    >>> maps = capture_attention(model, torch.tensor([[5, 6, 7, 0]]))
    >>> maps
    AttentionMaps(encoder: (3, 2, 4, 4))
    >>> maps.mask("encoder")[0].tolist()  # the padding key is masked
    [True, True, True, False]
    >>> maps.mask("encoder")[3].any().item()  # and so is the padding query's row
    False
    """
    if type(model).__module__.startswith("transformers."):
        return _capture_hf(model, inputs, tokenizer, labels, target_labels, atol)
    return _capture_attnlib(model, inputs, tokenizer, target_tokenizer, labels, target_labels)
