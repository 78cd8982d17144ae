"""Which input tokens matter: attention rollout and flow (Abnar and Zuidema,
2020, arXiv:2005.00928), gradient-weighted attention (Chefer, Gur and Wolf,
2021, arXiv:2103.15679), and two references that do not use attention:
gradient x input and leave-one-out.

Rollout, flow and gradient-weighted attention return a ``(Lq, Lk)``
matrix: row ``i`` says how much each input token contributes to the final
representation at position ``i``. :func:`pooled_relevance` turns it into
one score per token for a classifier that pools its outputs.

The gradient methods read one example: token ids ``(1, L)`` for a token
classifier, or, for a model that labels its own positions (a
``token_labels()`` method, like :class:`attnlib.vit.VisionTransformer`), one
input of batch 1 in the model's own layout, such as an image
``(1, C, H, W)``.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .._checks import check_choice, check_rank, check_tensor, shape_str
from ..capture import record_attention
from ..vit import PatchEmbedding
from .maps import AttentionMaps

__all__ = [
    "attention_rollout",
    "attention_flow",
    "gradient_weighted_attention",
    "gradient_x_input",
    "leave_one_out",
    "pooled_relevance",
]

_FUSIONS = ("mean", "max", "min")


def _layers(weights: Tensor | AttentionMaps, kind: str | None) -> Tensor:
    if isinstance(weights, AttentionMaps):
        weights = weights[weights._kind(kind)]
    check_rank(weights, "weights", (4,), "(layers, heads, query, key)")
    if weights.shape[-1] != weights.shape[-2]:
        raise ValueError(
            "weights: expected self-attention maps (query length = key length), "
            f"got shape {shape_str(weights.shape)}"
        )
    return weights.double()


def _augmented(weights: Tensor, head_fusion: str, residual: bool) -> Tensor:
    """Per layer: fuse the heads, add the identity for the residual
    connection, normalise the rows: ``(layers, L, L)``."""
    check_choice(head_fusion, "head_fusion", _FUSIONS)
    if head_fusion == "mean":
        a = weights.mean(1)
    elif head_fusion == "max":
        a = weights.max(1).values
    else:
        a = weights.min(1).values
    if residual:
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype)
    return a / a.sum(-1, keepdim=True).clamp_min(1e-12)


def attention_rollout(
    weights: Tensor | AttentionMaps,
    *,
    kind: str | None = None,
    head_fusion: str = "mean",
    residual: bool = True,
) -> Tensor:
    r"""Attention rollout: multiply the layers' attention, accounting for the
    residual connections.

    .. math::

        \hat A_l = \mathrm{rownorm}\big(\tfrac12 A_l + \tfrac12 I\big), \qquad
        R = \hat A_L \hat A_{L-1} \cdots \hat A_1

    where :math:`A_l` fuses the heads of layer :math:`l` (mean, max or min).

    Parameters
    ----------
    weights : Tensor or attnlib.interpret.maps.AttentionMaps
        Self-attention of every layer.
    kind : str, optional
        With :class:`~attnlib.interpret.maps.AttentionMaps`: which
        self-attention (default the first).
    head_fusion : {"mean", "max", "min"}
    residual : bool
        Add the identity before normalising (the paper's choice).

    Returns
    -------
    Tensor
        ``R[i, j]``: the share of input token ``j`` in the output at ``i``;
        rows sum to 1 (float64).

    Shape
    -----
    - weights: ``(layers, H, L, L)``; output: ``(L, L)``
    """
    a = _augmented(_layers(weights, kind), head_fusion, residual)
    rollout = a[0]
    for layer in a[1:]:
        rollout = layer @ rollout
    return rollout


def attention_flow(
    weights: Tensor | AttentionMaps,
    *,
    kind: str | None = None,
    head_fusion: str = "mean",
    residual: bool = True,
    max_tokens: int = 32,
) -> Tensor:
    r"""Attention flow: the maximum flow from each input token to each output
    position through the layered attention graph (nodes: a token at a layer;
    edge capacities: the residual-augmented attention of
    :func:`attention_rollout`), solved exactly: in closed form for one or two
    layers, with networkx's maximum flow for deeper stacks.

    With one layer the only path from ``j`` to ``i`` is their edge, and flow
    equals rollout. With two layers the paths ``j -> k -> i`` share no edge,
    so the flow is exactly :math:`F_{ij} = \sum_k \min(\hat A_2[i, k],
    \hat A_1[k, j])` (computed directly). Deeper stacks cost one max-flow
    problem per (output, input) pair, so they are meant for short inputs
    (``max_tokens``).

    Returns
    -------
    Tensor
        ``F[i, j]``: the max flow from input ``j`` to output ``i`` (float64).

    Shape
    -----
    - weights: ``(layers, H, L, L)``; output: ``(L, L)``
    """
    import networkx as nx

    a = _augmented(_layers(weights, kind), head_fusion, residual)  # (layers, L, L)
    n_layers, n = a.shape[0], a.shape[-1]
    if n_layers == 1:
        return a[0].clone()
    if n_layers == 2:  # disjoint two-edge paths: sum of their bottlenecks
        return torch.minimum(a[1][:, :, None], a[0][None, :, :]).sum(1)  # (L, L)
    if n > max_tokens:
        raise ValueError(
            f"weights: expected at most max_tokens={max_tokens} tokens for exact flow, got {n}"
        )
    graph = nx.DiGraph()
    for layer in range(n_layers):
        for i in range(n):
            for j in range(n):
                capacity = float(a[layer, i, j])
                if capacity > 0:
                    graph.add_edge((layer, j), (layer + 1, i), capacity=capacity)
    flow = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            source, sink = (0, j), (n_layers, i)
            if source in graph and sink in graph:
                flow[i, j] = nx.maximum_flow_value(graph, source, sink)
    return flow


def _target(logits: Tensor, target: int | None) -> int:
    return int(logits[0].argmax()) if target is None else int(target)


def _classifier_inputs(tokens: Tensor) -> Tensor:
    check_rank(tokens, "tokens", (2,), "(1, length) of token ids")
    if tokens.shape[0] != 1:
        raise ValueError(f"tokens: expected one example (batch 1), got {shape_str(tokens.shape)}")
    return tokens


def _self_labelled(model: nn.Module) -> bool:
    """A model whose positions are not token ids labels them itself (as
    :func:`attnlib.interpret.maps.capture_attention` dispatches)."""
    return callable(getattr(model, "token_labels", None))


def _model_inputs(model: nn.Module, tokens: Tensor) -> Tensor:
    """Token ids ``(1, L)``, or one input of batch 1 for a self-labelled model."""
    if not _self_labelled(model):
        return _classifier_inputs(tokens)
    check_tensor(tokens, "tokens")
    if tokens.dim() < 2 or tokens.shape[0] != 1:
        raise ValueError(
            f"tokens: expected one example (batch 1) in the layout of "
            f"{type(model).__name__}, such as an image (1, C, H, W), got "
            f"{shape_str(tokens.shape)}; select one with images[i : i + 1]"
        )
    return tokens


@contextmanager
def _eval(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def gradient_weighted_attention(
    model: nn.Module, tokens: Tensor, target: int | None = None
) -> Tensor:
    r"""Gradient-weighted attention relevance for self-attention (Chefer, Gur
    and Wolf, 2021, the rule that uses attention gradients only):

    .. math::

        \bar A_l = \mathbb{E}_h\big[(\nabla A_l \odot A_l)^+\big], \qquad
        R \leftarrow R + \bar A_l R \quad (R_0 = I,\ l = 1 \dots L)

    with :math:`\nabla A_l` the gradient of the ``target`` logit (default:
    the predicted class) with respect to the attention weights of layer
    :math:`l`.

    Row ``i`` of the result is the relevance of every position for the output
    at ``i``; for a classifier that reads a class token, row 0 is the
    explanation of the prediction (Chefer et al. read the ``[CLS]`` row of a
    ViT the same way).

    Parameters
    ----------
    model : torch.nn.Module
        A classifier built from :class:`attnlib.attention.MultiHeadAttention`
        (for example :class:`attnlib.transformer.EncoderClassifier`, or
        :class:`attnlib.vit.VisionTransformer`).
    tokens : Tensor
        One example: token ids ``(1, L)``; for a model with a
        ``token_labels()`` method, one input of batch 1 in its own layout
        (an image ``(1, C, H, W)`` for a Vision Transformer, whose positions
        are ``model.token_labels()``: ``[CLS]`` then the patches).
    target : int, optional

    Returns
    -------
    Tensor
        ``(L, L)`` float64, ``L`` the length of the sequence the attention
        layers read (``N + 1`` for a ViT with a class token and ``N`` patches).

    Raises
    ------
    ValueError
        If ``tokens`` is not one example (batch 1) or no attention layer ran.

    Shape
    -----
    - tokens: ``(1, L)`` token ids, or ``(1, C, H, W)`` for a ViT; output: ``(L, L)``
    """
    tokens = _model_inputs(model, tokens)
    with _eval(model), torch.enable_grad(), record_attention(model, detach=False) as record:
        logits = model(tokens)
        names = record.names()
        if not names:
            raise ValueError(f"model: no attention layer ran in {type(model).__name__}")
        maps = [record[n] for n in names]  # each (1, H, L, L)
        grads = torch.autograd.grad(logits[0, _target(logits, target)], maps)
    n = maps[0].shape[-1]
    relevance = torch.eye(n, dtype=torch.float64)
    for a, g in zip(maps, grads, strict=True):
        cam = (g * a).clamp_min(0).mean(1)[0].detach().double()  # (L, L)
        relevance = relevance + cam @ relevance
    return relevance


def _embedding(model: nn.Module) -> nn.Embedding:
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return module
    raise TypeError(f"model: expected a model with an nn.Embedding, got {type(model).__name__}")


def _patch_embedding(model: nn.Module) -> PatchEmbedding:
    for module in model.modules():
        if isinstance(module, PatchEmbedding):
            return module
    raise TypeError(
        f"model: expected a model that labels its own positions to have a "
        f"PatchEmbedding, got {type(model).__name__}"
    )


def gradient_x_input(model: nn.Module, tokens: Tensor, target: int | None = None) -> Tensor:
    r"""Gradient x input saliency: :math:`|\sum_d e_{jd}\, \partial y / \partial e_{jd}|`
    for each input embedding :math:`e_j` and the ``target`` logit :math:`y`
    (default: the predicted class).

    The embedding :math:`e_j` is the output of the first ``nn.Embedding`` of
    a token model (token ``j``'s vector). For a model that labels its own
    positions (a ``token_labels()`` method, like
    :class:`attnlib.vit.VisionTransformer`) it is the output of its first
    :class:`attnlib.vit.PatchEmbedding`: patch ``j``'s projection
    :math:`e_j = W x_j + b`, before the class token and the positions are
    added, so there is one score per patch and none for the class token
    (a learned constant, not part of the input). Because the projection is
    linear, :math:`e_j \cdot \nabla_{e_j} y = x_j \cdot \nabla_{x_j} y + b
    \cdot \nabla_{e_j} y`: the pixels' gradient x input summed over the
    patch, plus the bias term, which lets a blank patch score too (its
    pixels are 0, its embedding is not).

    Parameters
    ----------
    model : torch.nn.Module
    tokens : Tensor
        Token ids ``(1, L)``; for a model with ``token_labels()``, one input
        of batch 1 in its layout (an image ``(1, C, H, W)``).
    target : int, optional

    Returns
    -------
    Tensor
        One score per token, or per patch (row-major on the patch grid, the
        order of ``model.token_labels()`` without ``"[CLS]"``), float64.

    Shape
    -----
    - tokens: ``(1, L)``; output: ``(L,)`` float64
    - images: ``(1, C, H, W)``; output: ``(N,)`` float64, ``N`` patches
    """
    tokens = _model_inputs(model, tokens)
    embedding = _patch_embedding(model) if _self_labelled(model) else _embedding(model)
    store: dict[str, Tensor] = {}

    def hook(module, args, output):
        output.retain_grad()
        store["e"] = output

    handle = embedding.register_forward_hook(hook)
    try:
        with _eval(model), torch.enable_grad():
            logits = model(tokens)
            logits[0, _target(logits, target)].backward()
    finally:
        handle.remove()
    e = store["e"]
    model.zero_grad(set_to_none=True)
    return (e.grad * e).sum(-1)[0].abs().detach().double()


@torch.no_grad()
def leave_one_out(
    model: nn.Module, tokens: Tensor, target: int | None = None, *, pad_idx: int = 0
) -> Tensor:
    """Leave-one-out importance: how much the probability of ``target``
    (default: the predicted class) falls when token ``j`` is removed from the
    input. Padding positions get 0.

    Shape
    -----
    - tokens: ``(1, L)``; output: ``(L,)`` float64 (negative: removing the
      token raises the probability)
    """
    tokens = _classifier_inputs(tokens)
    with _eval(model):
        full = torch.softmax(model(tokens).double(), -1)[0]
        c = _target(full[None], target)
        keep = (tokens[0] != pad_idx).nonzero()[:, 0].tolist()
        out = torch.zeros(tokens.shape[1], dtype=torch.float64)
        if len(keep) < 2:
            return out
        variants = torch.stack([tokens[0, [k for k in keep if k != j]] for j in keep])
        p = torch.softmax(model(variants).double(), -1)[:, c]  # (len(keep),)
        out[keep] = full[c] - p
    return out


def pooled_relevance(relevance: Tensor, *, pooling: str = "mean", mask: Tensor | None = None):
    """One score per input token from a ``(L, L)`` relevance matrix, for a
    classifier that pools its outputs: the mean of the rows of the real
    tokens (``pooling="mean"``) or the first row (``"first"``, a ``[CLS]``).

    Shape
    -----
    - relevance: ``(L, L)``; mask: ``(L,)`` True at real tokens; output: ``(L,)``
    """
    check_rank(relevance, "relevance", (2,), "(query, key)")
    check_choice(pooling, "pooling", ("mean", "first"))
    n = relevance.shape[0]
    keep = torch.ones(n, dtype=torch.bool) if mask is None else mask.bool()
    scores = relevance[0] if pooling == "first" else relevance[keep].mean(0)
    return scores * keep
