"""Capture the attention weights of every layer and head of a model.

One mechanism for every tool that looks at attention (the plots and the
measures of the interpretability chapter build on it)::

    with record_attention(model) as record:
        model(tokens)
    record.names()          # the attention layers that ran, in call order
    record["encoder.layers.0.self_attn"]   # their weights

It works on any model built from :class:`attnlib.attention.AttentionModule`
layers: forward hooks read the ``weights`` half of their ``(output, weights)``
return value. Layers called with ``need_weights=False`` (the fused fast path
of :class:`~attnlib.attention.MultiHeadAttention`, which the Transformer
layers take) compute their weights while they are recorded: a pre-hook
switches ``need_weights`` on. The hooks are removed when the ``with`` block ends, so the model
keeps no reference to any tensor; the record holds them until you drop it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .attention import AttentionModule

__all__ = ["AttentionRecord", "record_attention"]


class AttentionRecord:
    """Weights recorded by :func:`record_attention`, by layer name.

    A layer called several times in one ``with`` block (a decoder stepping
    through a sequence) has one entry per call.
    """

    def __init__(self) -> None:
        self.calls: dict[str, list[Tensor]] = {}

    def names(self) -> list[str]:
        """Names of the layers that ran, in the order they first ran."""
        return list(self.calls)

    def __getitem__(self, name: str) -> Tensor:
        """The weights of the layer's last call.

        Shape
        -----
        ``(B, H, Lq, Lk)`` for multi-head layers, ``(B, Lq, Lk)``
        for single-head layers.
        """
        if name not in self.calls:
            known = ", ".join(self.calls) or "none"
            raise KeyError(f"name: no attention recorded for {name!r}; recorded: {known}")
        return self.calls[name][-1]

    def __len__(self) -> int:
        return len(self.calls)

    def __iter__(self) -> Iterator[str]:
        return iter(self.calls)

    def steps(self, name: str, dim: int = -2) -> Tensor:
        """All calls of one layer concatenated along ``dim`` (the query
        dimension by default): a step-by-step decoder's ``T`` calls with one
        query each become one ``(..., T, Lk)`` map."""
        return torch.cat(self.calls[name], dim=dim)

    def stack(self, names: list[str] | None = None) -> Tensor:
        """Last weights of several layers stacked on a new first dimension.

        Shape
        -----
        ``(layers, B, H, Lq, Lk)``; the layers must have the same shape.
        """
        names = self.names() if names is None else names
        return torch.stack([self[n] for n in names])

    def clear(self) -> None:
        self.calls.clear()

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}: {tuple(self[n].shape)}" for n in self.calls)
        return f"AttentionRecord({shapes})"


@contextmanager
def record_attention(
    model: nn.Module, *, detach: bool = True, types: tuple[type, ...] = (AttentionModule,)
) -> Iterator[AttentionRecord]:
    """Record the weights of every attention layer that runs inside the block.

    Parameters
    ----------
    model : torch.nn.Module
        Any model; its sub-modules that are instances of ``types`` are watched.
        A bare attention layer records itself under the name ``""``.
    detach : bool
        Store detached copies (default). ``False`` keeps the autograd graph,
        for methods that differentiate through the weights.
    types : tuple of type
        Module classes whose ``forward`` returns ``(output, weights)``.

    Yields
    ------
    AttentionRecord

    Examples
    --------
    >>> from attnlib import MultiHeadAttention
    >>> mha = MultiHeadAttention(8, 2)
    >>> x = torch.randn(1, 3, 8)
    >>> with record_attention(mha) as rec:
    ...     _ = mha(x, x, x)
    >>> rec[""].shape
    torch.Size([1, 2, 3, 3])
    """
    record = AttentionRecord()

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: tuple[Tensor, Tensor]) -> None:
            weights = output[1]
            record.calls.setdefault(name, []).append(weights.detach() if detach else weights)

        return hook

    def want_weights(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if kwargs.get("need_weights") is False:
            kwargs = {**kwargs, "need_weights": True}
        return args, kwargs

    watched = [(n, m) for n, m in model.named_modules() if isinstance(m, types)]
    handles = [m.register_forward_pre_hook(want_weights, with_kwargs=True) for _, m in watched]
    handles += [m.register_forward_hook(make_hook(n)) for n, m in watched]
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()
