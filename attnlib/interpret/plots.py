"""Figures of captured attention (matplotlib; each function returns what it
drew on): one head, all heads of a layer, one head across layers, every kind
of attention, attention received per token, and text highlighted by weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._checks import shape_str
from ..plotting import plot_attention, plot_attention_heads
from .maps import AttentionMaps, capture_attention

__all__ = [
    "visualize_attention_weights",
    "plot_layer",
    "plot_head_across_layers",
    "plot_kinds",
    "plot_attention_received",
    "plot_token_highlights",
    "plot_evidence_scores",
]

_AXES = {"encoder": ("key", "query"), "decoder": ("key", "query"), "cross": ("source", "target")}


def visualize_attention_weights(
    sentence: str, model, tokenizer, layer: int, head: int, *, ax: Axes | None = None
) -> Axes:
    """The seed notebook's function: tokenize ``sentence``, run ``model``,
    and draw the self-attention of one ``layer`` and ``head`` with the tokens
    as labels.

    Parameters
    ----------
    sentence : str
    model : torch.nn.Module
        An attnlib encoder (such as
        :class:`~attnlib.transformer.EncoderClassifier`) or decoder-only
        model, or a Hugging Face model.
    tokenizer
        An attnlib tokenizer (:mod:`attnlib.data.text`) or a Hugging Face one.
    layer, head : int
        Negative values count from the end.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not isinstance(sentence, str):
        raise TypeError(f"sentence: expected a str, got {type(sentence).__name__}")
    if hasattr(tokenizer, "convert_ids_to_tokens"):  # Hugging Face
        inputs = dict(tokenizer(sentence, return_tensors="pt"))
    else:
        inputs = torch.tensor([tokenizer.encode(sentence)])
    maps = capture_attention(model, inputs, tokenizer=tokenizer)
    kind = maps.kinds[0]
    weights = maps.head(kind, layer, head)
    queries, keys = maps.labels(kind)
    n_layers, n_heads = maps.num_layers(kind), maps.num_heads(kind)
    return plot_attention(
        weights,
        queries,
        keys,
        ax=ax,
        mask=maps.mask(kind),
        title=f"layer {layer % n_layers}, head {head % n_heads}: {sentence!r}"[:80],
    )


def plot_layer(
    maps: AttentionMaps, layer: int, *, kind: str | None = None, ncols: int = 4, **kwargs
) -> Figure:
    """Every head of one layer on one shared colour scale, masks hatched
    (:func:`attnlib.plotting.plot_attention_heads`)."""
    kind = maps._kind(kind)
    queries, keys = maps.labels(kind)
    n = maps.num_layers(kind)
    w = maps[kind][layer]  # (heads, Lq, Lk)
    kwargs.setdefault("title", f"{kind} attention, layer {layer % n}: every head")
    return plot_attention_heads(w, queries, keys, ncols=ncols, mask=maps.mask(kind), **kwargs)


def plot_head_across_layers(
    maps: AttentionMaps, head: int, *, kind: str | None = None, ncols: int = 4, **kwargs
) -> Figure:
    """One head in every layer, on one shared colour scale."""
    kind = maps._kind(kind)
    queries, keys = maps.labels(kind)
    w = maps[kind][:, head]  # (layers, Lq, Lk)
    titles = [f"layer {i}" for i in range(w.shape[0])]
    kwargs.setdefault("title", f"{kind} attention, head {head % maps.num_heads(kind)}, by layer")
    return plot_attention_heads(
        w, queries, keys, ncols=ncols, mask=maps.mask(kind), head_titles=titles, **kwargs
    )


def plot_kinds(
    maps: AttentionMaps, *, layer: int = -1, head: int | None = None, figsize=None
) -> Figure:
    """Encoder self-, decoder self- and cross-attention side by side (one
    layer; one head, or the heads' mean with ``head=None``), each with its
    own axes labels and the masks drawn."""
    kinds = maps.kinds
    if figsize is None:
        figsize = (min(12.0, 4.2 * len(kinds)), 4.0)
    fig, axes = plt.subplots(1, len(kinds), figsize=figsize, squeeze=False, layout="constrained")
    for ax, kind in zip(axes[0], kinds, strict=True):
        w = maps[kind][layer]
        w = w.mean(0) if head is None else w[head]
        queries, keys = maps.labels(kind)
        xlabel, ylabel = _AXES[kind]
        what = "mean of heads" if head is None else f"head {head}"
        plot_attention(
            w,
            queries,
            keys,
            ax=ax,
            mask=maps.mask(kind),
            title=f"{kind}: layer {layer % maps.num_layers(kind)}, {what}",
            xlabel=xlabel,
            ylabel=ylabel,
            annotate=False,
        )
    return fig


