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
def copying_score(model: nn.Module) -> Tensor:
    """How much each head's OV circuit copies: if a head attended fully to
    token ``t``, how high would ``t``'s logit rank in the head's direct
    output?

    For every token ``t`` the head's value and output maps are applied to
    the layer's LayerNorm of ``t``'s embedding; the result goes through the
    final LayerNorm (without its bias) and the unembedding. The score of a
    token is the share of the other tokens whose logit is lower than its own
    (1: ``t`` comes first, 0.5: chance); the head's score is the mean over
    tokens. It is the direct path of Elhage et al. (2021), read with ranks
    instead of eigenvalues because of the LayerNorms; positions and the other
    heads are left out.

    Returns
    -------
    Tensor
        ``(layers, H)``, in ``[0, 1]``.
    """
    embedding = model.embedding.weight  # (V, D)
    vocab = embedding.shape[0]
    final = model.blocks.norm
    scores = []
    for layer in model.blocks.layers:
        attn = layer.self_attn
        h, dh = attn.num_heads, attn.head_dim
        x = layer.norm1(embedding)  # (V, D)
        v = attn.v_proj(x).view(vocab, h, dh)  # (V, H, Dh)
        w_o = attn.out_proj.weight.view(-1, h, dh)  # (D, H, Dh)
        out = torch.einsum("vhk,dhk->hvd", v, w_o)  # (H, V, D): each head's output
        normed = F.layer_norm(out, out.shape[-1:], final.weight, None, final.eps)
        logits = model.lm_head(normed)  # (H, V, V): row t = the logits when copying t
        own = logits.diagonal(dim1=-2, dim2=-1)[..., None]  # (H, V, 1)
        beaten = (logits < own).sum(-1).double() / (vocab - 1)  # (H, V)
        scores.append(beaten.mean(-1))
    return torch.stack(scores)


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
def ablate_head(model: nn.Module, layer: int, head: int, *, mode: str = "uniform"):
    """Inside the block, one head of one layer attends differently.

    ``mode="uniform"`` spreads the head's weight evenly over the keys it may
    see (the causal prefix); ``"zero"`` gives it zero weights (its output is
    then zero). The other heads and layers are untouched. It uses the layer's
    ``weights_hook``, like :func:`attnlib.interpret.faithfulness.intervene_attention`.
    """
    if mode not in ("uniform", "zero"):
        raise ValueError(f"mode: expected 'uniform' or 'zero', got {mode!r}")
    attn = model.blocks.layers[layer].self_attn

    def hook(weights: Tensor) -> Tensor:  # (B, H, Lq, Lk)
        weights = weights.clone()
        if mode == "zero":
            weights[:, head] = 0.0
        else:
            allowed = (weights[:, head] > 0).to(weights.dtype)
            weights[:, head] = allowed / allowed.sum(-1, keepdim=True).clamp_min(1)
        return weights

    attn.weights_hook = hook
    try:
        yield attn
    finally:
        attn.weights_hook = None
