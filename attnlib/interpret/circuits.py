"""Per-head scores of the induction circuit of a decoder-only language model.

An *induction head* (Elhage et al., 2021, "A Mathematical Framework for
Transformer Circuits"; Olsson et al., 2022, "In-context Learning and Induction
Heads", arXiv:2209.11895) completes ``[A][B] ... [A] -> [B]``: at the second
``[A]`` it attends to the ``[B]`` that followed the first one (*prefix
matching*) and raises ``[B]``'s logit (*copying*). In a two-layer model it
reads the output of a *previous-token head* of layer 0. This module measures
the three per head, the in-context loss, and knocks one head out.

All functions take an :class:`attnlib.transformer.DecoderLM` (anything with
``blocks.layers[i].self_attn``, ``blocks.norm``, ``embedding`` and
``lm_head``) and a :class:`attnlib.tasks.RepeatedSegments` batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..capture import record_attention

if TYPE_CHECKING:  # pragma: no cover
    from ..tasks import RepeatedSegments

__all__ = [
    "attention_maps",
    "previous_token_score",
    "prefix_matching_score",
    "copying_score",
    "in_context_loss",
    "phase_change_step",
    "ablate_head",
]


@torch.no_grad()
def attention_maps(model: nn.Module, tokens: Tensor) -> Tensor:
    """Every layer's attention weights on ``tokens``.

    Returns
    -------
    Tensor
        ``(B, layers, H, L, L)``.
    """
    layers = model.blocks.layers
    with record_attention(model) as record:
        model(tokens)
    return torch.stack([record[f"blocks.layers.{i}.self_attn"] for i in range(len(layers))], 1)


def previous_token_score(weights: Tensor) -> Tensor:
    """The mean attention from each token to the one just before it.

    Parameters
    ----------
    weights : Tensor
        Causal self-attention weights, e.g. from :func:`attention_maps`.

    Returns
    -------
    Tensor
        In ``[0, 1]``; 1 for a head that always attends to the previous token.

    Shape
    -----
    - weights: ``(B, *heads, L, L)``; returns ``(*heads)``
    """
    diagonal = torch.diagonal(weights, offset=-1, dim1=-2, dim2=-1)  # (B, *heads, L-1)
    return diagonal.mean(-1).mean(0)


def prefix_matching_score(weights: Tensor, batch: RepeatedSegments) -> Tensor:
    """The mean attention from a token of the second copy to the token right
    after its earlier occurrence: an induction head's signature (Olsson et
    al., 2022, arXiv:2209.11895, "prefix matching").

    At query position ``i`` (token ``A`` of the second copy, whose successor
    ``i + 1`` is predictable), the key is ``batch.source[:, i + 1]``, the
    token that followed ``A`` in the first copy.

    Parameters
    ----------
    weights : Tensor
        Attention weights of ``batch.tokens``, e.g. from :func:`attention_maps`.
    batch : attnlib.tasks.RepeatedSegments

    Returns
    -------
    Tensor
        In ``[0, 1]``.

    Shape
    -----
    - weights: ``(B, *heads, L, L)``; returns ``(*heads)``
    """
    rows, targets = batch.predictable.nonzero(as_tuple=True)
    queries, keys = targets - 1, batch.source[rows, targets]
    picked = weights[rows, ..., queries, keys]  # (N, *heads)
    return picked.mean(0)


@torch.no_grad()
def copying_score(model: nn.Module, tokens: Tensor | None = None) -> Tensor:
    """How much each head's OV circuit copies: if a head attended fully to a
    position holding token ``t``, how high would ``t``'s logit rank in the
    head's direct output?

    The head's value and output maps are applied to what the layer reads at
    that position (its LayerNorm of the residual stream); the result goes
    through the final LayerNorm's scale (the head's output normalised, no
    bias) and the unembedding. A position's score is the share of the other
    tokens whose logit is lower than its own token's (1: first, 0.5: chance);
    the head's score is the mean. It is the direct path of Elhage et al.
    (2021), read with ranks instead of eigenvalues because of the LayerNorms.

    Without ``tokens`` the residual stream is taken to be the token embedding
    alone, for every token of the vocabulary: exact for the first layer, but
    a later layer reads what the earlier heads wrote as well, and a head can
    copy through that (in a small attention-only model the embedding may be
    a small part of the residual stream). With ``tokens`` every layer reads
    the residual stream the model actually computes on them, at every
    position, which includes the earlier layers' outputs.

    Parameters
    ----------
    model : attnlib.transformer.DecoderLM
        Pre-norm.
    tokens : Tensor, optional
        ``(B, L)`` token ids, e.g. a :class:`~attnlib.tasks.RepeatedSegments`
        batch's ``tokens``.

    Returns
    -------
    Tensor
        ``(layers, H)``, in ``[0, 1]``.
    """
    embedding = model.embedding.weight  # (V, D)
    vocab = embedding.shape[0]
    final = model.blocks.norm
    layers = model.blocks.layers
    if tokens is None:
        inputs = [embedding] * len(layers)  # (V, D): the residual stream is one token
        own_ids = torch.arange(vocab, device=embedding.device)  # (V,)
    else:
        inputs = _layer_inputs(model, tokens)  # each (B, L, D)
        own_ids = tokens.reshape(-1)  # (B*L,)
        inputs = [x.reshape(-1, x.shape[-1]) for x in inputs]  # each (B*L, D)
    scores = []
    for layer, residual in zip(layers, inputs, strict=True):
        attn = layer.self_attn
        h, dh = attn.num_heads, attn.head_dim
        v = attn.v_proj(layer.norm1(residual)).view(-1, h, dh)  # (N, H, Dh)
        w_o = attn.out_proj.weight.view(-1, h, dh)  # (D, H, Dh)
        out = torch.einsum("nhk,dhk->hnd", v, w_o)  # (H, N, D): each head's output
        normed = F.layer_norm(out, out.shape[-1:], final.weight, None, final.eps)
        logits = model.lm_head(normed)  # (H, N, V): the logits when copying position n
        own = logits.gather(-1, own_ids.expand(h, -1)[..., None])  # (H, N, 1)
        beaten = (logits < own).sum(-1).double() / (vocab - 1)  # (H, N)
        scores.append(beaten.mean(-1))
    return torch.stack(scores)


def _layer_inputs(model: nn.Module, tokens: Tensor) -> list[Tensor]:
    """The residual stream entering each layer: ``(B, L, D)`` each."""
    inputs = []
    hooks = [
        layer.register_forward_hook(lambda module, args, output: inputs.append(args[0]))
        for layer in model.blocks.layers
    ]
    try:
        model(tokens)
    finally:
        for hook in hooks:
            hook.remove()
    return inputs


@torch.no_grad()
def in_context_loss(model: nn.Module, batch: RepeatedSegments) -> dict[str, float]:
    """The loss on the predictable tokens of the second copy, on the same
    tokens in the first copy, and their difference (negative: the model uses
    the context; Olsson et al., 2022, compare late and early tokens instead).

    Returns
    -------
    dict
        ``second``, ``first``, ``in_context`` (``second - first``), in nats.
    """
    logits = model(batch.tokens)[:, :-1]  # (B, L-1, V)
    loss = F.cross_entropy(logits.transpose(1, 2), batch.tokens[:, 1:], reduction="none")
    second = float(loss[batch.predictable[:, 1:]].mean())
    first = float(loss[batch.first_copy[:, 1:]].mean())
    return {"second": second, "first": first, "in_context": second - first}


def phase_change_step(steps, losses, *, fraction: float = 0.5) -> int:
    """The first step at which a falling loss has covered ``fraction`` of its
    drop from the start to the end of training.

    Parameters
    ----------
    steps, losses : sequence
        The history (same length, steps increasing), e.g. the in-context loss.
    fraction : float
        In ``(0, 1)``.

    Returns
    -------
    int
        The step; the last step if the loss did not fall.
    """
    steps = torch.as_tensor(list(steps))
    losses = torch.as_tensor(list(losses), dtype=torch.float64)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction: expected a number in (0, 1), got {fraction}")
    target = losses[0] - fraction * (losses[0] - losses[-1])
    below = (losses <= target).nonzero()
    return int(steps[below[0, 0]] if len(below) and losses[-1] < losses[0] else steps[-1])


@contextmanager
def ablate_head(model: nn.Module, layer: int, head: int | Sequence[int], *, mode: str = "uniform"):
    """Inside the block, one head (or several heads) of one layer attends differently.

    ``mode="uniform"`` spreads the head's weight evenly over the keys it may
    see (the causal prefix); ``"zero"`` gives it zero weights (its output is
    then zero). The other heads and layers are untouched. It uses the layer's
    ``weights_hook``, like :func:`attnlib.interpret.faithfulness.intervene_attention`.

    Parameters
    ----------
    model : attnlib.transformer.DecoderLM
    layer : int
    head : int or sequence of int
        The head, or the heads knocked out together.
    mode : {"uniform", "zero"}
    """
    if mode not in ("uniform", "zero"):
        raise ValueError(f"mode: expected 'uniform' or 'zero', got {mode!r}")
    attn = model.blocks.layers[layer].self_attn
    heads = [head] if isinstance(head, int) else list(head)
    bad = [h for h in heads if not 0 <= h < attn.num_heads]
    if bad or not heads:
        raise ValueError(
            f"head: expected heads in 0..{attn.num_heads - 1} of layer {layer}, got {head!r}"
        )
    if attn.weights_hook is not None:
        raise RuntimeError(
            f"layer {layer} already has a weights_hook: knock several heads of one "
            "layer out with one ablate_head(model, layer, [h1, h2, ...])"
        )

    def hook(weights: Tensor) -> Tensor:  # (B, H, Lq, Lk)
        weights = weights.clone()
        for h in heads:
            if mode == "zero":
                weights[:, h] = 0.0
            else:
                allowed = (weights[:, h] > 0).to(weights.dtype)
                weights[:, h] = allowed / allowed.sum(-1, keepdim=True).clamp_min(1)
        return weights

    attn.weights_hook = hook
    try:
        yield attn
    finally:
        attn.weights_hook = None
