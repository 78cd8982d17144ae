"""Attention heatmaps with token labels, colour bars and masks drawn as masks,
and the learning curves of a training run.

The figures are meant for the site: a title, labelled axes (query down the
side, key along the top), a colour bar, and masked cells hatched in grey so
that "not allowed" never looks like "small weight".
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._checks import shape_str

__all__ = ["plot_attention", "plot_attention_heads", "plot_history", "outline_cells"]


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=float)


def plot_attention(
    weights,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    mask=None,
    cmap: str = "viridis",
    vmin: float | None = 0.0,
    vmax: float | None = None,
    annotate: bool | None = None,
    colorbar: bool = True,
    xlabel: str = "key",
    ylabel: str = "query",
) -> Axes:
    """Draw one attention map as a heatmap.

    Parameters
    ----------
    weights : Tensor or array-like
        Attention weights, one row per query.
    query_labels, key_labels : sequence of str, optional
        Token labels of the rows and columns.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if omitted.
    title : str, optional
    mask : Tensor or array-like of bool, optional
        ``True`` = may attend; forbidden cells are hatched grey.
    cmap : str
    vmin, vmax : float, optional
        Colour scale (share it when comparing maps).
    annotate : bool, optional
        Write the weights in the cells (default: when the map is at most 8x8).
    colorbar : bool
    xlabel, ylabel : str

    Returns
    -------
    matplotlib.axes.Axes

    Shape
    -----
    - weights: ``(Lq, Lk)``; mask: broadcastable to ``(Lq, Lk)``
    """
    w = _as_numpy(weights)
    if w.ndim != 2:
        raise ValueError(
            f"weights: expected a 2-D (query, key) map, got shape {shape_str(w.shape)}"
        )
    if ax is None:
        _, ax = plt.subplots(
            figsize=(1.5 + 0.55 * w.shape[1], 1.2 + 0.5 * w.shape[0]), layout="constrained"
        )
    shown = np.ma.masked_array(w, mask=np.zeros_like(w, dtype=bool))
    if mask is not None:
        allowed = np.broadcast_to(_as_numpy(mask).astype(bool), w.shape)
        shown = np.ma.masked_array(w, mask=~allowed)
        ax.set_facecolor("#d9d9d9")
        ax.patch.set_hatch("///")
        ax.patch.set_edgecolor("#8c8c8c")
    image = ax.imshow(
        shown, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    for labels, set_ticks, set_labels, n in (
        (query_labels, ax.set_yticks, ax.set_yticklabels, w.shape[0]),
        (key_labels, ax.set_xticks, ax.set_xticklabels, w.shape[1]),
    ):
        if labels is not None:
            if len(labels) != n:
                raise ValueError(f"labels: expected {n} labels, got {len(labels)}")
            set_ticks(range(n))
            set_labels(list(labels))
    if key_labels is not None:
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if annotate is None:
        annotate = w.shape[0] <= 8 and w.shape[1] <= 8
    if annotate:
        top = vmax if vmax is not None else (w.max() if w.size else 1.0)
        for (i, j), value in np.ndenumerate(w):
            if shown.mask is not np.ma.nomask and shown.mask[i, j]:
                continue
            colour = "black" if value > 0.6 * top else "white"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color=colour)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="weight")
    return ax


def plot_attention_heads(
    weights,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    *,
    ncols: int = 4,
    title: str | None = None,
    mask=None,
    cmap: str = "viridis",
    head_titles: Sequence[str] | None = None,
    annotate: bool = False,
    cell_size: float = 0.35,
    figsize: tuple[float, float] | None = None,
    xlabel: str = "key",
    ylabel: str = "query",
    vmax: float | None = None,
) -> Figure:
    """Draw several heads (or layers) side by side on one shared colour scale.

    Parameters
    ----------
    weights : Tensor or array-like
        One map per head.
    query_labels, key_labels : sequence of str, optional
    ncols : int
        Maps per row.
    title : str, optional
        Figure title.
    mask : optional
        ``True`` = may attend, broadcastable to ``(Lq, Lk)``.
    cmap : str
    head_titles : sequence of str, optional
        Default ``"head 0"``, ``"head 1"``, ...
    annotate : bool
    cell_size : float
        Inches per cell.
    figsize : tuple of float, optional
        Figure size in inches; by default from ``cell_size``, at most 12
        inches wide.
    xlabel, ylabel : str
        Axis labels (the y label on the first map of each row).
    vmax : float, optional
        Top of the shared colour scale (default: the largest weight); pass
        the same value to several figures to compare them.

    Returns
    -------
    matplotlib.figure.Figure

    Shape
    -----
    - weights: ``(H, Lq, Lk)``
    """
    w = _as_numpy(weights)
    if w.ndim != 3:
        raise ValueError(
            f"weights: expected a 3-D (heads, query, key) tensor, got shape {shape_str(w.shape)}"
        )
    heads, lq, lk = w.shape
    ncols = min(ncols, heads)
    nrows = -(-heads // ncols)
    if figsize is None:
        width = ncols * (1.2 + cell_size * lk) + 1.0
        height = nrows * (1.0 + cell_size * lq)
        # cap the width only: rows of token labels need their height
        figsize = (min(width, 12.0), max(height, 2.0))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=figsize,
        squeeze=False,
        layout="constrained",
    )
    if vmax is None:
        vmax = float(w.max()) if w.size else 1.0
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.set_visible(False)
            continue
        plot_attention(
            w[h],
            query_labels if h % ncols == 0 else None,
            key_labels,
            ax=ax,
            title=head_titles[h] if head_titles else f"head {h}",
            mask=mask,
            cmap=cmap,
            vmin=0.0,
            vmax=vmax,
            annotate=annotate,
            colorbar=False,
            xlabel=xlabel,
            ylabel=ylabel if h % ncols == 0 else "",
        )
        if h % ncols and query_labels is not None:
            ax.set_yticks([])
    image = axes.flat[0].images[0]
    fig.colorbar(image, ax=axes, fraction=0.02, pad=0.02, label="weight (shared scale)")
    if title:
        fig.suptitle(title)
    return fig


_CURVES = {  # column of a history -> (panel, legend entry, marker)
    "loss": (0, "training", "o"),
    "val_loss": (0, "validation", "s"),
    "accuracy": (1, "training", "o"),
    "val_accuracy": (1, "validation", "s"),
}


def plot_history(
    history,
    *,
    x: str = "epoch",
    axes: Sequence[Axes] | None = None,
    label: str | None = None,
    columns: Sequence[str] | None = None,
    log_loss: bool = False,
    chance: float | None = None,
    accuracy_label: str = "accuracy",
    loss_label: str = "cross-entropy",
) -> Figure:
    """Learning curves: loss on the left, accuracy on the right.

    Parameters
    ----------
    history : pandas.DataFrame or list of dict
        One row per epoch (or step), as :meth:`attnlib.training.Trainer.fit`
        returns: any of the columns ``loss``, ``val_loss``, ``accuracy``,
        ``val_accuracy``, and ``x``.
    x : str
        The column along the horizontal axis.
    axes : sequence of matplotlib.axes.Axes, optional
        Draw into these (to overlay several runs); default a new figure.
    label : str, optional
        Prefix of the legend entries (the run's name, when overlaying runs).
    columns : sequence of str, optional
        The curves to draw; default every one of the four present.
    log_loss : bool
        Logarithmic loss axis.
    chance : float, optional
        Draw the accuracy of guessing as a dotted line.
    accuracy_label, loss_label : str
        The y-axis labels (say what is counted: tokens, sentences ...).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import pandas as pd

    frame = pd.DataFrame(history)
    if x not in frame:
        raise ValueError(f"history: expected a column {x!r}, got columns {list(frame.columns)}")
    columns = [c for c in _CURVES if c in frame] if columns is None else list(columns)
    present = [c for c in _CURVES if c in frame]
    unknown = [c for c in columns if c not in present]
    if unknown or not columns:
        raise ValueError(f"columns: expected some of {present}, got {unknown or columns}")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
    fig = axes[0].figure
    for column in columns:
        panel, name, marker = _CURVES[column]
        legend = name if label is None else f"{label} ({name})"
        axes[panel].plot(frame[x], frame[column], marker=marker, label=legend)
    if chance is not None and not any(line.get_label() == "chance" for line in axes[1].lines):
        axes[1].axhline(chance, color="grey", ls=":", label="chance")
    if log_loss:
        axes[0].set_yscale("log")
    for ax, title, ylabel in (
        (axes[0], "Loss", loss_label),
        (axes[1], "Accuracy", accuracy_label),
    ):
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if ax.lines:
            ax.legend()
    return fig


def outline_cells(ax: Axes, cells, *, color: str = "red", linewidth: float = 2.0) -> list:
    """Draw a box around every ``True`` cell of a heatmap.

    Marks a reference on top of a map drawn by :func:`plot_attention` (one
    cell per row and column, centred on integer coordinates): the true
    alignment over the learned attention, for instance.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The heatmap's axes.
    cells : Tensor or array-like of bool
        ``True`` = outline this cell; rows and columns as in the heatmap.
    color : str
    linewidth : float

    Returns
    -------
    list of matplotlib.patches.Rectangle
        One box per outlined cell, row by row.

    Shape
    -----
    - cells: ``(rows, columns)`` of the heatmap (``(Lq, Lk)``)
    """
    from matplotlib.patches import Rectangle

    marked = _as_numpy(cells)
    if marked.ndim != 2:
        raise ValueError(
            f"cells: expected a 2-D (row, column) map, got shape {shape_str(marked.shape)}"
        )
    boxes = []
    for row, col in zip(*np.nonzero(marked), strict=True):
        box = Rectangle(
            (col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=linewidth
        )
        boxes.append(ax.add_patch(box))
    return boxes