def plot_attention_received(
    maps: AttentionMaps,
    *,
    kind: str | None = None,
    layer: int | None = None,
    head: int | None = None,
    ax: Axes | None = None,
) -> Axes:
    """A bar per key token: the mean attention it receives (over the queries
    allowed to attend to it, and the selected layers and heads), with the
    standard deviation as an error bar. See
    :func:`attnlib.interpret.stats.attention_stats`."""
    from .stats import attention_stats

    table = attention_stats(maps, kind=kind, layer=layer, head=head)
    if ax is None:
        _, ax = plt.subplots(
            figsize=(min(12.0, 1.5 + 0.5 * len(table)), 3.2), layout="constrained"
        )
    x = np.arange(len(table))
    mean, std = table["mean"].to_numpy(), table["std"].to_numpy()
    # mean ± standard deviation, clipped to the possible range [0, 1]
    yerr = np.stack([np.minimum(std, mean), np.minimum(std, 1 - mean)])
    ax.bar(x, mean, yerr=yerr, color="#4c72b0", capsize=3, label="mean ± std (within [0, 1])")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(x, table["token"].tolist(), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xlabel("key token")
    ax.set_ylabel("mean attention received")
    which = "all layers" if layer is None else f"layer {layer}"
    which += ", all heads" if head is None else f", head {head}"
    ax.set_title(f"Attention received per token ({maps._kind(kind)}, {which})")
    return ax


def plot_token_highlights(
    tokens: Sequence[str],
    scores,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = "Reds",
    max_width: int = 60,
) -> Axes:
    """The text with each token's background coloured by its score (scaled to
    the largest one), with a colour bar.

    Shape
    -----
    - scores: ``(len(tokens),)``
    """
    s = scores.detach().cpu().double().numpy() if torch.is_tensor(scores) else np.asarray(scores)
    s = np.asarray(s, dtype=float).reshape(-1)
    if s.shape[0] != len(tokens):
        raise ValueError(
            f"scores: expected one score per token ({len(tokens)}), got shape {shape_str(s.shape)}"
        )
    top = float(np.abs(s).max()) or 1.0
    colours = colormaps[cmap]
    lines, line, width = [], [], 0
    for tok, value in zip(tokens, s, strict=True):
        if width + len(tok) > max_width and line:
            lines.append(line)
            line, width = [], 0
        line.append((tok, value))
        width += len(tok) + 1
    lines.append(line)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.6 + 0.45 * len(lines)), layout="constrained")
    ax.set_axis_off()
    fig = ax.figure
    renderer = fig.canvas.get_renderer()  # to measure the text
    for row, items in enumerate(lines):
        x = 0.01
        y = 1 - (row + 0.6) / len(lines)
        for tok, value in items:
            level = abs(value) / top
            text = ax.text(
                x,
                y,
                tok,
                transform=ax.transAxes,
                fontsize=12,
                va="center",
                color="white" if level > 0.6 else "black",
                bbox={"facecolor": colours(level), "edgecolor": "none", "pad": 2},
            )
            box = text.get_window_extent(renderer=renderer)
            x += box.width / ax.get_window_extent(renderer=renderer).width + 0.012
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, top))
    fig.colorbar(mappable, ax=ax, orientation="horizontal", fraction=0.15, pad=0.05, label="score")
    if title:
        ax.set_title(title)
    return ax


def plot_evidence_scores(
    table,
    *,
    ax: Axes | None = None,
    title: str | None = "Agreement with the evidence words",
    xlabel: str = "explanation",
    rotation: float = 0.0,
) -> Axes:
    """Two bars per explanation, its precision at k and its mass on the
    evidence, with chance as a dashed line.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per explanation, named by the index, with the columns
        ``precision``, ``mass`` and ``chance`` of
        :func:`attnlib.interpret.faithfulness.evidence_scores` averaged over
        the same texts (so ``chance`` is one number; its mean is drawn).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if omitted.
    title : str, optional
    xlabel : str
    rotation : float
        Angle of the explanations' names (long names need about 25 degrees).

    Returns
    -------
    matplotlib.axes.Axes

    Shape
    -----
    - table: ``(explanations, columns)`` with at least the three columns above
    """
    missing = [c for c in ("precision", "mass", "chance") if c not in table]
    if missing:
        raise ValueError(
            f"table: expected the columns precision, mass and chance, missing {missing}"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 2.0 + 1.2 * len(table)), 3.8), layout="constrained")
    chance = float(table["chance"].mean())
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["precision"], 0.4, label="precision at k")
    ax.bar(x + 0.2, table["mass"], 0.4, label="mass on evidence")
    ax.axhline(chance, color="black", ls="--", lw=1, label=f"chance ({chance:.2f})")
    anchor = {"ha": "right", "rotation_mode": "anchor"} if rotation else {}
    ax.set_xticks(x, [str(name) for name in table.index], rotation=rotation, **anchor)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean over texts")
    ax.set_ylim(0, 1)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax
